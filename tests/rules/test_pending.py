"""Pending points (PRODUCT.md 2.5, issue 17 item 3): purchase points wait
``points.pending_days`` days; a refund inside the window cancels them (no debt, no lot); after
it they are a normal lot whose expiry counts from the day they matured."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.rules import Member, indexes, orders, points
from bot.rules.config import DEFAULTS, RulesError, _merge, build_rules
from bot.rules.timeutil import local_day

from .support import RULES, SH, new_member, sh

PENDING = build_rules(_merge(DEFAULTS, {"points": {"pending_days": 7}}))
PAID = sh(2025, 6, 1, 14)


def avail(m: Member, now) -> int:
    return points.balance(m, local_day(now, SH), PENDING)


def test_default_zero_is_todays_behaviour():
    assert RULES.points["pending_days"] == 0
    m = new_member()
    res, _ = orders.record(m, "o1", 10_000, PAID, PAID, RULES)
    assert res["balance"] == 100 and res["points_pending"] == 0 and m.pending == []
    assert [(x.ref, x.expires_on) for x in m.lots] == [("order:o1", "2026-06-01")]


def test_purchase_points_wait_then_become_a_lot_expiring_from_the_day_they_matured():
    m = new_member()
    res, entries = orders.record(m, "o1", 10_000, PAID, PAID, PENDING)
    assert res["balance"] == 0 and res["points_pending"] == 100
    assert res["pending_until"] == "2025-06-08"
    assert m.lots == [] and "pending" in [e.kind for e in entries]
    assert sum(e.points for e in entries) == 0  # nothing in the balance yet
    assert points.pending(m, date(2025, 6, 7)) == (100, "2025-06-08")
    assert avail(m, sh(2025, 6, 7, 23, 59)) == 0
    # a read with a later now sees them available before any step converts them
    assert avail(m, sh(2025, 6, 8, 0, 1)) == 100
    assert points.pending(m, date(2025, 6, 8)) == (0, None)
    # the next step matures them: a lot expiring 12 months after the day they matured
    later = sh(2025, 6, 9)
    got = points.expire(m, later, PENDING)
    assert [(e.kind, e.points, e.data.get("matured")) for e in got] == [
        ("credit", 100, "2025-06-08")]
    assert [(x.ref, x.earned_on, x.expires_on, x.remaining) for x in m.lots] == [
        ("order:o1", "2025-06-08", "2026-06-08", 100)]
    assert m.pending == []


def test_pending_points_cannot_be_spent():
    m = new_member()
    orders.record(m, "o1", 100_000, PAID, PAID, PENDING)  # 1000 pending
    with pytest.raises(Exception, match="积分不足"):
        orders.record(m, "o2", 10_000, PAID, PAID, PENDING, points_used=500)
    # once matured they can
    res, _ = orders.record(m, "o3", 10_000, sh(2025, 6, 8, 10), sh(2025, 6, 8, 10), PENDING,
                           points_used=500)
    assert res["balance"] == 500 and res["points_pending"] == 95


def test_refund_inside_the_window_cancels_cleanly():
    m = new_member()
    orders.record(m, "o1", 10_000, PAID, PAID, PENDING)
    res, entries = orders.refund(m, "o1", "r1", None, sh(2025, 6, 3), PENDING)
    assert res["points_reversed"] == 100
    assert m.pending == [] and m.lots == [] and m.debt == 0
    assert res["balance"] == 0
    assert "reverse" not in [e.kind for e in entries]  # no points left the balance
    cancel = next(e for e in entries if e.kind == "pending_cancel")
    assert cancel.data["pending_cancelled"] == 100 and cancel.points == 0
    # nothing matures later
    assert avail(m, sh(2025, 7, 1)) == 0
    assert m.lifetime_spend == 0


def test_partial_refund_inside_the_window_cancels_the_share():
    m = new_member()
    orders.record(m, "o1", 10_000, PAID, PAID, PENDING)
    orders.refund(m, "o1", "r1", 4_000, sh(2025, 6, 3), PENDING)
    assert [p.amount for p in m.pending] == [60]
    assert avail(m, sh(2025, 6, 10)) == 60


def test_refund_after_the_window_reverses_the_lot_and_spent_points_become_debt():
    m = new_member()
    orders.record(m, "o1", 100_000, PAID, PAID, PENDING)  # 1000, mature 06-08
    orders.record(m, "o2", 50_000, sh(2025, 6, 9), sh(2025, 6, 9), PENDING, points_used=800)
    res, _ = orders.refund(m, "o1", "r1", None, sh(2025, 6, 10), PENDING)
    assert res["points_reversed"] == 1000 and m.debt == 800


def test_matured_points_pay_debt_first():
    m = new_member(debt=30)
    orders.record(m, "o1", 10_000, PAID, PAID, PENDING)
    points.expire(m, sh(2025, 6, 8, 9), PENDING)
    assert m.debt == 0 and [x.remaining for x in m.lots] == [70]


def test_an_imported_old_order_matures_at_once():
    m = new_member()
    old = sh(2025, 1, 1)
    res, _ = orders.record(m, "o1", 10_000, old, PAID, PENDING)
    assert res["points_pending"] == 0 and res["balance"] == 100
    assert [(x.earned_on, x.expires_on) for x in m.lots] == [("2025-01-08", "2026-01-08")]


def test_indexes_count_the_pending_lot_for_next_expiry_and_the_maturity_day():
    m = new_member()
    orders.record(m, "o1", 10_000, PAID, PAID, PENDING)
    idx = indexes.derive(m, local_day(PAID, SH), PENDING)
    assert idx["pending"] == 20250608
    assert idx["expiry"] == 20260608  # the lot it will be, so the expiry jobs find it
    points.expire(m, sh(2025, 6, 8, 1), PENDING)
    idx = indexes.derive(m, date(2025, 6, 8), PENDING)
    assert idx["pending"] is None and idx["expiry"] == 20260608


def test_expiry_of_a_matured_lot_counts_from_maturity():
    m = new_member()
    orders.record(m, "o1", 10_000, PAID, PAID, PENDING)
    assert avail(m, sh(2026, 6, 8, 23)) == 100  # 12 months after 06-08, still valid that day
    assert avail(m, sh(2026, 6, 9, 1)) == 0
    got = points.expire(m, sh(2026, 6, 9, 1), PENDING)
    assert [e.kind for e in got] == ["credit", "expire"]


def test_bad_pending_days_names_the_field():
    with pytest.raises(RulesError, match=r"points\.pending_days"):
        build_rules(_merge(DEFAULTS, {"points": {"pending_days": "7"}}))
    with pytest.raises(RulesError, match=r"points\.pending_days"):
        build_rules(_merge(DEFAULTS, {"points": {"pending_days": -1}}))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["order", "refund", "spend", "wait"]),
                          st.integers(1, 60_000), st.integers(0, 10)), max_size=25))
def test_property_never_negative_without_spend_and_pending_never_counts(ops):
    """Whatever orders, refunds, waits and spends: no debt arises from refunds of points that
    were still pending, and pending points never count in the available balance."""
    m = new_member()
    now = PAID
    n = 0
    for op, amount, days in ops:
        now = now + timedelta(days=days, minutes=1)
        today = local_day(now, SH)
        if op == "order":
            n += 1
            orders.record(m, f"o{n}", amount, now, now, PENDING)
        elif op == "refund" and n:
            o = m.orders[f"o{1 + amount % n}"]
            if o.net_fen:
                orders.refund(m, o.order_id, f"r{amount}-{days}-{n}", None, now, PENDING)
        elif op == "spend":
            have = points.balance(m, today, PENDING)
            if have >= 1:
                points.spend(m, min(have, amount), f"s{amount}", now, PENDING)
        pend, _ = points.pending(m, today)
        assert pend == sum(p.amount for p in m.pending if p.matures_on > today.isoformat())
        assert all(p.amount > 0 for p in m.pending)
        # nothing was ever spent from pending: with no spends there is never debt
        if not any(o == "spend" for o, _, _ in ops):
            assert m.debt == 0
        assert points.balance(m, today, PENDING) >= -m.debt


def test_tiers_count_the_spend_at_once_pending_or_not():
    """PRODUCT.md 2.2: upgrades happen when the qualifying order is recorded; pending delays
    the points only."""
    m = new_member()
    res, _ = orders.record(m, "big", 300_000, PAID, PAID, PENDING)
    assert res["tier"] == "silver" and res["balance"] == 0 and res["points_pending"] == 3000
    # a refund inside the window undoes the upgrade at once, as without pending points
    res, _ = orders.refund(m, "big", "r", None, sh(2025, 6, 2), PENDING)
    assert res["tier"] == "normal" and m.pending == [] and m.debt == 0
