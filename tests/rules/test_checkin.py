"""Daily check-in (PRODUCT.md 2.3): once per Shanghai day, a 7-day cycle, 断签重置."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bot.rules import checkin, points
from bot.rules.timeutil import local_day

from .support import RULES, SH, ledger_points, new_member, sh


def check_in_days(m, first, days):
    return [checkin.check_in(m, first + timedelta(days=i), RULES)[0] for i in range(days)]


def test_a_full_week_earns_5_to_10_plus_20_on_day_7():
    m = new_member()
    results = check_in_days(m, sh(2025, 3, 3, 8), 7)
    assert [r["streak"] for r in results] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["points"] for r in results] == [5, 6, 7, 8, 9, 10, 10]
    assert [r["bonus"] for r in results] == [0, 0, 0, 0, 0, 0, 20]
    assert sum(r["points"] + r["bonus"] for r in results) == 75
    assert results[-1]["balance"] == 75
    assert m.checkin_total == 7


def test_day_8_starts_a_new_cycle_at_5():
    m = new_member()
    results = check_in_days(m, sh(2025, 3, 3, 8), 9)
    assert [(r["streak"], r["points"], r["bonus"]) for r in results[7:]] == [(1, 5, 0),
                                                                            (2, 6, 0)]
    assert results[-1]["balance"] == 75 + 5 + 6


def test_a_missed_day_resets_the_streak_to_day_1():
    m = new_member()
    check_in_days(m, sh(2025, 3, 3, 8), 4)  # days 1..4, last on 03-06
    result, _ = checkin.check_in(m, sh(2025, 3, 8, 8), RULES)  # 03-07 missed
    assert (result["streak"], result["points"], result["bonus"]) == (1, 5, 0)
    result, _ = checkin.check_in(m, sh(2025, 3, 9, 8), RULES)
    assert (result["streak"], result["points"]) == (2, 6)


def test_a_second_check_in_the_same_day_changes_nothing():
    m = new_member()
    first, entries = checkin.check_in(m, sh(2025, 3, 3, 0, 0, 1), RULES)
    assert first["already"] is False
    assert ledger_points(entries) == 5
    before = m.to_dict()
    again, entries = checkin.check_in(m, sh(2025, 3, 3, 23, 59, 59), RULES)
    assert again["already"] is True
    assert (again["points"], again["bonus"], again["streak"], again["balance"]) == (0, 0, 1, 5)
    assert entries == []
    assert m.to_dict() == before


def test_streak_continues_across_midnight_in_shanghai():
    m = new_member()
    checkin.check_in(m, sh(2025, 3, 3, 23, 59), RULES)
    result, _ = checkin.check_in(m, sh(2025, 3, 4, 0, 1), RULES)
    assert (result["already"], result["streak"], result["points"]) == (False, 2, 6)
    assert result["day"] == "2025-03-04"


def test_utc_1630_is_already_the_next_shanghai_day():
    m = new_member()
    checkin.check_in(m, datetime(2025, 3, 3, 8, 0, tzinfo=UTC), RULES)  # 16:00 in Shanghai
    late = datetime(2025, 3, 3, 16, 30, tzinfo=UTC)  # 2025-03-04 00:30 in Shanghai
    result, _ = checkin.check_in(m, late, RULES)
    assert (result["already"], result["streak"], result["day"]) == (False, 2, "2025-03-04")
    same_utc_day_earlier = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)  # 03-03 23:00 Shanghai
    m2 = new_member()
    checkin.check_in(m2, datetime(2025, 3, 3, 1, 0, tzinfo=UTC), RULES)
    assert checkin.check_in(m2, same_utc_day_earlier, RULES)[0]["already"] is True


def test_check_in_credits_a_lot_with_a_ledger_entry_and_marks_activity():
    m = new_member()
    now = sh(2025, 3, 3, 9)
    result, entries = checkin.check_in(m, now, RULES)
    assert [(e.kind, e.points, e.ref) for e in entries] == [
        ("checkin", 0, "checkin:2025-03-03"), ("credit", 5, "checkin:2025-03-03")]
    assert [(lot.earned_on, lot.expires_on, lot.amount) for lot in m.lots] == [
        ("2025-03-03", "2026-03-03", 5)]
    assert m.last_activity == int(now.timestamp())
    assert points.balance(m, local_day(now, SH)) == result["balance"] == 5


def test_streak_points_formula():
    assert [checkin.streak_points(k, RULES) for k in range(1, 8)] == [
        (5, 0), (6, 0), (7, 0), (8, 0), (9, 0), (10, 0), (10, 20)]


# -- issue 9 defect 8: check-ins processed out of order ------------------------------------------

def test_a_late_check_in_processed_after_the_next_days_keeps_the_streak():
    m = new_member()
    checkin.check_in(m, sh(2025, 3, 3, 9), RULES)
    nxt, _ = checkin.check_in(m, sh(2025, 3, 5, 0, 0, 1), RULES)  # 03-04 not in yet
    assert nxt["streak"] == 1
    late, _ = checkin.check_in(m, sh(2025, 3, 4, 23, 59, 58), RULES)  # the retry, processed now
    assert (late["already"], late["day"], late["streak"], late["points"]) == (
        False, "2025-03-04", 2, 6)
    assert (m.checkin_last, m.checkin_streak) == ("2025-03-05", 3)
    after, _ = checkin.check_in(m, sh(2025, 3, 6, 9), RULES)
    assert after["streak"] == 4
    again, entries = checkin.check_in(m, sh(2025, 3, 4, 12), RULES)
    assert again["already"] and entries == []


def streak_of_set(days: set[date], cycle: int) -> tuple[str, int]:
    """The reference: the newest day and its streak day, from the set alone."""
    last = max(days)
    n = 1
    while last - timedelta(days=n) in days:
        n += 1
    return last.isoformat(), (n - 1) % cycle + 1


@given(offsets=st.sets(st.integers(0, 40), min_size=1, max_size=25), data=st.data())
def test_the_streak_is_a_function_of_the_set_of_check_in_days(offsets, data):
    first = date(2025, 3, 1)
    days = [first + timedelta(days=o) for o in offsets]
    order = data.draw(st.permutations(days))
    m = new_member()
    for d in order:
        checkin.check_in(m, sh(d.year, d.month, d.day, 23, 59, 58), RULES)
    assert (m.checkin_last, m.checkin_streak) == streak_of_set(set(days),
                                                               RULES.checkin["cycle_days"])
    assert m.checkin_total == len(days)


def test_a_member_stored_before_runs_were_kept_continues_the_streak():
    m = new_member(checkin_last="2025-03-04", checkin_streak=3, checkin_total=3)
    result, _ = checkin.check_in(m, sh(2025, 3, 5, 9), RULES)
    assert result["streak"] == 4
    assert checkin.check_in(m, sh(2025, 3, 3, 9), RULES)[0]["already"] is True
