"""coupon_expiry: an issued coupon whose window ends within 3 days gets one reminder, once per
coupon; every coupon of the member counts, not only the earliest (one a run, soonest first:
the next run reminds of the next). Found through the ``coupon_expiry`` index (the member's
earliest coupon end: a member with any coupon ending in the window has it there or before)."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..rules import coupons
from ..rules.config import Rules
from ..rules.models import Member
from ..rules.timeutil import day_num, from_ts, local_day
from .base import SAMPLE_COUPON, Due, Indexes, Job, first_open, ranged
from .schedule import Daily, Schedule

KIND = "coupon_expiry"
TITLE = "优惠券到期提醒"
DAYS = 3


def schedule(rules: Rules) -> Schedule:
    return Daily(10, 0)


async def candidates(reads: Indexes, now: datetime, rules: Rules) -> list[str]:
    last = local_day(now, rules.tz) + timedelta(days=DAYS)
    return await ranged(reads, "coupon_expiry", 0, day_num(last))


def due(m: Member, now: datetime, rules: Rules) -> Due | None:
    today = local_day(now, rules.tz)
    dues = []
    for c in coupons.valid(m, now):  # issued and not over, soonest end first
        end = local_day(from_ts(c.valid_until, rules.tz), rules.tz)
        if (end - today).days <= DAYS:
            tpl = rules.coupons.get(c.template)
            dues.append(Due(c.code, {"coupon_name": tpl.name if tpl else c.template,
                                     "label": tpl.label() if tpl else "", "code": c.code,
                                     "valid_until": end.isoformat(),
                                     "days_left": (end - today).days}, until=end))
    return first_open(KIND, m, dues)


JOB = Job(KIND, TITLE, schedule, "coupon", candidates, due, priority=7,
          sample={"coupon_name": SAMPLE_COUPON["name"], "label": SAMPLE_COUPON["label"],
                  "code": SAMPLE_COUPON["code"], "valid_until": "2026-01-31", "days_left": 3})
