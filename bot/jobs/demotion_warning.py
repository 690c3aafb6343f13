"""demotion_warning: within 30 and within 7 days before ``grace_until`` (``grace.warning_days``),
with the gap in yuan to keep the tier: once per (grace_until, 30) and (grace_until, 7), the
30-day one superseded once within 7 days, none once grace is over. Found through the
``grace_until`` index."""

from __future__ import annotations

from datetime import datetime

from ..rules import tiers
from ..rules.config import Rules
from ..rules.models import Member
from ..rules.timeutil import from_ts, local_day
from .base import Due, Indexes, Job, stage, within
from .schedule import Daily, Schedule

KIND = "demotion_warning"
TITLE = "降级预警"


def schedule(rules: Rules) -> Schedule:
    return Daily(11, 0)


async def candidates(reads: Indexes, now: datetime, rules: Rules) -> list[str]:
    return await within(reads, "grace_until", now, rules, 0, max(rules.grace_warning_days))


def due(m: Member, now: datetime, rules: Rules) -> Due | None:
    if m.grace_until is None or m.grace_until <= now.timestamp():
        return None
    end = local_day(from_ts(m.grace_until, rules.tz), rules.tz)
    left = (end - local_day(now, rules.tz)).days
    warn = stage(left, rules.grace_warning_days)
    if warn is None:
        return None
    gap = tiers.keep_gap(m, now, rules)
    if gap <= 0:
        return None
    deadline = end.isoformat()
    return Due(f"{deadline}:{warn}", {"gap_fen": gap, "deadline": deadline, "days_left": left},
               until=end)


JOB = Job(KIND, TITLE, schedule, "end of grace and warning (30, 7 days ahead)", candidates,
          due, priority=1, sample={"gap_fen": 5000, "deadline": "2026-01-31", "days_left": 7})
