"""Scheduling decisions as pure functions of datetimes; one leader and one run per instant
across schedulers sharing a store; the scheduler inside the app."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from bot.jobs.registry import JOBS, job
from bot.jobs.schedule import (
    Daily,
    Every,
    Monthly,
    OnEvent,
    in_quiet_hours,
    missed,
    next_run,
    prev_run,
    quiet_until,
    run_at,
)
from bot.jobs.scheduler import SCHEDULER, PureTrigger, Scheduler, calendar_jobs, setup
from bot.web import CTX, create_app
from storage import StoreUnavailable, open_store

from .conftest import KEY, wecom_settings
from .support import member, sh

SH = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize("after, expected", [
    (sh(2026, 11, 25, 9, 59), sh(2026, 11, 25, 10)),
    (sh(2026, 11, 25, 10), sh(2026, 11, 26, 10)),  # strictly after
    # 16:30 UTC on 30 Nov is 00:30 on 1 Dec in Shanghai: the next 10:00 is that morning
    (datetime(2026, 11, 30, 16, 30, tzinfo=UTC), sh(2026, 12, 1, 10)),
    (datetime(2026, 11, 30, 1, 59, tzinfo=UTC), sh(2026, 11, 30, 10)),
    (sh(2026, 12, 31, 23, 59), sh(2027, 1, 1, 10)),
    (sh(2028, 2, 28, 10, 1), sh(2028, 2, 29, 10)),
])
def test_daily_next_run(after, expected):
    assert next_run(Daily(10), after, SH) == expected


@pytest.mark.parametrize("after, expected", [
    (sh(2026, 11, 15, 8, 59), sh(2026, 11, 15, 9)),
    (sh(2026, 11, 15, 9), sh(2026, 12, 15, 9)),
    (sh(2026, 1, 31, 12), sh(2026, 2, 15, 9)),  # from a month end
    (sh(2026, 12, 20), sh(2027, 1, 15, 9)),  # across the year
    (datetime(2026, 11, 15, 0, 59, tzinfo=UTC), sh(2026, 11, 15, 9)),  # 08:59 Shanghai
    (datetime(2026, 11, 15, 1, 0, tzinfo=UTC), sh(2026, 12, 15, 9)),  # 09:00 Shanghai
])
def test_monthly_next_run(after, expected):
    assert next_run(Monthly(15, 9), after, SH) == expected


def test_prev_run_and_missed_runs():
    assert prev_run(Daily(10), sh(2026, 11, 25, 10), SH) == sh(2026, 11, 25, 10)
    assert prev_run(Daily(10), sh(2026, 11, 25, 9, 59), SH) == sh(2026, 11, 24, 10)
    assert prev_run(Monthly(15, 9), sh(2026, 3, 1), SH) == sh(2026, 2, 15, 9)
    assert prev_run(Monthly(15, 9), sh(2027, 1, 3), SH) == sh(2026, 12, 15, 9)
    grace = timedelta(hours=6)
    assert missed(Daily(10), sh(2026, 11, 25, 15, 59), SH, grace) == sh(2026, 11, 25, 10)
    assert missed(Daily(10), sh(2026, 11, 25, 16, 1), SH, grace) is None
    assert missed(Daily(10), sh(2026, 11, 25, 9), SH, grace) is None  # yesterday's is old
    assert missed(Every(60), sh(2026, 11, 25, 9), SH, grace) is None
    assert next_run(OnEvent("x"), sh(2026, 1, 1), SH) is None


def test_every_is_aligned_to_the_minute():
    t = datetime(2026, 11, 25, 2, 0, 30, tzinfo=UTC)
    assert next_run(Every(60), t, SH) == datetime(2026, 11, 25, 2, 1, tzinfo=UTC)
    assert prev_run(Every(60), t, SH) == datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize("s, cron", [(Daily(10, 30), dict(hour=10, minute=30)),
                                     (Monthly(15, 9), dict(day=15, hour=9, minute=0))])
@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York"])
def test_the_pure_trigger_agrees_with_apscheduler_cron(s, cron, zone):
    tz = ZoneInfo(zone)
    ours, theirs = PureTrigger(s, tz), CronTrigger(timezone=tz, **cron)
    t = datetime(2027, 12, 20, 0, 0, tzinfo=UTC)
    for _ in range(400):  # every 43 h across two years, DST changes included
        assert ours.get_next_fire_time(None, t) == theirs.get_next_fire_time(None, t), t
        t += timedelta(hours=43)


def test_quiet_hours_and_as_of_times(rules):
    q = ("21:00", "09:00")
    assert not in_quiet_hours(sh(2026, 11, 25, 20, 59), SH, *q)
    assert in_quiet_hours(sh(2026, 11, 25, 21), SH, *q)
    assert in_quiet_hours(sh(2026, 11, 26, 0, 0), SH, *q)
    assert in_quiet_hours(datetime(2026, 11, 26, 0, 59, tzinfo=UTC), SH, *q)  # 08:59
    assert not in_quiet_hours(datetime(2026, 11, 26, 1, 0, tzinfo=UTC), SH, *q)  # 09:00
    assert quiet_until(sh(2026, 11, 25, 22), SH, *q) == sh(2026, 11, 26, 9)
    assert quiet_until(sh(2026, 11, 25, 12), SH, *q) is None
    assert run_at(job("birthday").schedule(rules), date(2028, 2, 29), SH) == \
        sh(2028, 2, 29, 9, 30)
    assert run_at(job("tier_upgrade").schedule(rules), date(2026, 1, 1), SH) == \
        sh(2026, 1, 1, 9)
    # a wall time a DST jump skips still gives a real instant
    ny = ZoneInfo("America/New_York")
    assert run_at(Daily(2, 30), date(2026, 3, 8), ny).utcoffset() == timedelta(hours=-4)


PRODUCT_TIMES = {
    "member_day": "monthly on the 15th 09:00", "birthday": "daily 09:30",
    "points_expiry": "daily 10:00", "dormant": "daily 10:30", "wakeup": "daily 10:30",
    "demotion_warning": "daily 11:00", "housekeeping": "daily 03:00"}


def test_the_scheduler_fires_the_times_of_the_product(rules):
    got = {k: s.describe() for k, s in calendar_jobs(rules).items()}
    assert {k: got.get(k) for k in PRODUCT_TIMES} == PRODUCT_TIMES
    # and every other kind of the registry that runs at a calendar time
    assert set(got) == {k for k, j in JOBS.items() if isinstance(j.schedule(rules),
                                                                 Daily | Monthly)}


def kinds(summaries) -> list[str]:
    """The product's kinds among the jobs a tick ran (other kinds may run beside them)."""
    return [r.kind for r in summaries if r.kind in PRODUCT_TIMES]


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


