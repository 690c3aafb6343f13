"""housekeeping (nightly): members whose lots expired, whose coupons ran out, whose grace
ended, whose pending purchase points mature today, whose trailing-12-month tier needs a look,
or whose RFM recency just changed get ``Members.refresh`` — expiry settled, pending points
matured, demotion applied, unused coupon stock returned (回流), RFM rescored — so the
indexes the day's jobs read are current. Found through the indexes only."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from ..context import Context
from ..rules.config import Rules
from ..rules.timeutil import day_num, local_day
from .base import Job, Progress, Summary, ranged, unique
from .schedule import Daily, Schedule

KIND = "housekeeping"
TITLE = "夜间整理"
CHUNK = 256


def schedule(rules: Rules) -> Schedule:
    return Daily(3, 0)


async def candidates(env: Context, now: datetime) -> list[str]:
    today = local_day(now, env.rules.tz)
    t, yesterday = day_num(today), day_num(today - timedelta(days=1))
    recency = day_num(today - timedelta(days=env.rules.rfm["recency_days"] + 1))
    ids: list[str] = []
    for index, hi in (("expiry", yesterday), ("coupon_expiry", t), ("grace_until", t),
                      ("tier_review", t), ("pending", t)):
        ids += await ranged(env.members, index, 0, hi)
    ids += await ranged(env.members, "last_purchase", recency, recency)
    return unique(ids)


async def run(env: Context, now: datetime, *, dry_run: bool, summary: Summary,
              progress: Progress) -> None:
    ids = await candidates(env, now)
    summary.report = "cleaning"
    summary.candidates = summary.due = len(ids)
    progress.start(len(ids))
    if dry_run:
        progress.advance(len(ids))
        return
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        results = await asyncio.gather(*(env.members.refresh(mid, now) for mid in chunk),
                                       return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                if not isinstance(r, Exception):
                    raise r
                summary.failed[type(r).__name__] += 1
            else:
                summary.refreshed += 1
                summary.cleaned.update(r.get("cleaned") or {})
        progress.advance(len(chunk))


JOB = Job(KIND, TITLE, schedule, run=run)
