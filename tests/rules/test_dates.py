"""Dates (PRODUCT.md 2.3, issue 9 defect 3): paid_at before orders.earliest_paid_at is refused,
and no stored date, however odd, makes a rules function raise."""

from __future__ import annotations

import contextlib
from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.rules import Order, Refusal, RulesError, checkin, indexes, invites, orders, rfm, tiers
from bot.rules.config import DEFAULTS, _merge, build_rules
from bot.rules.timeutil import local_day, ts

from .support import RULES, SH, new_member, sh

NOW = sh(2026, 11, 25, 10)
YEAR_1 = ts(datetime(1, 1, 1, tzinfo=SH))


def test_an_order_paid_before_the_earliest_day_is_refused_and_changes_nothing():
    m = new_member()
    before = m.to_dict()
    for paid in (datetime(1, 1, 1, tzinfo=SH), sh(1999, 12, 31, 23, 59, 59)):
        with pytest.raises(Refusal) as e:
            orders.record(m, "o1", 1000, paid, NOW, RULES)
        assert (e.value.code, e.value.data["field"]) == ("paid_at_too_early", "paid_at")
    assert m.to_dict() == before
    orders.record(m, "o1", 1000, sh(2000, 1, 1, 0), NOW, RULES)  # the first instant allowed


def test_the_earliest_day_is_a_rules_setting():
    rules = build_rules(_merge(DEFAULTS, {"orders": {"earliest_paid_at": date(2020, 1, 1)}}))
    assert rules.orders["earliest_paid_at"] == date(2020, 1, 1)
    with pytest.raises(Refusal):
        orders.record(new_member(), "o1", 1000, sh(2019, 6, 1), NOW, rules)
    for bad in ("yesterday", 20200101, "1800-01-01"):
        with pytest.raises(RulesError, match="orders.earliest_paid_at"):
            build_rules(_merge(DEFAULTS, {"orders": {"earliest_paid_at": bad}}))


def stored_with(paid_at: int, *, grace_until: int | None = None) -> object:
    """A member as a store may hold it from before the check: an order paid in year 1."""
    m = new_member(joined=sh(2025, 1, 1))
    m.orders["old"] = Order("old", 1000, 1000, paid_at, 10, points_expired=0)
    m.lifetime_spend = 1000
    m.last_purchase = paid_at
    m.grace_until = grace_until
    return m


@given(paid_at=st.sampled_from([YEAR_1, -2**40, 2**40, 0, -1]),
       grace=st.sampled_from([None, YEAR_1, 2**40]))
def test_no_stored_date_makes_a_rules_function_raise(paid_at, grace):
    m = stored_with(paid_at, grace_until=grace)
    today = local_day(NOW, SH)
    indexes.derive(m, today, RULES)
    rfm.segment(m, NOW, RULES)
    tiers.evaluate(m, NOW, RULES)
    tiers.warning_due(m, today, RULES)
    tiers.progress(m, NOW, RULES)
    orders.record(m, "gold", 1_600_000, NOW, NOW, RULES)  # gold: its review day is computed
    indexes.derive(m, today, RULES)
    orders.refund(m, "old", "r-old", None, NOW, RULES)
    orders.refund(m, "gold", "r-gold", None, NOW, RULES)
    checkin.check_in(m, NOW, RULES)
    m.joined_at = paid_at
    with contextlib.suppress(Refusal):  # a clear refusal at most, never a crash
        invites.check_bind(m, new_member("m2"), [], NOW, RULES)
    indexes.derive(m, today, RULES)
