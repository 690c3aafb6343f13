"""Orders and refunds (PRODUCT.md 2.3, 6): coupon, points + cash, purchase points, refunds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.rules import Member, Refusal, coupons, orders, points
from bot.rules.timeutil import local_day, ts

from .support import RULES, SH, kinds, ledger_points, new_member, sh

NOW = sh(2025, 6, 1, 14)


def balance(m: Member, now=NOW) -> int:
    return points.balance(m, local_day(now, SH))


def give_points(m: Member, amount: int, now=NOW) -> None:
    points.credit(m, amount, "adjust:seed", now, now, RULES)


def give_coupon(m: Member, template: str, code: str = "WEKC2345ABCD", now=NOW) -> None:
    coupons.issue(m, RULES.coupons[template], code, f"issue:{code}", now, RULES)


def test_an_order_earns_floor_of_paid_yuan_at_paid_at():
    m = new_member()
    paid_at = NOW - timedelta(hours=2)
    result, entries = orders.record(m, "o1", 9999, paid_at, NOW, RULES, store_id="s1")
    assert (result["paid_fen"], result["points_earned"], result["balance"]) == (9999, 99, 99)
    assert kinds(entries) == ["order", "credit"]
    assert ledger_points(entries) == 99
    assert m.lifetime_spend == 9999
    assert m.last_purchase == ts(paid_at)
    assert m.orders["o1"].store_id == "s1"


def test_a_silver_member_earns_double():
    m = new_member(tier="silver", lifetime_spend=300_000)
    result, _ = orders.record(m, "o1", 9999, NOW, NOW, RULES)
    assert result["points_earned"] == 199
    assert m.orders["o1"].multiplier == 2


def test_an_imported_old_order_lot_expires_12_months_after_paid_at():
    m = new_member()
    orders.record(m, "old", 20_000, sh(2024, 8, 1, 10), NOW, RULES)
    assert [(lot.earned_on, lot.expires_on, lot.remaining) for lot in m.lots] == [
        ("2024-08-01", "2025-08-01", 200)]


def test_an_imported_order_older_than_12_months_is_expired_at_once():
    m = new_member()
    result, entries = orders.record(m, "older", 20_000, sh(2024, 3, 1, 10), NOW, RULES)
    assert [(e.kind, e.points) for e in entries if e.points] == [("credit", 200),
                                                                ("expire", -200)]
    assert result["balance"] == 0
    assert m.lots == []
    assert m.lifetime_spend == 20_000


def test_a_cash_coupon_is_redeemed_and_taken_off_the_paid_amount():
    m = new_member()
    give_coupon(m, "welcome")  # 满50减10
    result, entries = orders.record(m, "o1", 6000, NOW, NOW, RULES, coupon_code="wekc2345abcd")
    assert (result["paid_fen"], result["points_earned"]) == (5000, 50)
    assert result["coupon_code"] == "WEKC2345ABCD"
    assert m.coupons[0].status == "redeemed"
    assert m.coupons[0].order_id == "o1"
    assert "coupon_redeem" in kinds(entries)
    assert m.lifetime_spend == 5000


def test_a_coupon_below_its_threshold_is_refused_and_nothing_changes():
    m = new_member()
    give_coupon(m, "welcome")
    before = m.to_dict()
    with pytest.raises(Refusal) as exc:
        orders.record(m, "o1", 4999, NOW, NOW, RULES, coupon_code="WEKC2345ABCD")
    assert exc.value.code == "coupon_threshold"
    assert m.to_dict() == before


def test_points_pay_100_per_yuan_and_the_rest_earns_points():
    m = new_member()
    give_points(m, 800)
    result, entries = orders.record(m, "o1", 10_000, NOW, NOW, RULES, points_used=500)
    assert result["paid_fen"] == 9500
    assert result["points_earned"] == 95
    assert result["balance"] == 800 - 500 + 95
    assert ledger_points(entries) == -500 + 95
    assert m.orders["o1"].points_used == 500


def test_coupon_and_points_together():
    m = new_member()
    give_points(m, 600)
    give_coupon(m, "welcome")
    result, _ = orders.record(m, "o1", 6000, NOW, NOW, RULES, coupon_code="WEKC2345ABCD",
                              points_used=600)
    assert result["paid_fen"] == 6000 - 1000 - 600
    assert result["points_earned"] == 44


@pytest.mark.parametrize(("points_used", "amount", "code"), [
    (499, 10_000, "points_below_min"),
    (900, 10_000, "insufficient_points"),
    (800, 700, "points_exceed_amount"),
])
def test_points_payment_refusals_change_nothing(points_used, amount, code):
    m = new_member()
    give_points(m, 800)
    before = m.to_dict()
    with pytest.raises(Refusal) as exc:
        orders.record(m, "o1", amount, NOW, NOW, RULES, points_used=points_used)
    assert exc.value.code == code
    assert m.to_dict() == before


def test_a_refused_order_does_not_use_up_the_coupon():
    m = new_member()
    give_points(m, 100)
    give_coupon(m, "welcome")
    before = m.to_dict()
    with pytest.raises(Refusal) as exc:
        orders.record(m, "o1", 6000, NOW, NOW, RULES, coupon_code="WEKC2345ABCD",
                      points_used=500)
    assert exc.value.code == "insufficient_points"
    assert m.to_dict() == before
    assert m.coupons[0].status == "issued"


def test_recording_the_same_order_again_changes_nothing():
    m = new_member()
    first, _ = orders.record(m, "o1", 12_345, NOW, NOW, RULES, body_hash="h1")
    before = m.to_dict()
    again, entries = orders.record(m, "o1", 12_345, NOW, NOW + timedelta(minutes=1), RULES,
                                   body_hash="h1")
    assert entries == []
    assert again == first
    assert m.to_dict() == before


def test_the_same_order_id_with_a_different_body_is_a_conflict():
    m = new_member()
    orders.record(m, "o1", 12_345, NOW, NOW, RULES, body_hash="h1")
    before = m.to_dict()
    with pytest.raises(Refusal) as exc:
        orders.record(m, "o1", 99_999, NOW, NOW, RULES, body_hash="h2")
    assert exc.value.code == "order_conflict"
    assert m.to_dict() == before


def test_a_partial_then_full_refund_reverses_the_right_points():
    m = new_member()
    orders.record(m, "other", 5000, NOW, NOW, RULES)  # 50 points that must stay
    orders.record(m, "o1", 10_000, NOW, NOW, RULES)  # 100 points
    result, entries = orders.refund(m, "o1", "r1", 3050, NOW, RULES)
    # 69.50 yuan stay paid: 69 points stay, 31 go back
    assert result["points_reversed"] == 31
    assert ledger_points(entries) == -31
    assert balance(m) == 50 + 69
    assert m.lifetime_spend == 5000 + 6950

    result, entries = orders.refund(m, "o1", "r2", None, NOW, RULES)
    assert (result["refunded_fen"], result["order_refunded_fen"]) == (6950, 10_000)
    assert result["points_reversed"] == 69
    assert balance(m) == 50
    assert [(lot.ref, lot.remaining) for lot in m.lots] == [("order:other", 50)]
    assert m.lifetime_spend == 5000


def test_a_refund_is_applied_once_per_refund_id():
    m = new_member()
    orders.record(m, "o1", 10_000, NOW, NOW, RULES)
    orders.refund(m, "o1", "r1", 2000, NOW, RULES)
    before = m.to_dict()
    result, entries = orders.refund(m, "o1", "r1", 2000, NOW, RULES)
    assert entries == []
    assert result["refunded_fen"] == 2000
    assert m.to_dict() == before


def test_refunding_more_than_remains_is_refused():
    m = new_member()
    orders.record(m, "o1", 10_000, NOW, NOW, RULES)

    def refused(amount):
        before = m.to_dict()
        with pytest.raises(Refusal) as exc:
            orders.refund(m, "o1", "r-bad", amount, NOW, RULES)
        assert exc.value.code == "refund_amount"
        assert exc.value.data["refundable"] == m.orders["o1"].net_fen
        assert m.to_dict() == before

    refused(10_001)
    refused(0)
    refused(-100)
    orders.refund(m, "o1", "r1", 3050, NOW, RULES)
    refused(6951)
    orders.refund(m, "o1", "r2", 6950, NOW, RULES)
    refused(None)  # nothing left to refund


def test_refunding_an_unknown_order_is_refused():
    with pytest.raises(Refusal) as exc:
        orders.refund(new_member(), "nope", "r1", None, NOW, RULES)
    assert exc.value.code == "order_not_found"


def test_a_refund_after_the_points_were_spent_leaves_debt():
    m = new_member()
    orders.record(m, "o1", 60_000, NOW, NOW, RULES)  # 600 points
    orders.record(m, "o2", 60_000, NOW, NOW, RULES, points_used=600)
    assert balance(m) == 594
    result, _ = orders.refund(m, "o1", "r1", None, NOW, RULES)
    assert result["points_reversed"] == 600
    assert result["debt"] == 6
    assert result["balance"] == -6


@given(order_fen=st.integers(1, 2_000_000), multiplier=st.sampled_from([1, 2]),
       cuts=st.lists(st.integers(1, 10_000), min_size=1, max_size=6))
def test_partial_refunds_always_leave_the_points_of_what_stays_paid(order_fen, multiplier,
                                                                    cuts):
    m = new_member(tier="silver" if multiplier == 2 else "normal",
                   lifetime_spend=300_000 if multiplier == 2 else 0)
    orders.record(m, "o1", order_fen, NOW, NOW, RULES)
    earned = m.orders["o1"].points
    reversed_total = 0
    for i, cut in enumerate(cuts):
        o = m.orders["o1"]
        amount = min(cut * 100, o.net_fen)
        if amount <= 0:
            break
        result, entries = orders.refund(m, "o1", f"r{i}", amount, NOW, RULES)
        reversed_total += result["points_reversed"]
        assert ledger_points(entries) == -result["points_reversed"]
    kept = points.points_for_purchase(m.orders["o1"].net_fen, multiplier, RULES)
    assert reversed_total == earned - kept
    assert balance(m) == kept
