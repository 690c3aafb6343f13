"""Refunds (PRODUCT.md 2.2, 2.3, issue 9 defects 1, 2, 7): what a refund gives back and takes
back — points paid with, the coupon, earned points spent or expired, and the tier."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from bot.rules import Member, coupons, orders, points
from bot.rules.timeutil import local_day

from .support import RULES, SH, kinds, ledger_points, new_member, sh

NOW = sh(2025, 6, 1, 14)
CODE = "WEKC2345ABCD"


def balance(m: Member, now=NOW) -> int:
    return points.balance(m, local_day(now, SH))


def seed_points(m: Member, amount: int, earned=NOW, ref: str = "adjust:seed") -> None:
    points.credit(m, amount, ref, earned, earned, RULES)


def lots(m: Member) -> list[tuple[str, str, int]]:
    return sorted((x.ref, x.expires_on, x.remaining) for x in m.lots)


# -- defect 1: points paid with and the coupon come back ---------------------------------------

def test_a_full_refund_gives_back_the_points_paid_with_and_the_coupon():
    m = new_member()
    seed_points(m, 600, earned=sh(2025, 3, 10))  # expires 2026-03-10
    coupons.issue(m, RULES.coupons["welcome"], CODE, "issue:w", NOW, RULES)  # 满50减10
    orders.record(m, "o1", 10_000, NOW, NOW, RULES, coupon_code=CODE, points_used=600)
    assert balance(m) == 84  # ¥100 − ¥10 − ¥6 = ¥84 paid
    later = NOW + timedelta(days=2)
    result, entries = orders.refund(m, "o1", "r1", None, later, RULES)
    assert result["points_reversed"] == 84
    assert balance(m, later) == 600
    assert ledger_points(entries) == 600 - 84
    # one new lot under the refund, expiring when the spent lot would have
    assert lots(m) == [("refund:r1", "2026-03-10", 600)]
    c = coupons.find(m, CODE)
    assert (c.status, c.order_id) == ("issued", None)
    assert "coupon_return" in kinds(entries)
    # the coupon can be used again
    orders.record(m, "o2", 6000, later, later, RULES, coupon_code=CODE)
    assert coupons.find(m, CODE).order_id == "o2"


def test_a_partial_refund_gives_back_the_same_share_of_the_points_paid_with():
    m = new_member()
    seed_points(m, 1000)
    orders.record(m, "o1", 20_000, NOW, NOW, RULES, points_used=1000)  # ¥190 paid
    result, _ = orders.refund(m, "o1", "r1", 9500, NOW, RULES)  # half of what was paid
    assert [(x.ref, x.remaining) for x in m.lots if x.ref.startswith("refund")] == [
        ("refund:r1", 500)]
    orders.refund(m, "o1", "r2", None, NOW, RULES)  # the rest: all of it back
    assert sum(x.remaining for x in m.lots if x.ref.startswith("refund")) == 1000
    assert m.orders["o1"].points_returned == 1000


def test_returned_points_expire_at_least_30_days_after_the_refund():
    m = new_member()
    seed_points(m, 500, earned=sh(2024, 6, 20))  # expires 2025-06-20, 19 days after NOW
    orders.record(m, "o1", 10_000, NOW, NOW, RULES, points_used=500)
    orders.refund(m, "o1", "r1", None, NOW, RULES)
    assert [(x.ref, x.expires_on) for x in m.lots if x.ref == "refund:r1"] == [
        ("refund:r1", "2025-07-01")]


def test_points_paid_with_from_two_lots_come_back_with_both_expiries():
    m = new_member()
    seed_points(m, 300, earned=sh(2024, 9, 1), ref="checkin:a")  # expires 2025-09-01
    seed_points(m, 400, earned=sh(2025, 2, 1), ref="checkin:b")  # expires 2026-02-01
    orders.record(m, "o1", 10_000, NOW, NOW, RULES, points_used=600)
    orders.refund(m, "o1", "r1", None, NOW, RULES)
    assert [(x.expires_on, x.remaining) for x in m.lots if x.ref == "refund:r1"] == [
        ("2025-09-01", 300), ("2026-02-01", 300)]
    assert balance(m) == 700


def test_returned_points_pay_debt_first():
    m = new_member()
    m.debt = 200
    seed_points(m, 700)  # 200 pay the debt, 500 remain
    orders.record(m, "o1", 10_000, NOW, NOW, RULES, points_used=500)
    m.debt = 150  # a later reversal left debt
    orders.refund(m, "o1", "r1", None, NOW, RULES)
    assert m.debt == 0
    assert balance(m) == 350


def test_a_coupon_whose_window_has_passed_stays_redeemed_after_a_full_refund():
    m = new_member()
    coupons.issue(m, RULES.coupons["welcome"], CODE, "issue:w", NOW, RULES)  # 7 days
    orders.record(m, "o1", 6000, NOW, NOW, RULES, coupon_code=CODE)
    orders.refund(m, "o1", "r1", None, NOW + timedelta(days=10), RULES)
    assert coupons.find(m, CODE).status == "redeemed"


def test_a_partial_refund_keeps_the_coupon_redeemed():
    m = new_member()
    coupons.issue(m, RULES.coupons["welcome"], CODE, "issue:w", NOW, RULES)
    orders.record(m, "o1", 6000, NOW, NOW, RULES, coupon_code=CODE)
    orders.refund(m, "o1", "r1", 1000, NOW, RULES)
    assert coupons.find(m, CODE).status == "redeemed"


def test_an_order_paid_wholly_with_points_and_a_coupon_can_be_refunded():
    m = new_member()
    seed_points(m, 500)
    coupons.issue(m, RULES.coupons["points_500"], CODE, "issue:p", NOW, RULES)  # 减5
    orders.record(m, "o1", 1000, NOW, NOW, RULES, coupon_code=CODE, points_used=500)
    assert m.orders["o1"].paid_fen == 0
    result, _ = orders.refund(m, "o1", "r1", None, NOW, RULES)
    assert result["refunded_fen"] == 0
    assert balance(m) == 500
    assert coupons.find(m, CODE).status == "issued"


@given(paid_with=st.integers(500, 5000), cuts=st.lists(st.integers(1, 100), min_size=1,
                                                       max_size=5))
def test_refunds_never_give_back_more_than_was_paid_with(paid_with, cuts):
    m = new_member()
    seed_points(m, paid_with)
    orders.record(m, "o1", 100_000, NOW, NOW, RULES, points_used=paid_with)
    for i, cut in enumerate(cuts):
        o = m.orders["o1"]
        if o.net_fen == 0:
            break
        orders.refund(m, "o1", f"r{i}", min(cut * 1000, o.net_fen), NOW, RULES)
        o = m.orders["o1"]
        share = paid_with if o.net_fen == 0 else paid_with * o.refunded_fen // o.paid_fen
        assert sum(x.remaining for x in m.lots if x.ref.startswith("refund:")) == share


# -- defect 2: spend net of refunds, the upgrade undone at once ----------------------------------

def test_a_full_refund_of_the_qualifying_order_undoes_silver_at_once():
    m = new_member()
    orders.record(m, "o1", 300_000, NOW, NOW, RULES)
    assert m.tier == "silver"
    result, entries = orders.refund(m, "o1", "r1", None, NOW + timedelta(days=1), RULES)
    assert (result["tier"], m.tier, m.grace_until) == ("normal", "normal", None)
    assert m.lifetime_spend == 0
    assert [e.data for e in entries if e.kind == "tier_change"] == [
        {"from": "silver", "to": "normal", "up": False, "reason": "refund"}]
    # the next order earns at the corrected multiplier
    later = NOW + timedelta(days=2)
    res, _ = orders.record(m, "o2", 10_000, later, later, RULES)
    assert (res["points_earned"], m.orders["o2"].multiplier) == (100, 1)


def test_a_refund_of_an_earlier_order_that_counted_undoes_silver_too():
    m = new_member()
    orders.record(m, "a", 200_000, NOW, NOW, RULES)
    orders.record(m, "b", 150_000, NOW, NOW, RULES)  # this one upgraded
    assert m.tier == "silver"
    orders.refund(m, "a", "r1", None, NOW, RULES)  # net lifetime ¥1,500
    assert m.tier == "normal"


def test_a_refund_that_leaves_the_line_reached_keeps_the_tier():
    m = new_member()
    orders.record(m, "o1", 350_000, NOW, NOW, RULES)
    orders.refund(m, "o1", "r1", 50_000, NOW, RULES)  # exactly ¥3,000 left
    assert (m.tier, m.grace_until) == ("silver", None)


def test_a_gold_member_refunded_below_the_line_drops_to_the_tier_still_reached():
    m = new_member()
    orders.record(m, "o1", 1_600_000, NOW, NOW, RULES)
    assert m.tier == "gold"
    orders.refund(m, "o1", "r1", 200_000, NOW, RULES)  # ¥14,000 left: silver holds
    assert (m.tier, m.grace_until) == ("silver", None)


def test_a_refund_during_grace_does_not_cut_the_grace_short():
    # the metric was already below the line: it is the window, not the refund, that lost it
    m = new_member()
    orders.record(m, "o1", 1_500_000, sh(2024, 5, 1), sh(2024, 5, 1), RULES)
    orders.record(m, "o2", 100_000, sh(2025, 3, 1), sh(2025, 3, 1), RULES)
    orders.refund(m, "o2", "r0", None, NOW, RULES)  # gold's line was not met before it either
    assert m.tier == "gold" and m.grace_until is not None


# -- defect 7: refunds more than 12 months after the purchase -------------------------------------

def test_a_late_refund_turns_the_spent_points_of_the_order_into_debt():
    m = new_member()
    bought = sh(2024, 3, 1)
    orders.record(m, "o1", 100_000, bought, bought, RULES)  # 1000 points, lot to 2025-03-01
    orders.record(m, "o2", 60_000, sh(2024, 6, 1), sh(2024, 6, 1), RULES, points_used=1000)
    # all of o1's points paid for o2; o2 earned 590, valid to 2025-06-01
    late = sh(2025, 6, 1)  # 15 months after the purchase: o1's lot would have expired
    result, entries = orders.refund(m, "o1", "r1", None, late, RULES)
    assert result["points_reversed"] == 1000
    assert ledger_points(entries) == -1000
    assert (balance(m, late), m.debt) == (-410, 410)


def test_a_late_refund_takes_back_exactly_what_was_spent():
    m = new_member()
    bought = sh(2024, 3, 1)
    orders.record(m, "o1", 100_000, bought, bought, RULES)  # 1000 points, lot until 2025-03-01
    orders.record(m, "o2", 30_000, sh(2024, 6, 1), sh(2024, 6, 1), RULES,
                  points_used=700)  # 700 of them spent; o2's 293 points last to 2025-06-01
    late = sh(2025, 5, 1)  # 300 of o1 expired unspent; o2's lot still there
    assert m.orders["o1"].points_expired is not None
    before = balance(m, late)
    result, _ = orders.refund(m, "o1", "r1", None, late, RULES)
    assert m.orders["o1"].points_expired == 300
    assert result["points_reversed"] == 700
    assert balance(m, late) == before - 700  # 293 taken from o2's lot, 407 of debt
    assert m.debt == 407


def test_a_late_refund_of_an_order_whose_points_all_expired_takes_nothing():
    m = new_member()
    bought = sh(2024, 3, 1)
    orders.record(m, "o1", 100_000, bought, bought, RULES)
    seed_points(m, 50, earned=NOW)
    result, _ = orders.refund(m, "o1", "r1", None, NOW, RULES)
    assert result["points_reversed"] == 0
    assert (balance(m), m.debt) == (50, 0)


def test_a_late_partial_refund_counts_expired_points_first():
    m = new_member()
    bought = sh(2024, 3, 1)
    orders.record(m, "o1", 100_000, bought, bought, RULES)  # 1000 points
    orders.record(m, "o2", 60_000, sh(2024, 6, 1), sh(2024, 6, 1), RULES, points_used=600)
    seed_points(m, 500, earned=NOW)
    # 600 of o1's points spent, 400 expired unspent
    r1, _ = orders.refund(m, "o1", "r1", 30_000, NOW, RULES)  # 300 points' worth: expired ones
    assert r1["points_reversed"] == 0
    r2, _ = orders.refund(m, "o1", "r2", None, NOW, RULES)  # the rest: the 600 spent
    assert r2["points_reversed"] == 600
