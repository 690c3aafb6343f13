"""wakeup: no purchase for exactly 90 days (``push.wakeup_days``) — since the last purchase
(``last_purchase`` index), or since joining for a member who never bought (``joined``);
issues the wake-up coupon and says so."""

from __future__ import annotations

from datetime import datetime

from storage import Store

from ..rules.config import Rules
from ..rules.models import Member
from ..rules.timeutil import from_ts, local_day
from .base import Due, Job, on_days, unique
from .schedule import Daily, Schedule

KIND = "wakeup"
TITLE = "唤醒券"
COUPON = "wakeup"


def schedule(rules: Rules) -> Schedule:
    return Daily(10, 30)


async def candidates(store: Store, now: datetime, rules: Rules) -> list[str]:
    ago = [-rules.push["wakeup_days"]]
    return unique(await on_days(store, "last_purchase", now, rules, ago)
                  + await on_days(store, "joined", now, rules, ago))


def due(m: Member, now: datetime, rules: Rules) -> Due | None:
    since = m.last_purchase or m.joined_at
    if not since:
        return None
    day = local_day(from_ts(since, rules.tz), rules.tz)
    days = rules.push["wakeup_days"]
    if (local_day(now, rules.tz) - day).days != days:
        return None
    period = day.isoformat() if m.last_purchase else f"joined:{day.isoformat()}"
    return Due(period, {"days": days, "since": day.isoformat(),
                        "bought": m.last_purchase is not None}, coupon=COUPON)


JOB = Job(KIND, TITLE, schedule, "last purchase (or joining)", candidates, due, COUPON,
          priority=3)
