"""Job indexes (PRODUCT.md 10): day numbers the jobs look members up by."""

from __future__ import annotations

from datetime import date

from bot.rules import checkin, coupons, indexes, orders, tiers
from bot.rules.timeutil import ts

from .support import RULES, new_member, sh


def test_a_new_member_is_in_no_date_index():
    idx = indexes.derive(new_member(joined=sh(2025, 1, 1, 8)), date(2025, 1, 2), RULES)
    for name in ("expiry", "birthday", "grace_until", "last_purchase", "tier_review",
                 "coupon_expiry"):
        assert idx[name] is None, name
    assert (idx["joined"], idx["tier"], idx["followed"]) == (20250101, "normal", "yes")


def test_derive_gives_day_numbers_in_shanghai():
    m = new_member(birthday="1990-05-20")
    orders.record(m, "o1", 15_000_00, sh(2025, 1, 10, 23, 30), sh(2025, 1, 10, 23, 30), RULES)
    checkin.check_in(m, sh(2025, 1, 12, 9), RULES)
    coupons.issue(m, RULES.coupons["welcome"], "WEKC2345ABCD", "w", sh(2025, 1, 12, 9), RULES)
    tiers.evaluate(m, sh(2026, 1, 11, 9), RULES)  # gold, trailing fell: grace to 2026-07-11
    idx = indexes.derive(m, date(2026, 1, 11), RULES)
    assert idx["birthday"] == 520
    assert idx["expiry"] == 20260110  # the order's lot, the earliest to expire
    assert idx["last_purchase"] == 20250110
    assert idx["grace_until"] == 20260711
    assert idx["tier_review"] == 20260711
    assert idx["coupon_expiry"] == 20250119
    assert idx["tier"] == "gold"


def test_a_utc_late_evening_purchase_is_indexed_on_the_shanghai_day():
    m = new_member()
    m.last_purchase = ts(sh(2025, 3, 1, 0, 30))  # 2025-02-28 16:30 UTC
    assert indexes.derive(m, date(2025, 3, 1), RULES)["last_purchase"] == 20250301


def test_birthday_mmdd_keeps_january():
    m = new_member(birthday="2001-01-05")
    assert indexes.derive(m, date(2025, 3, 1), RULES)["birthday"] == 105
