"""tier_upgrade: congratulations at once. ``Members`` enqueues the row in the commit of the
upgrade (period ``<tier>:<day>``); the outbox delivers it within a minute, quiet hours
permitting. Not under the daily cap: it answers something the member just did."""

from __future__ import annotations

from datetime import datetime

from ..context import Context
from ..rules.config import Rules
from .base import Job, Progress, Summary
from .outbox import deliver, preview
from .schedule import Every, Schedule

KIND = "tier_upgrade"
TITLE = "升级祝贺"


def schedule(rules: Rules) -> Schedule:
    return Every(60)


async def run(env: Context, now: datetime, *, dry_run: bool, summary: Summary,
              progress: Progress) -> None:
    if dry_run:
        await preview(env, now, [KIND], summary)
    else:
        await deliver(env, now, kinds=[KIND], summary=summary)


JOB = Job(KIND, TITLE, schedule, "new tier and day", run=run, sends=True)
