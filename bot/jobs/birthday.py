"""birthday: once a year, on the member's birthday or, when that day's run was missed, the
next day (29 February is celebrated on the 28th in other years), from the ``birthday``
index (MMDD); issues the birthday coupon once a year."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

from ..rules.config import Rules
from ..rules.models import Member
from ..rules.timeutil import local_day
from .base import SAMPLE_COUPON, Due, Indexes, Job, ranged, unique
from .schedule import Daily, Schedule

KIND = "birthday"
TITLE = "生日祝福"
COUPON = "birthday"
LATE_DAYS = 1  # a birthday whose run was missed is still wished the next day, not later


def schedule(rules: Rules) -> Schedule:
    return Daily(9, 30)


def celebrated_on(month: int, day: int, year: int) -> date:
    if (month, day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return date(year, month, day)


def _mmdd(day: date) -> tuple[int, int]:
    """The birthday index values celebrated on ``day`` (28 Feb also stands for 29 Feb)."""
    mmdd = day.month * 100 + day.day
    return mmdd, (229 if mmdd == 228 and not calendar.isleap(day.year) else mmdd)


async def candidates(reads: Indexes, now: datetime, rules: Rules) -> list[str]:
    today = local_day(now, rules.tz)
    ids: list[str] = []
    for late in range(LATE_DAYS + 1):
        ids += await ranged(reads, "birthday", *_mmdd(today - timedelta(days=late)))
    return unique(ids)


def due(m: Member, now: datetime, rules: Rules) -> Due | None:
    if not m.birthday:
        return None
    today = local_day(now, rules.tz)
    month, day = int(m.birthday[5:7]), int(m.birthday[8:10])
    for late in range(LATE_DAYS + 1):
        on = today - timedelta(days=late)
        if celebrated_on(month, day, on.year) == on:
            return Due(str(on.year), {}, coupon=COUPON,
                       until=on + timedelta(days=LATE_DAYS))
    return None


JOB = Job(KIND, TITLE, schedule, "year (on the day, or the next day)", candidates, due,
          COUPON, priority=4, sample={"coupon": SAMPLE_COUPON})
