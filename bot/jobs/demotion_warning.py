"""demotion_warning: 30 and 7 days before ``grace_until`` (``grace.warning_days``), with the
gap in yuan to keep the tier, from the ``grace_until`` index."""

from __future__ import annotations

from datetime import datetime

from storage import Store

from ..rules import tiers
from ..rules.config import Rules
from ..rules.models import Member
from ..rules.timeutil import from_ts, local_day
from .base import Due, Job, on_days
from .schedule import Daily, Schedule

KIND = "demotion_warning"
TITLE = "降级预警"


def schedule(rules: Rules) -> Schedule:
    return Daily(11, 0)


async def candidates(store: Store, now: datetime, rules: Rules) -> list[str]:
    return await on_days(store, "grace_until", now, rules, rules.grace_warning_days)


def due(m: Member, now: datetime, rules: Rules) -> Due | None:
    left = tiers.warning_due(m, local_day(now, rules.tz), rules)
    if left is None:
        return None
    gap = tiers.keep_gap(m, now, rules)
    if gap <= 0:
        return None
    deadline = local_day(from_ts(m.grace_until, rules.tz), rules.tz).isoformat()
    return Due(f"{deadline}:{left}", {"gap_fen": gap, "deadline": deadline, "days_left": left})


JOB = Job(KIND, TITLE, schedule, "end of grace and days ahead (30, 7)", candidates, due,
          priority=1)
