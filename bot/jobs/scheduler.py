"""The job scheduler inside ``memberbot serve``: APScheduler (AsyncIOScheduler) in the rules'
zone, one trigger per job computed by the pure functions of :mod:`bot.jobs.schedule`.

With several processes on one store only the leader fires: a lock with expiry in the store
(``kv_set only_new`` to take it, ``expect`` to renew it). Each scheduled instant is also claimed
once (``scheduler:fired:<kind>:<instant>``), so a leader change at the wrong moment cannot run
a job twice; and every push is keyed per member, so even a double run would send nothing twice.
A leader that was down at a job's time runs it when it (re)starts, up to ``GRACE`` late.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .. import keys
from ..context import CTX, Context
from .base import Summary
from .outbox import deliver
from .registry import JOBS
from .runner import record_run, run_kind
from .schedule import Daily, Every, Monthly, Schedule, first_at_or_after, missed, prev_run

log = logging.getLogger("memberbot.scheduler")

# A killed leader's lock expires after LEADER_TTL and another process takes it at its next
# heartbeat: the lead moves within LEADER_TTL + HEARTBEAT = 25 s.
LEADER_TTL = 20.0
HEARTBEAT = 5.0
GRACE = timedelta(hours=6)
RUN_LEASE = 15 * 60  # seconds: longer than any job runs
FIRED_TTL = 3 * 86400


class PureTrigger(BaseTrigger):
    """An APScheduler trigger whose every decision is :func:`first_at_or_after`."""

    __slots__ = ("schedule", "tz")

    def __init__(self, schedule: Schedule, tz: ZoneInfo) -> None:
        self.schedule = schedule
        self.tz = tz

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        start = now if previous_fire_time is None else max(
            now, previous_fire_time + timedelta(microseconds=1))
        return first_at_or_after(self.schedule, start, self.tz)

    def __str__(self) -> str:
        return self.schedule.describe()


def calendar_jobs(rules: Any) -> dict[str, Schedule]:
    """The jobs the scheduler fires at calendar times (the outbox runs on its interval)."""
    out: dict[str, Schedule] = {}
    for kind, j in JOBS.items():
        s = j.schedule(rules)
        if isinstance(s, Daily | Monthly):
            out[kind] = s
    return out


class Scheduler:
    """Leader election, once-per-instant firing, catch-up, and the minute's outbox delivery."""

    def __init__(self, env: Context, clock: Callable[[], datetime], *, sid: str | None = None,
                 ttl: float = LEADER_TTL) -> None:
        self.env = env
        self.clock = clock
        self.sid = sid or keys.scheduler_id(os.getpid(), socket.gethostname(),
                                            secrets.token_hex(4))
        self.ttl = ttl
        self.leader = False
        self.jobs = calendar_jobs(env.rules)
        self.aps: AsyncIOScheduler | None = None
        self._lock = asyncio.Lock()  # one job at a time in this process

    @property
    def tz(self) -> ZoneInfo:
        return self.env.rules.tz

    async def heartbeat(self) -> bool:
        """Take or keep the leader lock; returns whether this process leads."""
        records = self.env.members
        if self.leader:
            self.leader = await records.cache(keys.SCHEDULER_LEADER, self.sid, ttl=self.ttl,
                                              expect=self.sid)
        if not self.leader:
            self.leader = await records.cache(keys.SCHEDULER_LEADER, self.sid, ttl=self.ttl,
                                              only_new=True)
            if self.leader:
                log.info("scheduler %s is the leader", self.sid)
        return self.leader

    async def resign(self) -> None:
        if self.leader:
            await self.env.members.forget(keys.SCHEDULER_LEADER, expect=self.sid)
            self.leader = False

    async def fire(self, kind: str, scheduled: datetime) -> Summary | None:
        """Run ``kind`` for its instant ``scheduled`` — if this process leads and nobody has
        run that instant yet."""
        if not self.leader:
            return None
        claim = keys.scheduler_fired(kind, scheduled.astimezone(self.tz).isoformat())
        # a short lease while running, "done" for days after: a run that fails or dies is
        # made up by the next tick's catch-up (every push is keyed, so a rerun sends the rest)
        if not await self.env.members.cache(claim, self.sid, ttl=RUN_LEASE, only_new=True):
            return None
        try:
            async with self._lock:
                summary = await run_kind(self.env, kind, self.clock())
        except BaseException:
            await self.env.members.forget(claim, expect=self.sid)
            raise
        await self.env.members.cache(claim, "done", ttl=FIRED_TTL)
        log.info("job %s for %s: %s", kind, scheduled.isoformat(), summary.as_dict())
        return summary

    async def tick(self) -> list[Summary]:
        """Heartbeat, then run whatever is due and not yet run (catch-up after a restart or a
        change of leader)."""
        out: list[Summary] = []
        if not await self.heartbeat():
            return out
        now = self.clock()
        for kind, s in self.jobs.items():
            at = missed(s, now, self.tz, GRACE)
            if at is not None and (res := await self.fire(kind, at)) is not None:
                out.append(res)
        return out

    async def deliver(self) -> Summary | None:
        if not self.leader:
            return None
        async with self._lock:
            now = self.clock()
            t0 = time.perf_counter()
            summary = await deliver(self.env, now)
            summary.seconds = time.perf_counter() - t0
            await record_run(self.env, summary)
            return summary

    async def _fire_now(self, kind: str) -> None:
        try:
            if await self.heartbeat():
                await self.fire(kind, prev_run(self.jobs[kind], self.clock(), self.tz))
        except asyncio.CancelledError:
            pass  # shutting down: the leader that runs next makes the job up
        except Exception:
            log.exception("job %s failed", kind)

    async def _safe(self, fn: Callable) -> None:
        try:
            await fn()
        except asyncio.CancelledError:
            pass  # the server is shutting down (or could not bind its port)
        except Exception:
            log.exception("scheduler %s failed", getattr(fn, "__name__", fn))

    def start(self) -> AsyncIOScheduler:
        # APScheduler logs every run at INFO: the 10 s heartbeat would flood the log
        logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
        aps = AsyncIOScheduler(timezone=self.tz)
        for kind, s in self.jobs.items():
            aps.add_job(self._fire_now, PureTrigger(s, self.tz), args=[kind], id=kind,
                        name=kind, coalesce=True, max_instances=1, misfire_grace_time=300)
        aps.add_job(self._safe, IntervalTrigger(seconds=HEARTBEAT, timezone=self.tz),
                    args=[self.tick], id="leader", name="leader", coalesce=True,
                    max_instances=1,
                    next_run_time=datetime.now(self.tz))
        every = JOBS["outbox"].schedule(self.env.rules)
        aps.add_job(self._safe, PureTrigger(every if isinstance(every, Every) else Every(60),
                                            self.tz), args=[self.deliver], id="outbox",
                    name="outbox", coalesce=True, max_instances=1)
        aps.start()
        self.aps = aps
        return aps

    async def stop(self) -> None:
        if self.aps is not None:
            self.aps.shutdown(wait=False)
            self.aps = None
        await self.resign()


class Slot:
    """Where the running scheduler of an app is found (tests, /healthz)."""

    scheduler: Scheduler | None = None


SCHEDULER = web.AppKey("scheduler", Slot)


def setup(app: web.Application) -> None:
    """Run the scheduler for the life of ``app`` (``memberbot serve`` unless --no-scheduler),
    after the context's resources are open."""
    slot = app[SCHEDULER] = Slot()

    async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
        ctx = app[CTX]
        sched = slot.scheduler = Scheduler(ctx, ctx.now)
        sched.start()
        try:
            yield
        finally:
            await sched.stop()
            slot.scheduler = None

    app.cleanup_ctx.append(scheduler_ctx)
