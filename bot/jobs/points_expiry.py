"""points_expiry: points that expire within 30 days get a notice, and again within 7 (the
rules' ``push.expiry_warning_days``): once per (lot expiry date, 30) and once per (date, 7).
A date first seen 20 days ahead still gets its 30-day notice; one 5 days ahead gets the
7-day notice only (the 30-day moment has passed), and nothing once the points expired.

Found through the ``expiry`` index (the member's next lot expiry): a member with any lot in
the window has its next expiry in it or before it; ``due`` then looks at every lot.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta

from ..rules import points
from ..rules.config import Rules
from ..rules.models import Member
from ..rules.timeutil import day_num, local_day
from .base import Due, Indexes, Job, first_open, ranged, stage
from .schedule import Daily, Schedule

KIND = "points_expiry"
TITLE = "积分到期提醒"


def schedule(rules: Rules) -> Schedule:
    return Daily(10, 0)


def horizon(rules: Rules) -> int:
    return max(rules.push["expiry_warning_days"])


async def candidates(reads: Indexes, now: datetime, rules: Rules) -> list[str]:
    last = local_day(now, rules.tz) + timedelta(days=horizon(rules))
    return await ranged(reads, "expiry", 0, day_num(last))


def _dues(m: Member, today: date, rules: Rules) -> Iterator[Due]:
    balance = points.balance(m, today, rules)
    for day in sorted({lot.expires_on for lot in points.lots_as_of(m, today, rules)
                       if lot.remaining}):
        left = (date.fromisoformat(day) - today).days
        warn = stage(left, rules.push["expiry_warning_days"])
        if warn is None:
            continue
        amount, _ = points.expiring_within(m, today, left, rules)
        amount = min(amount, balance)
        if amount > 0:
            yield Due(f"{day}:{warn}", {"points": amount, "date": day, "days_left": left},
                      until=date.fromisoformat(day))


def due(m: Member, now: datetime, rules: Rules) -> Due | None:
    return first_open(KIND, m, _dues(m, local_day(now, rules.tz), rules))


JOB = Job(KIND, TITLE, schedule, "lot expiry date and warning (30, 7 days ahead)", candidates,
          due, priority=2, sample={"points": 500, "date": "2026-01-31", "days_left": 7})
