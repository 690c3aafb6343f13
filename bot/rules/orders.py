"""Orders and refunds: coupon + points spend + purchase points + tier, as one pure step."""

from __future__ import annotations

import re
from datetime import datetime

from . import campaigns, coupons, points, profile, tiers
from .config import Rules
from .models import Entry, Member, Order, Refusal
from .timeutil import add_months, day_of, local_day, start_of_day, ts


def points_cash_fen(points_used: int, rules: Rules) -> int:
    """What ``points_used`` points are worth in fen (100 points = ¥1 by default)."""
    return points_used * 100 // rules.points["redeem_points_per_yuan"]


def check_paid_at(paid_at: datetime, rules: Rules) -> None:
    """Refuse a payment time before ``orders.earliest_paid_at`` (a till with a reset clock,
    a mistyped year): stored, such a date would count in no window and expire at once."""
    earliest = rules.orders["earliest_paid_at"]
    if paid_at < start_of_day(earliest, rules.tz):
        raise Refusal("paid_at_too_early", f"付款时间不能早于 {earliest.isoformat()}",
                      field="paid_at", earliest=earliest.isoformat())


def record(m: Member, order_id: str, amount_fen: int, paid_at: datetime, now: datetime,
           rules: Rules, *, store_id: str = "", coupon_code: str | None = None,
           points_used: int = 0, body_hash: str = "",
           grants: dict[str, int] | None = None) -> tuple[dict, list[Entry]]:
    """Record an order once: redeem the coupon, spend points, credit points (with the
    campaign it gets, within the budget ``grants`` hold: :mod:`.campaigns`), update tier."""
    if order_id in m.orders:
        o = m.orders[order_id]
        if body_hash and o.body_hash and o.body_hash != body_hash:
            raise Refusal("order_conflict", "订单号已存在且内容不同", order_id=order_id)
        return order_result(m, o, now, rules), []
    if amount_fen < 0:
        raise Refusal("bad_amount", "金额无效")
    check_paid_at(paid_at, rules)
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
        if points_used > points.balance(m, local_day(now, rules.tz), rules):
            points.spend(m, points_used, ref, now, rules)  # refuses: 积分不足
    mult = rules.tier(m.tier).multiplier
    # the campaign (targeted on the tier and segment before this order) and its budget: may
    # ask the use case for a grant, before anything changed
    camp, bonus = campaigns.award(m, amount_fen - off - cash, mult, store_id, paid_at, rules,
                                  grants or {})
    spent_from: list[list] = []
    entries: list[Entry] = points.spend(m, points_used, ref, now, rules, reason="order",
                                        taken=spent_from)
    entries += points.expire(m, now, rules)
    if coupon_code:
        c, off, e = coupons.redeem(m, coupon_code, order_id, amount_fen, now, rules)
        coupon_code = c.code
        entries += e
    paid = amount_fen - off - cash
    earned = points.points_for_purchase(paid, mult, rules) + bonus
    o = Order(order_id, amount_fen, paid, ts(paid_at), earned, mult, store_id, coupon_code,
              points_used, body_hash=body_hash, points_expired=0, points_spent_from=spent_from,
              campaign=camp.key if camp else "", campaign_points=bonus)
    m.orders[order_id] = o
    m.lifetime_spend += paid
    m.last_purchase = max(m.last_purchase or 0, o.paid_at)
    m.last_activity = max(m.last_activity, o.paid_at)
    entries.append(Entry("order", ts(now), amount_fen=paid, ref=ref,
                         data={"gross": amount_fen, "coupon_off": off, "points_cash": cash,
                               "paid_at": o.paid_at, "store_id": store_id,
                               **({"campaign": o.campaign, "campaign_points": bonus}
                                  if camp else {})}))
    entries += points.credit_purchase(m, earned, ref, paid_at, now, rules)
    entries += tiers.evaluate(m, now, rules)
    return order_result(m, o, now, rules), entries


