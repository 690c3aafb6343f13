"""member_day: on the rules' member day (the 15th) and only that day, once a month, each tier
that has a member-day coupon (a coupon template whose key starts with ``memberday`` and whose
``tiers`` list the member's tier) gets it, found through the ``tier`` index."""

from __future__ import annotations

from datetime import datetime

from ..rules.config import CouponTemplate, Rules
from ..rules.models import Member
from ..rules.timeutil import local_day
from .base import SAMPLE_COUPON, Due, Indexes, Job, tagged, unique
from .schedule import Monthly, Schedule

KIND = "member_day"
TITLE = "会员日"


def schedule(rules: Rules) -> Schedule:
    return Monthly(rules.push["member_day"], 9, 0)


def coupon_for(tier: str, rules: Rules) -> CouponTemplate | None:
    for tpl in rules.coupons.values():
        if tpl.key.startswith("memberday") and tier in tpl.tiers:
            return tpl
    return None


async def candidates(reads: Indexes, now: datetime, rules: Rules) -> list[str]:
    if local_day(now, rules.tz).day != rules.push["member_day"]:
        return []
    ids: list[str] = []
    for t in rules.tiers:
        if coupon_for(t.key, rules) is not None:
            ids += await tagged(reads, "tier", t.key)
    return unique(ids)


def due(m: Member, now: datetime, rules: Rules) -> Due | None:
    today = local_day(now, rules.tz)
    tpl = coupon_for(m.tier, rules)
    if today.day != rules.push["member_day"] or tpl is None:
        return None
    return Due(today.strftime("%Y-%m"), {}, coupon=tpl.key, until=today)


JOB = Job(KIND, TITLE, schedule, "month", candidates, due, priority=5, hold_days=0,
          sample={"coupon": SAMPLE_COUPON})
