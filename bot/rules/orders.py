"""Orders and refunds: coupon + points spend + purchase points + tier, as one pure step."""

from __future__ import annotations

import re
from datetime import datetime

from . import coupons, points, profile, tiers
from .config import Rules
from .models import Entry, Member, Order, Refusal
from .timeutil import add_months, local_day, ts


def points_cash_fen(points_used: int, rules: Rules) -> int:
    """What ``points_used`` points are worth in fen (100 points = ¥1 by default)."""
    return points_used * 100 // rules.points["redeem_points_per_yuan"]


def record(m: Member, order_id: str, amount_fen: int, paid_at: datetime, now: datetime,
           rules: Rules, *, store_id: str = "", coupon_code: str | None = None,
           points_used: int = 0, body_hash: str = "") -> tuple[dict, list[Entry]]:
    """Record an order once: redeem the coupon, spend points, credit points, update tier."""
    if order_id in m.orders:
        o = m.orders[order_id]
        if body_hash and o.body_hash and o.body_hash != body_hash:
            raise Refusal("order_conflict", "订单号已存在且内容不同", order_id=order_id)
        return order_result(m, o, now, rules), []
    if amount_fen < 0:
        raise Refusal("bad_amount", "金额无效")
    paid_at = min(paid_at, now)  # a till clock running ahead cannot pay in the future
    ref = f"order:{order_id}"
    # every refusal comes before the first change: a refused order burns no coupon
    off = 0
    if coupon_code:
        off = coupons.check_redeem(m, coupon_code, order_id, amount_fen, now, rules)[1]
    cash = 0
    if points_used:
        if points_used < rules.points["redeem_min_points"]:
            raise Refusal("points_below_min",
                          f"积分抵现至少 {rules.points['redeem_min_points']} 分",
                          min=rules.points["redeem_min_points"])
        cash = points_cash_fen(points_used, rules)
        if cash > amount_fen - off:
            raise Refusal("points_exceed_amount", "抵现金额超过订单金额")
    entries: list[Entry] = points.spend(m, points_used, ref, now, rules, reason="order")
    entries += points.expire(m, now, rules)
    if coupon_code:
        c, off, e = coupons.redeem(m, coupon_code, order_id, amount_fen, now, rules)
        coupon_code = c.code
        entries += e
    paid = amount_fen - off - cash
    mult = rules.tier(m.tier).multiplier
    earned = points.points_for_purchase(paid, mult, rules)
    o = Order(order_id, amount_fen, paid, ts(paid_at), earned, mult, store_id, coupon_code,
              points_used, body_hash=body_hash)
    m.orders[order_id] = o
    m.lifetime_spend += paid
    m.last_purchase = max(m.last_purchase or 0, o.paid_at)
    m.last_activity = max(m.last_activity, o.paid_at)
    entries.append(Entry("order", ts(now), amount_fen=paid, ref=ref,
                         data={"gross": amount_fen, "coupon_off": off, "points_cash": cash,
                               "paid_at": o.paid_at, "store_id": store_id}))
    entries += points.credit(m, earned, ref, paid_at, now, rules, reason="purchase")
    entries += tiers.evaluate(m, now, rules)
    return order_result(m, o, now, rules), entries


def order_result(m: Member, o: Order, now: datetime, rules: Rules) -> dict:
    return {"order_id": o.order_id, "member_code": m.member_code, "paid_fen": o.paid_fen,
            "points_earned": o.points, "points_used": o.points_used,
            "coupon_code": o.coupon_code, "balance": points.balance(m, local_day(now, rules.tz)),
            "tier": m.tier, "body_hash": o.body_hash}


def refund(m: Member, order_id: str, refund_id: str, amount_fen: int | None, now: datetime,
           rules: Rules) -> tuple[dict, list[Entry]]:
    """Refund part or all of an order once per ``refund_id``; points reversed (debt if spent)."""
    o = m.orders.get(order_id)
    if o is None:
        raise Refusal("order_not_found", "未找到该订单", order_id=order_id)
    if refund_id in o.refunds:
        return refund_result(m, o, refund_id, 0, now, rules), []
    amt = o.net_fen if amount_fen is None else amount_fen
    if amt <= 0 or amt > o.net_fen:
        raise Refusal("refund_amount", f"退款金额无效：可退 {o.net_fen} 分", refundable=o.net_fen)
    o.refunded_fen += amt
    o.refunds[refund_id] = amt
    m.lifetime_spend -= amt
    keep = points.points_for_purchase(o.net_fen, o.multiplier, rules)
    back = max(o.points - o.points_reversed - keep, 0)
    o.points_reversed += back
    earned_on = local_day(datetime.fromtimestamp(o.paid_at, rules.tz), rules.tz)
    if add_months(earned_on, rules.points["expiry_months"]) < local_day(now, rules.tz):
        back = 0  # the order's points have expired already: nothing is left to take back
    ref = f"refund:{refund_id}"
    entries = [Entry("refund", ts(now), amount_fen=-amt, ref=ref, data={"order_id": order_id})]
    entries += points.reverse(m, back, f"order:{order_id}", ref, now, rules)
    entries += tiers.evaluate(m, now, rules)
    return refund_result(m, o, refund_id, back, now, rules), entries


def refund_result(m: Member, o: Order, refund_id: str, back: int, now: datetime,
                  rules: Rules) -> dict:
    return {"order_id": o.order_id, "refund_id": refund_id, "refunded_fen": o.refunds[refund_id],
            "order_refunded_fen": o.refunded_fen, "points_reversed": back,
            "balance": points.balance(m, local_day(now, rules.tz)), "debt": m.debt,
            "tier": m.tier, "grace_until": m.grace_until}


def set_birthday(m: Member, birthday: str, now: datetime, rules: Rules) -> tuple[dict, list]:
    """Set the birthday once; the first profile completion earns the profile bonus."""
    from datetime import date

    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", birthday.strip()):
            raise ValueError(birthday)
        d = date.fromisoformat(birthday.strip())
    except ValueError as e:
        raise Refusal("bad_birthday", "生日格式应为 YYYY-MM-DD，例如 生日 1990-05-20") from e
    if not (d.year >= 1900 and d <= local_day(now, rules.tz)):
        raise Refusal("bad_birthday", "生日日期无效")
    if m.birthday is not None:
        raise Refusal("birthday_set", "生日已设置，不能修改")
    m.birthday = d.isoformat()
    entries: list[Entry] = [Entry("profile", ts(now), data={"field": "birthday"})]
    pts, more = profile.reward(m, now, rules)  # phone and birthday both: 完善资料
    entries += more
    return {"points": pts, "balance": points.balance(m, local_day(now, rules.tz)),
            "complete": bool(m.phone)}, entries