def order_result(m: Member, o: Order, now: datetime, rules: Rules) -> dict:
    today = local_day(now, rules.tz)
    pending, pending_until = points.pending(m, today)
    return {"order_id": o.order_id, "member_code": m.member_code, "paid_fen": o.paid_fen,
            "points_earned": o.points, "points_used": o.points_used,
            "coupon_code": o.coupon_code, "balance": points.balance(m, today, rules),
            "points_pending": pending, "pending_until": pending_until,
            "campaign": o.campaign or None, "campaign_points": o.campaign_points,
            "tier": m.tier, "body_hash": o.body_hash}


def refund(m: Member, order_id: str, refund_id: str, amount_fen: int | None, now: datetime,
           rules: Rules) -> tuple[dict, list[Entry]]:
    """Refund part or all of an order once per ``refund_id``.

    In proportion to the refunded share: the order's earned points are taken back (what was
    spent becomes debt, what expired unspent is gone), the points it was paid with come back,
    spend falls (an upgrade the money made is undone at once); on a full refund the coupon
    comes back while its window lasts.
    """
    o = m.orders.get(order_id)
    if o is None:
        raise Refusal("order_not_found", "未找到该订单", order_id=order_id)
    if refund_id in o.refunds:
        return refund_result(m, o, refund_id, 0, now, rules), []
    amt = o.net_fen if amount_fen is None else amount_fen
    # an order paid wholly with points and a coupon is refunded whole, for 0 fen
    whole_free = amount_fen is None and o.paid_fen == 0 and not o.refunds
    if not whole_free and (amt <= 0 or amt > o.net_fen):
        raise Refusal("refund_amount", f"退款金额无效：可退 {o.net_fen} 分", refundable=o.net_fen)
    before = tiers.spend_metrics(m, now, rules)
    o.refunded_fen += amt
    o.refunds[refund_id] = amt
    m.lifetime_spend -= amt
    full = o.net_fen == 0
    ref = f"refund:{refund_id}"
    entries = points.expire(m, now, rules)  # what expired unspent is known before taking back
    entries.append(Entry("refund", ts(now), amount_fen=-amt, ref=ref,
                         data={"order_id": order_id}))
    back = _earned_back(o, now, rules)
    o.points_reversed += back
    entries += points.reverse(m, back, f"order:{order_id}", ref, now, rules)
    entries += points.restore(m, _used_back(o, full, rules), ref, now, rules)
    if full:
        entries += coupons.give_back(m, o.coupon_code, order_id, now)
    entries += tiers.undo_on_refund(m, before, now, rules)
    entries += tiers.evaluate(m, now, rules)
    return refund_result(m, o, refund_id, back, now, rules), entries


def _earned_back(o: Order, now: datetime, rules: Rules) -> int:
    """Earned points to take back now: all that the refunded share earned, less what was
    taken back before and less what expired unspent (those are gone already)."""
    base = o.points - o.campaign_points
    due = base - points.points_for_purchase(o.net_fen, o.multiplier, rules)
    if o.campaign_points:  # the campaign's share goes back in proportion too
        keep = o.campaign_points * o.net_fen // o.paid_fen if o.paid_fen else 0
        due += o.campaign_points - keep
    if o.points_expired is None:  # recorded before expiries were kept per order
        expired = add_months(day_of(o.paid_at, rules.tz), rules.points["expiry_months"])
        if expired < local_day(now, rules.tz):
            return 0
        return max(due - o.points_reversed, 0)
    return max(due - o.points_expired - o.points_reversed, 0)


def _used_back(o: Order, full: bool, rules: Rules) -> list[list]:
    """The points paid with that come back now, as ``[expires_on, amount]`` pieces: the
    refunded share of them (all on a full refund), the last spent first."""
    if not o.points_used:
        return []
    target = o.points_used if full else o.points_used * o.refunded_fen // o.paid_fen
    give = target - o.points_returned
    if give <= 0:
        return []
    spent = o.points_spent_from or [[add_months(day_of(o.paid_at, rules.tz),
                                                rules.points["expiry_months"]).isoformat(),
                                     o.points_used]]
    skip, out = o.points_returned, []
    for exp, n in reversed(spent):
        use = min(n, skip)
        skip -= use
        take = min(n - use, give)
        if take:
            out.append([exp, take])
            give -= take
    o.points_returned = target
    return out


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
