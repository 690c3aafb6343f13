"""Daily check-in (签到): one per calendar day, a 7-day cycle, 断签重置."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from .config import Rules
from .models import Entry, Member
from .points import balance, credit
from .timeutil import local_day, ts


def streak_points(day: int, rules: Rules) -> tuple[int, int]:
    """Points and bonus for streak day ``day`` (1-based) of the cycle."""
    c = rules.checkin
    pts = min(c["base"] + c["step"] * (day - 1), c["cap"])
    bonus = c["cycle_bonus"] if day == c["cycle_days"] else 0
    return pts, bonus


# Check-in runs older than this (counted from the newest day) are dropped: a check-in
# arrives late by seconds or hours (a retry), never by months.
KEEP_DAYS = 62


def runs_of(m: Member) -> list[tuple[date, date]]:
    """The member's recent runs of consecutive check-in days, oldest first."""
    if m.checkin_runs:
        return [(date.fromisoformat(a), date.fromisoformat(b)) for a, b in m.checkin_runs]
    if m.checkin_last and m.checkin_streak:  # stored before runs were kept: what it implies
        last = date.fromisoformat(m.checkin_last)
        return [(last - timedelta(days=m.checkin_streak - 1), last)]
    return []


def with_day(runs: list[tuple[date, date]], d: date) -> list[tuple[date, date]]:
    """``runs`` with the day ``d`` added: adjacent runs merge, old ones are dropped."""
    merged: list[tuple[date, date]] = []
    for a, b in sorted([*runs, (d, d)]):
        if merged and a <= merged[-1][1] + timedelta(days=1):
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    newest = merged[-1][1]
    return [(a, b) for a, b in merged if (newest - b).days <= KEEP_DAYS]


def streak_on(runs: list[tuple[date, date]], d: date, rules: Rules) -> int:
    """Streak day of ``d`` (1-based, in cycles of ``cycle_days``): a function of the set of
    check-in days only, whatever order they were processed in."""
    for a, b in runs:
        if a <= d <= b:
            return (d - a).days % rules.checkin["cycle_days"] + 1
    return 0


def check_in(m: Member, now: datetime, rules: Rules) -> tuple[dict, list[Entry]]:
    """Check ``m`` in for the local day of ``now``. A second try that day changes nothing.

    A check-in processed late (a retry from 23:59:58 after the next day's) counts for its own
    day: the streak of every day follows from the set of days checked in."""
    today = local_day(now, rules.tz)
    iso = today.isoformat()
    runs = runs_of(m)
    if m.checkin_last == iso or streak_on(runs, today, rules):
        return ({"already": True, "streak": streak_on(runs, today, rules) or m.checkin_streak,
                 "points": 0, "bonus": 0, "balance": balance(m, today), "day": iso}, [])
    cycle = rules.checkin["cycle_days"]
    runs = with_day(runs, today)
    day = streak_on(runs, today, rules)
    newest = runs[-1][1]
    m.checkin_runs = [[a.isoformat(), b.isoformat()] for a, b in runs]
    m.checkin_last, m.checkin_streak = newest.isoformat(), streak_on(runs, newest, rules)
    pts, bonus = streak_points(day, rules)
    m.checkin_total += 1
    m.last_activity = max(m.last_activity, ts(now))
    entries = [Entry("checkin", ts(now), points=0, ref=f"checkin:{iso}",
                     data={"day": iso, "streak": day})]
    entries += credit(m, pts + bonus, f"checkin:{iso}", now, now, rules, reason="checkin")
    result = {"already": False, "streak": day, "points": pts, "bonus": bonus,
              "balance": balance(m, today), "day": iso, "cycle": cycle}
    return result, entries
