"""Coupons: issue with per-member limit and tier restriction, atomic redeem, expiry (回流)."""

from __future__ import annotations

from datetime import datetime, timedelta

from .config import CouponTemplate, Rules
from .models import Coupon, Entry, Member, Refusal
from .timeutil import end_of_day, local_day, ts

# 31 symbols: digits and capitals without the look-alikes 0/O, 1/I/L.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 12


def valid_code(code: str) -> bool:
    return len(code) == CODE_LENGTH and all(c in CODE_ALPHABET for c in code)


def window_end(tpl: CouponTemplate, now: datetime, rules: Rules) -> datetime:
    """Last valid instant: hours from issue, else the end of the day ``valid_days`` later."""
    if tpl.valid_hours:
        return now + timedelta(hours=tpl.valid_hours)
    return end_of_day(local_day(now, rules.tz) + timedelta(days=tpl.valid_days), rules.tz)


def held(m: Member, template: str) -> int:
    return sum(1 for c in m.coupons if c.template == template)


def check_issue(m: Member, tpl: CouponTemplate) -> None:
    """Refuse when the member may not receive ``tpl`` (tier restriction, per-member limit)."""
    if tpl.tiers and m.tier not in tpl.tiers:
        raise Refusal("coupon_tier", f"{tpl.name}仅限指定等级会员领取", template=tpl.key)
    if held(m, tpl.key) >= tpl.per_member_limit:
        raise Refusal("coupon_limit", f"{tpl.name}已达领取上限", template=tpl.key)


def issue(m: Member, tpl: CouponTemplate, code: str, ref: str, now: datetime,
          rules: Rules) -> tuple[Coupon, list[Entry]]:
    """Give ``m`` a coupon of ``tpl`` with the pre-generated unguessable ``code``."""
    for c in m.coupons:
        if c.ref == ref and ref:
            return c, []
    check_issue(m, tpl)
    c = Coupon(code, tpl.key, ts(now), ts(window_end(tpl, now, rules)), ref=ref)
    m.coupons.append(c)
    return c, [Entry("coupon_issue", ts(now), ref=ref, data={"code": code, "template": tpl.key})]


def discount_fen(tpl: CouponTemplate, amount_fen: int) -> int:
    if tpl.kind == "cash":
        return min(tpl.value, amount_fen)
    return amount_fen - amount_fen * tpl.value // 100


def find(m: Member, code: str) -> Coupon | None:
    code = code.strip().upper()
    return next((c for c in m.coupons if c.code == code), None)


def check_redeem(m: Member, code: str, order_id: str, amount_fen: int, now: datetime,
                 rules: Rules) -> tuple[Coupon, int, bool]:
    """Refuse when ``code`` cannot be redeemed on ``order_id``; changes nothing.

    Returns the coupon, the discount in fen and whether it is already redeemed on this order.
    """
    c = find(m, code)
    if c is None:
        raise Refusal("coupon_not_found", "未找到该优惠券", code=code)
    tpl = rules.coupons.get(c.template)
    if c.status == "redeemed":
        if c.order_id != order_id:
            raise Refusal("coupon_used", "该优惠券已使用", code=c.code)
        if c.redeemed_amount_fen is not None and c.redeemed_amount_fen != amount_fen:
            # the threshold was checked against that amount: another one is not this redemption
            raise Refusal("coupon_conflict", "该优惠券已按另一金额用于此订单", code=c.code,
                          amount_fen=c.redeemed_amount_fen)
        if tpl is not None and amount_fen < tpl.threshold_fen:
            raise Refusal("coupon_threshold", f"未满{tpl.threshold_fen // 100}元，不可使用该券",
                          code=c.code, threshold_fen=tpl.threshold_fen)
        return c, discount_fen(tpl, amount_fen) if tpl else 0, True
    if c.status == "expired" or ts(now) > c.valid_until:
        raise Refusal("coupon_expired", "该优惠券已过期", code=c.code)
    if tpl is None:
        raise Refusal("coupon_unknown_template", "该优惠券已停用", code=c.code)
    if amount_fen < tpl.threshold_fen:
        raise Refusal("coupon_threshold", f"未满{tpl.threshold_fen // 100}元，不可使用该券",
                      code=c.code, threshold_fen=tpl.threshold_fen)
    return c, discount_fen(tpl, amount_fen), False


def redeem(m: Member, code: str, order_id: str, amount_fen: int, now: datetime,
           rules: Rules) -> tuple[Coupon, int, list[Entry]]:
    """Redeem ``code`` on ``order_id``. The same (code, order) again is a no-op success.

    Returns the coupon, the discount in fen and the ledger entries.
    """
    c, off, already = check_redeem(m, code, order_id, amount_fen, now, rules)
    if already:
        return c, off, []
    at = ts(now)
    c.status, c.order_id, c.redeemed_at = "redeemed", order_id, at
    c.redeemed_amount_fen = amount_fen
    return c, off, [Entry("coupon_redeem", at, amount_fen=off, ref=f"order:{order_id}",
                          data={"code": c.code, "template": c.template,
                                "order_amount_fen": amount_fen})]


def give_back(m: Member, code: str | None, order_id: str, now: datetime) -> list[Entry]:
    """A fully refunded order's coupon is ``issued`` again while its window lasts (else it
    stays ``redeemed``). It never left the member, so no stock moves."""
    c = find(m, code) if code else None
    if c is None or c.status != "redeemed" or c.order_id != order_id or ts(now) > c.valid_until:
        return []
    c.status, c.order_id, c.redeemed_at, c.redeemed_amount_fen = "issued", None, None, None
    return [Entry("coupon_return", ts(now), ref=f"order:{order_id}",
                  data={"code": c.code, "template": c.template})]


def expire_coupons(m: Member, now: datetime) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Mark coupons past their window expired; each returns one unit of stock (回流)."""
    at = ts(now)
    entries: list[Entry] = []
    returns: list[tuple[str, str]] = []
    for c in m.coupons:
        if c.status == "issued" and at > c.valid_until:
            c.status = "expired"
            entries.append(Entry("coupon_expire", at, ref=c.code,
                                 data={"code": c.code, "template": c.template}))
            returns.append((c.template, c.ref or c.code))
    return entries, returns


def valid(m: Member, now: datetime) -> list[Coupon]:
    """Usable coupons, soonest expiry first."""
    at = ts(now)
    return sorted((c for c in m.coupons if c.status == "issued" and c.valid_until >= at),
                  key=lambda c: (c.valid_until, c.code))


def next_coupon_expiry(m: Member) -> int | None:
    ends = [c.valid_until for c in m.coupons if c.status == "issued"]
    return min(ends) if ends else None
