"""Points lots (PRODUCT.md 2.3): balance, FIFO spending, expiry, reversal with debt."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bot.rules import Entry, Refusal, points
from bot.rules.timeutil import local_day

from .support import RULES, SH, ledger_points, new_member, sh


def today(now: datetime) -> str:
    return local_day(now, SH).isoformat()


def year_later(d: date) -> date:
    """The same day a year later; 29 February becomes 28 February."""
    try:
        return d.replace(year=d.year + 1)
    except ValueError:
        return d.replace(year=d.year + 1, day=28)


# -- property tests ----------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    """Random credits (old and new), spends, reversals, expiry runs and time passing.

    The ledger is the list of entries the rules returned; it must always explain the balance.
    """

    def __init__(self) -> None:
        super().__init__()
        self.m = new_member()
        self.now = sh(2025, 1, 1, 10)
        self.entries: list[Entry] = []
        self.credited: list[str] = []
        self.n = 0

    def balance(self) -> int:
        return points.balance(self.m, local_day(self.now, SH))

    def next_ref(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}:{self.n}"

    @rule(days=st.integers(0, 400), minutes=st.integers(0, 24 * 60 - 1))
    def advance(self, days: int, minutes: int) -> None:
        self.now += timedelta(days=days, minutes=minutes)

    @rule(amount=st.integers(1, 500), age_days=st.integers(0, 500))
    def credit(self, amount: int, age_days: int) -> None:
        ref = self.next_ref("order")
        earned = self.now - timedelta(days=age_days)
        last_day = year_later(local_day(earned, SH))
        before = self.balance()
        self.entries += points.credit(self.m, amount, ref, earned, self.now, RULES)
        self.credited.append(ref)
        if last_day.isoformat() >= today(self.now):
            assert self.balance() == before + amount

    @rule(amount=st.integers(1, 1200))
    def spend(self, amount: int) -> None:
        have = self.balance()
        iso = today(self.now)
        snapshot = self.m.to_dict()
        live = [(lot, lot.expires_on, lot.remaining) for lot in self.m.lots
                if lot.expires_on >= iso]
        try:
            self.entries += points.spend(self.m, amount, self.next_ref("spend"), self.now,
                                         RULES)
        except Refusal as r:
            assert r.code == "insufficient_points"
            assert amount > have
            assert self.m.to_dict() == snapshot, "a refused spend changed the member"
            return
        assert amount <= have
        assert self.balance() == have - amount
        after = {id(lot): lot.remaining for lot in self.m.lots}
        taken = [(exp, rem - after.get(id(lot), 0), after.get(id(lot), 0))
                 for lot, exp, rem in live]
        assert sum(t for _, t, _ in taken) == amount
        # FIFO: a lot is touched only when every lot expiring strictly earlier is used up.
        for exp_b, took_b, _ in taken:
            if took_b:
                assert all(left_a == 0 for exp_a, _, left_a in taken if exp_a < exp_b)

    @precondition(lambda self: self.credited)
    @rule(pick=st.integers(0, 10**6), amount=st.integers(1, 300))
    def reverse(self, pick: int, amount: int) -> None:
        lot_ref = self.credited[pick % len(self.credited)]
        iso = today(self.now)
        own = sum(lot.remaining for lot in self.m.lots
                  if lot.ref == lot_ref and lot.expires_on >= iso)
        before = self.balance()
        self.entries += points.reverse(self.m, amount, lot_ref, self.next_ref("refund"),
                                       self.now, RULES)
        assert self.balance() == before - amount
        left = sum(lot.remaining for lot in self.m.lots if lot.ref == lot_ref)
        assert left == max(own - amount, 0), "the refunded order's own lot goes first"

    @rule()
    def expiry_job(self) -> None:
        before = self.balance()
        self.entries += points.expire(self.m, self.now, RULES)
        assert self.balance() == before
        assert all(lot.expires_on >= today(self.now) for lot in self.m.lots)

    @invariant()
    def books_balance(self) -> None:
        iso = today(self.now)
        unexpired = sum(lot.remaining for lot in self.m.lots if lot.expires_on >= iso)
        pending_expiry = sum(lot.remaining for lot in self.m.lots if lot.expires_on < iso)
        assert self.balance() == unexpired - self.m.debt
        # credit +, spend −, expire −, reverse −: never double-counted. Lots past their day
        # that no step has expired yet are the only difference.
        assert self.balance() == ledger_points(self.entries) - pending_expiry

    @invariant()
    def lots_are_sane(self) -> None:
        assert self.m.debt >= 0
        assert all(0 < lot.remaining <= lot.amount for lot in self.m.lots)
        assert self.m.debt == 0 or not self.m.lots, "credits pay the debt before adding lots"
        expiries = [lot.expires_on for lot in self.m.lots]
        assert expiries == sorted(expiries)


TestLedger = LedgerMachine.TestCase
TestLedger.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


@given(paid_fen=st.integers(0, 10**9), multiplier=st.integers(1, 5))
def test_purchase_points_are_floor_of_paid_yuan_times_multiplier(paid_fen, multiplier):
    expected = math.floor(Fraction(paid_fen, 100) * multiplier)
    assert points.points_for_purchase(paid_fen, multiplier, RULES) == expected


# -- examples ----------------------------------------------------------------------------


def test_purchase_points_examples():
    assert points.points_for_purchase(9999, 1, RULES) == 99
    assert points.points_for_purchase(9999, 2, RULES) == 199
    assert points.points_for_purchase(99, 1, RULES) == 0
    assert points.points_for_purchase(-500, 1, RULES) == 0


def test_spending_takes_the_earliest_expiring_lots_first():
    m = new_member()
    now = sh(2025, 6, 1)
    # credited out of expiry order on purpose
    points.credit(m, 100, "late", sh(2025, 3, 1), now, RULES)
    points.credit(m, 100, "early", sh(2025, 1, 10), now, RULES)
    points.credit(m, 100, "middle", sh(2025, 2, 1), now, RULES)
    entries = points.spend(m, 150, "spend:1", now, RULES)
    assert [(lot.ref, lot.remaining) for lot in m.lots] == [("middle", 50), ("late", 100)]
    assert [(e.kind, e.points) for e in entries] == [("spend", -150)]
    assert points.balance(m, local_day(now, SH)) == 150


def test_refused_spend_changes_nothing_even_with_expired_lots_waiting():
    m = new_member()
    points.credit(m, 300, "old", sh(2024, 1, 5), sh(2024, 1, 5), RULES)
    points.credit(m, 100, "new", sh(2025, 3, 1), sh(2025, 3, 1), RULES)
    now = sh(2025, 6, 1)  # "old" expired after 2025-01-05 but no job has run yet
    before = m.to_dict()
    with pytest.raises(Refusal) as exc:
        points.spend(m, 101, "spend:1", now, RULES)
    assert exc.value.code == "insufficient_points"
    assert exc.value.data == {"balance": 100, "needed": 101}
    assert m.to_dict() == before


def test_refund_after_spend_creates_debt_that_later_credits_pay_first():
    m = new_member()
    now = sh(2025, 5, 1)
    points.credit(m, 100, "order:1", now, now, RULES)
    points.spend(m, 100, "spend:1", now, RULES)
    entries = points.reverse(m, 100, "order:1", "refund:1", now, RULES)
    assert [(e.kind, e.points, e.data["debt"]) for e in entries] == [("reverse", -100, 100)]
    assert m.debt == 100
    assert points.balance(m, local_day(now, SH)) == -100

    points.credit(m, 30, "checkin:2025-05-02", now, now, RULES)
    assert (m.debt, m.lots) == (70, [])
    assert points.balance(m, local_day(now, SH)) == -70

    entries = points.credit(m, 100, "order:2", now, now, RULES)
    assert [e.kind for e in entries] == ["credit", "debt_paid"]
    assert entries[1].data == {"paid": 70}
    assert m.debt == 0
    assert [(lot.ref, lot.remaining) for lot in m.lots] == [("order:2", 30)]
    assert points.balance(m, local_day(now, SH)) == 30


def test_reverse_takes_the_refunded_orders_lot_before_earlier_ones():
    m = new_member()
    now = sh(2025, 5, 1)
    points.credit(m, 100, "order:old", sh(2025, 1, 1), now, RULES)
    points.credit(m, 80, "order:new", now, now, RULES)
    points.reverse(m, 50, "order:new", "refund:1", now, RULES)
    assert [(lot.ref, lot.remaining) for lot in m.lots] == [("order:old", 100),
                                                           ("order:new", 30)]


def test_a_lot_is_valid_until_the_end_of_the_day_twelve_months_later():
    m = new_member()
    earned = datetime(2025, 11, 25, 10, 0, tzinfo=SH)
    points.credit(m, 40, "order:1", earned, earned, RULES)
    assert m.lots[0].expires_on == "2026-11-25"

    last_second = datetime(2026, 11, 25, 23, 59, 59, tzinfo=SH)
    assert points.expire(m, last_second, RULES) == []
    assert points.balance(m, local_day(last_second, SH)) == 40
    assert points.spend(m, 40, "spend:1", last_second, RULES)[-1].points == -40


def test_a_lot_is_gone_at_midnight_after_its_last_day():
    m = new_member()
    points.credit(m, 40, "order:1", datetime(2025, 11, 25, 10, tzinfo=SH), sh(2025, 11, 25),
                  RULES)
    midnight = datetime(2026, 11, 26, 0, 0, 0, tzinfo=SH)
    assert points.balance(m, local_day(midnight, SH)) == 0
    entries = points.expire(m, midnight, RULES)
    assert [(e.kind, e.points, e.ref) for e in entries] == [("expire", -40, "order:1")]
    assert m.lots == []
    with pytest.raises(Refusal):
        points.spend(m, 1, "spend:1", midnight, RULES)


def test_a_utc_instant_already_next_day_in_shanghai_counts_as_next_day():
    m = new_member()
    points.credit(m, 40, "order:1", datetime(2025, 11, 25, 10, tzinfo=SH), sh(2025, 11, 25),
                  RULES)
    # 2026-11-25 16:00 UTC is 2026-11-26 00:00 in Shanghai
    utc_now = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    assert len(points.expire(m, utc_now, RULES)) == 1
    m2 = new_member()
    points.credit(m2, 40, "order:1", datetime(2025, 11, 25, 10, tzinfo=SH), sh(2025, 11, 25),
                  RULES)
    assert points.expire(m2, datetime(2026, 11, 25, 15, 59, 59, tzinfo=UTC), RULES) == []


def test_a_lot_earned_late_evening_utc_is_dated_by_the_shanghai_day():
    m = new_member()
    earned = datetime(2025, 3, 31, 17, 0, tzinfo=UTC)  # 2025-04-01 01:00 in Shanghai
    points.credit(m, 10, "order:1", earned, earned, RULES)
    assert (m.lots[0].earned_on, m.lots[0].expires_on) == ("2025-04-01", "2026-04-01")


def test_a_lot_earned_on_29_february_expires_after_28_february():
    m = new_member()
    earned = sh(2024, 2, 29, 15)
    points.credit(m, 60, "order:1", earned, earned, RULES)
    assert m.lots[0].expires_on == "2025-02-28"
    assert points.expire(m, sh(2025, 2, 28, 23, 59, 59), RULES) == []
    assert points.balance(m, local_day(sh(2025, 2, 28, 23, 59), SH)) == 60
    assert [e.points for e in points.expire(m, sh(2025, 3, 1, 0, 0), RULES)] == [-60]


def test_credit_of_an_already_expired_lot_is_recorded_and_expired_at_once():
    m = new_member()
    now = sh(2025, 6, 1)
    entries = points.credit(m, 70, "order:old", sh(2024, 5, 1), now, RULES)
    assert [(e.kind, e.points) for e in entries] == [("credit", 70), ("expire", -70)]
    assert m.lots == []
    assert points.balance(m, local_day(now, SH)) == 0


def test_expiring_within_and_next_expiry():
    m = new_member()
    now = sh(2025, 6, 1)
    points.credit(m, 10, "a", sh(2024, 6, 20), now, RULES)
    points.credit(m, 20, "b", sh(2024, 6, 30), now, RULES)
    points.credit(m, 40, "c", sh(2024, 7, 20), now, RULES)
    assert points.next_expiry(m) == "2025-06-20"
    assert points.expiring_within(m, local_day(now, SH), 30) == (30, "2025-06-20")
    assert points.expiring_within(m, local_day(now, SH), 7) == (0, None)


def test_non_positive_amounts_change_nothing():
    m = new_member()
    now = sh(2025, 6, 1)
    assert points.credit(m, 0, "x", now, now, RULES) == []
    assert points.spend(m, 0, "x", now, RULES) == []
    assert points.reverse(m, -5, "x", "y", now, RULES) == []
    assert (m.lots, m.debt) == ([], 0)
