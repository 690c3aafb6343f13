"""dormant: no interaction and no purchase for 30 days (``push.dormant_days``): once per
dormancy start (the last activity's day), due from that day on until the wake-up moment
(``push.wakeup_days``), so a day without a run loses nothing. Found through the
``last_activity`` index (the later of the last interaction and the last purchase)."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..rules.config import Rules
from ..rules.models import Member
from ..rules.timeutil import from_ts, local_day
from .base import Due, Indexes, Job, within
from .schedule import Daily, Schedule

KIND = "dormant"
TITLE = "沉睡提醒"


def schedule(rules: Rules) -> Schedule:
    return Daily(10, 30)


def window(rules: Rules) -> tuple[int, int]:
    """Days since the last activity during which the notice is due."""
    days = rules.push["dormant_days"]
    return days, max(days, rules.push["wakeup_days"] - 1)


async def candidates(reads: Indexes, now: datetime, rules: Rules) -> list[str]:
    first, last = window(rules)
    return await within(reads, "last_activity", now, rules, -last, -first)


def due(m: Member, now: datetime, rules: Rules) -> Due | None:
    last = max(m.last_activity, m.last_purchase or 0)
    if not last:
        return None
    day = local_day(from_ts(last, rules.tz), rules.tz)
    first, final = window(rules)
    if not first <= (local_day(now, rules.tz) - day).days <= final:
        return None
    return Due(day.isoformat(), {"days": first, "since": day.isoformat()},
               until=day + timedelta(days=final))


JOB = Job(KIND, TITLE, schedule, "start of dormancy (the last activity)", candidates, due,
          priority=6, sample={"days": 60, "since": "2025-11-01"})
