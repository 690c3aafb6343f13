"""points_expiry: points that expire in exactly 30 days, and again in exactly 7 (the rules'
``push.expiry_warning_days``), from the ``expiry`` index (the member's next lot expiry).

A day the job did not run is made up with ``memberbot jobs run points_expiry --as-of DAY``.
"""

from __future__ import annotations

from datetime import date, datetime

from storage import Store

from ..rules import points
from ..rules.config import Rules
from ..rules.models import Member
from ..rules.timeutil import local_day
from .base import Due, Job, on_days
from .schedule import Daily, Schedule

KIND = "points_expiry"
TITLE = "积分到期提醒"


def schedule(rules: Rules) -> Schedule:
    return Daily(10, 0)


async def candidates(store: Store, now: datetime, rules: Rules) -> list[str]:
    return await on_days(store, "expiry", now, rules, rules.push["expiry_warning_days"])


def due(m: Member, now: datetime, rules: Rules) -> Due | None:
    today = local_day(now, rules.tz)
    nxt = points.next_expiry(m)
    if nxt is None:
        return None
    left = (date.fromisoformat(nxt) - today).days
    if left not in rules.push["expiry_warning_days"]:
        return None
    amount, _ = points.expiring_within(m, today, left)
    amount = min(amount, points.balance(m, today))
    if amount <= 0:
        return None
    return Due(f"{nxt}:{left}", {"points": amount, "date": nxt, "days_left": left})


JOB = Job(KIND, TITLE, schedule, "lot expiry date and days ahead (30, 7)", candidates, due,
          priority=2)
