"""dormant: no interaction and no purchase for exactly 30 days (``push.dormant_days``), from
the ``last_activity`` index (the later of the last interaction and the last purchase)."""

from __future__ import annotations

from datetime import datetime

from storage import Store

from ..rules.config import Rules
from ..rules.models import Member
from ..rules.timeutil import from_ts, local_day
from .base import Due, Job, on_days
from .schedule import Daily, Schedule

KIND = "dormant"
TITLE = "沉睡提醒"


def schedule(rules: Rules) -> Schedule:
    return Daily(10, 30)


async def candidates(store: Store, now: datetime, rules: Rules) -> list[str]:
    return await on_days(store, "last_activity", now, rules, [-rules.push["dormant_days"]])


def due(m: Member, now: datetime, rules: Rules) -> Due | None:
    last = max(m.last_activity, m.last_purchase or 0)
    if not last:
        return None
    day = local_day(from_ts(last, rules.tz), rules.tz)
    days = rules.push["dormant_days"]
    if (local_day(now, rules.tz) - day).days != days:
        return None
    return Due(day.isoformat(), {"days": days, "since": day.isoformat()})


JOB = Job(KIND, TITLE, schedule, "start of dormancy (the last activity)", candidates, due,
          priority=6)
