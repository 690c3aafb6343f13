"""birthday: on the member's birthday (29 February is celebrated on the 28th in other years),
from the ``birthday`` index (MMDD); issues the birthday coupon once a year."""

from __future__ import annotations

import calendar
from datetime import date, datetime

from storage import Store

from ..rules.config import Rules
from ..rules.models import Member
from ..rules.timeutil import local_day
from .base import Due, Job, ranged
from .schedule import Daily, Schedule

KIND = "birthday"
TITLE = "生日祝福"
COUPON = "birthday"


def schedule(rules: Rules) -> Schedule:
    return Daily(9, 30)


def celebrated_on(month: int, day: int, year: int) -> date:
    if (month, day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return date(year, month, day)


async def candidates(store: Store, now: datetime, rules: Rules) -> list[str]:
    today = local_day(now, rules.tz)
    mmdd = today.month * 100 + today.day
    hi = 229 if mmdd == 228 and not calendar.isleap(today.year) else mmdd
    return await ranged(store, "birthday", mmdd, hi)


def due(m: Member, now: datetime, rules: Rules) -> Due | None:
    if not m.birthday:
        return None
    today = local_day(now, rules.tz)
    month, day = int(m.birthday[5:7]), int(m.birthday[8:10])
    if celebrated_on(month, day, today.year) != today:
        return None
    return Due(str(today.year), {}, coupon=COUPON)


JOB = Job(KIND, TITLE, schedule, "year", candidates, due, COUPON, priority=4)