async def test_two_schedulers_on_one_store_run_each_job_once(store, make_env, fake, tmp_path):
    env1 = await make_env(store)
    for i in range(5):
        await member(env1, f"m{i}", sh(2025, 12, 1), order_fen=10_000, paid_at=sh(2025, 12, 25))
    other = open_store(f"sqlite:///{tmp_path}/m.db", KEY)
    await other.open()
    try:
        env2 = await make_env(other)
        clock = Clock(sh(2026, 11, 25, 10, 5))
        s1 = Scheduler(env1, clock, sid="one", ttl=0.3)
        s2 = Scheduler(env2, clock, sid="two", ttl=0.3)
        runs = await asyncio.gather(s1.tick(), s2.tick())
        assert sorted([s1.leader, s2.leader]) == [False, True]
        first = kinds(r for batch in runs for r in batch)
        assert first == ["birthday", "points_expiry"]  # 09:30 and 10:00 are still due
        # both believe they lead (a lock that expired mid-job): each instant still runs once
        s1.leader = s2.leader = True
        again = await asyncio.gather(s1.fire("points_expiry", sh(2026, 11, 25, 10)),
                                     s2.fire("points_expiry", sh(2026, 11, 25, 10)))
        assert again == [None, None]
        # the leader dies; the other takes over after the lock expires and re-runs nothing
        leader, follower = (s1, s2) if runs[0] else (s2, s1)
        leader.leader = False
        follower.leader = False
        await asyncio.sleep(0.35)
        clock.t = sh(2026, 11, 25, 10, 31)
        runs = await follower.tick()
        assert follower.leader and kinds(runs) == ["dormant", "wakeup"]
        assert sum(fake.delivered().values()) == 5 and set(fake.delivered().values()) == {1}
        # the next day each job fires again, once
        clock.t = sh(2026, 11, 26, 10, 0)
        assert await leader.heartbeat() is False
        assert kinds(await follower.tick()) == ["birthday", "points_expiry"]
    finally:
        await other.close()


async def test_only_the_leader_delivers_the_outbox(store, make_env):
    env = await make_env(store)
    s1, s2 = Scheduler(env, Clock(sh(2026, 11, 25, 12)), sid="a"), \
        Scheduler(env, Clock(sh(2026, 11, 25, 12)), sid="b")
    await s1.heartbeat()
    await s2.heartbeat()
    assert await s2.deliver() is None and await s1.deliver() is not None
    await s1.resign()
    assert await s2.heartbeat()


async def test_serve_attaches_the_scheduler(aiohttp_client, tmp_path, fake, rules):
    settings = wecom_settings(tmp_path, fake)
    app = create_app(settings)
    setup(app)
    client = await aiohttp_client(app)
    ctx = client.server.app[CTX]
    sched = client.server.app[SCHEDULER].scheduler
    ids = {j.id for j in sched.aps.get_jobs()}
    assert ids == {*calendar_jobs(rules), "leader", "outbox"}
    pe = sched.aps.get_job("points_expiry")
    assert pe.next_run_time == next_run(Daily(10), datetime.now(SH), SH)
    for _ in range(200):  # the first heartbeat runs at once
        if sched.leader:
            break
        await asyncio.sleep(0.01)
    assert sched.leader and sched.env.wecom is ctx.wecom
    await client.close()  # stopping resigns: another process may lead at once
    import sqlite3

    db = sqlite3.connect(tmp_path / "m.db")
    assert db.execute("SELECT * FROM kv WHERE key='scheduler:leader'").fetchall() == []
    db.close()


async def test_a_job_that_fails_is_made_up_by_the_next_tick(store, make_env, monkeypatch):
    from bot.jobs import scheduler as sched_mod

    env = await make_env(store)
    clock = Clock(sh(2026, 11, 25, 10, 5))
    s = Scheduler(env, clock, sid="solo")
    assert await s.heartbeat()
    real = sched_mod.run_kind
    failing = {"points_expiry"}

    async def flaky(env_, kind, now, **kw):
        if kind in failing:
            failing.discard(kind)
            raise StoreUnavailable("the store went away mid-job")
        return await real(env_, kind, now, **kw)

    monkeypatch.setattr(sched_mod, "run_kind", flaky)
    with pytest.raises(StoreUnavailable):
        await s.fire("points_expiry", sh(2026, 11, 25, 10))
    clock.t = sh(2026, 11, 25, 10, 6)
    assert "points_expiry" in [r.kind for r in await s.tick()]  # caught up, not lost
    assert await s.fire("points_expiry", sh(2026, 11, 25, 10)) is None  # and only once
