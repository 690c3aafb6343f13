"""wakeup: no purchase for 90 days (``push.wakeup_days``) — since the last purchase
(``last_purchase`` index), or since joining for a member who never bought (``joined``):
once per last purchase, due from that day on for as long again (``CATCH_UP`` days), so a day
without a run loses nothing; issues the wake-up coupon and says so."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..rules.config import Rules
from ..rules.models import Member
from ..rules.timeutil import from_ts, local_day
from .base import SAMPLE_COUPON, Due, Indexes, Job, unique, within
from .schedule import Daily, Schedule

KIND = "wakeup"
TITLE = "唤醒券"
COUPON = "wakeup"
CATCH_UP = 90  # days after the wake-up moment a missed notice is still sent


def schedule(rules: Rules) -> Schedule:
    return Daily(10, 30)


def window(rules: Rules) -> tuple[int, int]:
    days = rules.push["wakeup_days"]
    return days, days + CATCH_UP - 1


async def candidates(reads: Indexes, now: datetime, rules: Rules) -> list[str]:
    first, last = window(rules)
    return unique(await within(reads, "last_purchase", now, rules, -last, -first)
                  + await within(reads, "joined", now, rules, -last, -first))


def due(m: Member, now: datetime, rules: Rules) -> Due | None:
    since = m.last_purchase or m.joined_at
    if not since:
        return None
    day = local_day(from_ts(since, rules.tz), rules.tz)
    first, last = window(rules)
    if not first <= (local_day(now, rules.tz) - day).days <= last:
        return None
    period = day.isoformat() if m.last_purchase else f"joined:{day.isoformat()}"
    return Due(period, {"days": first, "since": day.isoformat(),
                        "bought": m.last_purchase is not None}, coupon=COUPON,
               until=day + timedelta(days=last))


JOB = Job(KIND, TITLE, schedule, "last purchase (or joining)", candidates, due, COUPON,
          priority=3, sample={"days": 90, "since": "2025-09-01", "bought": True,
                              "coupon": SAMPLE_COUPON})
