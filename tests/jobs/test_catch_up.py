"""Lifecycle catch-up: every kind is due over a window and de-duplicated by the fact it is
about, so a day without a run (server down, a new install, imported history, a restored
backup) loses nothing and nothing comes twice; a notice whose moment has passed is not sent.
``jobs run KIND --as-of D`` (``run`` here) and the scheduler both go through ``run_kind``.
Each test runs on SQLite and on a real Redis."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from bot.rules.timeutil import ts

from .conftest import sqlite_or_redis
from .support import member, put, run, sh


@pytest.fixture(params=["sqlite", "redis"])
async def store(request, tmp_path):
    async with sqlite_or_redis(request.param, tmp_path) as s:
        yield s


async def sent(store, kind: str) -> list[str]:
    """The periods of ``kind`` enqueued so far, in order."""
    return sorted(r.period for r in await store.outbox(kind=kind))


async def daily(env, kind: str, first: date, last: date, *, skip=()) -> dict[date, int]:
    """Run ``kind`` as of each day from ``first`` to ``last`` (but the ``skip`` days)."""
    out, d = {}, first
    while d <= last:
        if d not in skip:
            out[d] = (await run(env, kind, d)).enqueued
        d += timedelta(days=1)
    return out


async def expiring(env, name: str, paid) -> date:
    mid = await member(env, name, paid, order_fen=50_000, paid_at=paid)
    (lot,) = (await env.store.get(mid)).lots
    return date.fromisoformat(lot.expires_on)


# -- points_expiry ----------------------------------------------------------------------------
async def test_points_first_seen_20_days_ahead_get_the_30_day_notice_then_the_7_day(
        store, make_env):
    env = await make_env(store)
    end = await expiring(env, "a", sh(2025, 12, 1))
    got = await daily(env, "points_expiry", end - timedelta(days=20), end + timedelta(days=2))
    assert [d for d, n in got.items() if n] == [end - timedelta(days=20),
                                                end - timedelta(days=7)]
    assert await sent(store, "points_expiry") == [f"{end}:30", f"{end}:7"]


async def test_points_5_days_from_expiry_get_only_the_7_day_notice(store, make_env):
    env = await make_env(store)
    end = await expiring(env, "a", sh(2025, 12, 1))
    got = await daily(env, "points_expiry", end - timedelta(days=5), end)
    assert sum(got.values()) == 1 and await sent(store, "points_expiry") == [f"{end}:7"]


async def test_points_already_expired_are_not_announced(store, make_env):
    env = await make_env(store)
    end = await expiring(env, "a", sh(2025, 12, 1))
    res = await run(env, "points_expiry", end + timedelta(days=1))
    assert res.due == 0 and await sent(store, "points_expiry") == []


async def test_every_lot_date_gets_its_own_notices(store, make_env):
    env = await make_env(store)
    mid = await member(env, "a", sh(2025, 11, 1), order_fen=50_000, paid_at=sh(2025, 11, 10))
    await env.members.record_order(mid, "order-a2", 30_000, sh(2025, 11, 25), sh(2025, 11, 25))
    ends = sorted({date.fromisoformat(x.expires_on) for x in (await store.get(mid)).lots})
    assert len(ends) == 2 and (ends[1] - ends[0]).days == 15
    # the first run is 10 days before the first date: both dates are within 30 days
    await daily(env, "points_expiry", ends[0] - timedelta(days=10), ends[1])
    assert await sent(store, "points_expiry") == sorted(
        [f"{ends[0]}:30", f"{ends[0]}:7", f"{ends[1]}:30", f"{ends[1]}:7"])


async def test_a_points_notice_held_past_the_expiry_is_stale(store, make_env):
    from bot.jobs.outbox import deliver
    from bot.keys import OUTBOX_PAUSED

    env = await make_env(store)
    end = await expiring(env, "a", sh(2025, 12, 1))
    await store.kv_set(OUTBOX_PAUSED, str(env.wall() + 3600))  # WeCom paused: held
    assert (await run(env, "points_expiry", end - timedelta(days=1))).enqueued == 1
    await store.kv_delete(OUTBOX_PAUSED)
    res = await deliver(env, sh(end.year, end.month, end.day, 10) + timedelta(days=1))
    assert res.skipped["stale"] == 1 and res.sent == 0


# -- dormant and wakeup -----------------------------------------------------------------------
async def test_dormant_once_per_dormancy_start_even_when_day_30_was_missed(store, make_env):
    env = await make_env(store)
    mid = await member(env, "a", sh(2026, 1, 5))
    start = date(2026, 1, 5)
    got = await daily(env, "dormant", start + timedelta(days=29), start + timedelta(days=40),
                      skip={start + timedelta(days=30)})
    assert [d for d, n in got.items() if n] == [start + timedelta(days=31)]
    await env.members.touch(mid, sh(2026, 3, 1))  # active again, then dormant again
    await daily(env, "dormant", date(2026, 3, 30), date(2026, 4, 2))
    assert await sent(store, "dormant") == ["2026-01-05", "2026-03-01"]


async def test_dormant_is_not_sent_once_the_wakeup_moment_has_come(store, make_env):
    env = await make_env(store)
    await member(env, "a", sh(2026, 1, 5))
    res = await run(env, "dormant", date(2026, 1, 5) + timedelta(days=90))
    assert res.due == 0 and await sent(store, "dormant") == []


async def test_wakeup_once_per_last_purchase_even_when_day_90_was_missed(store, make_env):
    env = await make_env(store)
    mid = await member(env, "a", sh(2025, 11, 1), order_fen=20_000, paid_at=sh(2025, 12, 1))
    got = await daily(env, "wakeup", date(2026, 2, 27), date(2026, 3, 10),
                      skip={date(2026, 3, 1), date(2026, 3, 2)})
    assert [d for d, n in got.items() if n] == [date(2026, 3, 3)]
    assert [c.template for c in (await store.get(mid)).coupons].count("wakeup") == 1
    await env.members.record_order(mid, "order-a2", 20_000, sh(2026, 3, 20), sh(2026, 3, 20))
    await daily(env, "wakeup", date(2026, 6, 17), date(2026, 6, 19))
    assert await sent(store, "wakeup") == ["2025-12-01", "2026-03-20"]


# -- demotion_warning ---------------------------------------------------------------------------
async def gold_in_grace(env, store, until) -> str:
    g = await store.get(await member(env, "g", sh(2026, 1, 1)))
    g.tier, g.grace_until = "gold", ts(until)
    await put(store, g, env, sh(2026, 1, 1))
    return g.id


async def test_demotion_warning_first_seen_20_days_ahead_then_7_and_none_after_grace(
        store, make_env):
    env = await make_env(store)
    await gold_in_grace(env, store, sh(2026, 7, 11, 3))
    got = await daily(env, "demotion_warning", date(2026, 6, 21), date(2026, 7, 12))
    assert [d for d, n in got.items() if n] == [date(2026, 6, 21), date(2026, 7, 4)]
    assert await sent(store, "demotion_warning") == ["2026-07-11:30", "2026-07-11:7"]


async def test_demotion_warning_3_days_ahead_is_the_7_day_one_only(store, make_env):
    env = await make_env(store)
    await gold_in_grace(env, store, sh(2026, 7, 11, 3))
    await daily(env, "demotion_warning", date(2026, 7, 8), date(2026, 7, 10))
    assert await sent(store, "demotion_warning") == ["2026-07-11:7"]


# -- birthday and member_day --------------------------------------------------------------------
async def test_birthday_missed_on_the_day_is_wished_the_next_day_not_later(store, make_env):
    env = await make_env(store)
    await member(env, "a", sh(2026, 1, 5), birthday="1990-03-10")
    await member(env, "b", sh(2026, 1, 5), birthday="1990-03-09")
    got = await daily(env, "birthday", date(2026, 3, 8), date(2026, 3, 12),
                      skip={date(2026, 3, 9), date(2026, 3, 10)})
    assert got == {date(2026, 3, 8): 0, date(2026, 3, 11): 1, date(2026, 3, 12): 0}
    assert await sent(store, "birthday") == ["2026"]  # a's, the day after; b's two days late


async def test_birthday_on_new_years_eve_is_caught_up_on_new_years_day(store, make_env):
    env = await make_env(store)
    # the birthday's own +50 points expire a year on: that notice takes the day's one slot
    env.rules = env.members.rules = dataclasses.replace(
        env.rules, push={**env.rules.push, "daily_cap": 2})
    await member(env, "a", sh(2026, 1, 5), birthday="1990-12-31")
    assert (await run(env, "birthday", date(2027, 1, 1))).enqueued == 1
    assert await sent(store, "birthday") == ["2026"]


async def test_member_day_is_that_day_only(store, make_env):
    env = await make_env(store)
    await member(env, "s", sh(2026, 10, 1), order_fen=300_000)
    got = await daily(env, "member_day", date(2026, 11, 14), date(2026, 11, 16),
                      skip={date(2026, 11, 15)})
    assert sum(got.values()) == 0 and await sent(store, "member_day") == []


# -- a day without a run loses nothing, and nothing comes twice ---------------------------------
async def scenario(env, store) -> None:
    """One member of each kind, all due in November 2026."""
    await member(env, "p", sh(2025, 11, 20), order_fen=50_000)  # points end 2026-11-20
    await member(env, "d", sh(2026, 10, 8))  # dormant from 2026-11-07
    # bought on 2026-08-05: dormant since 2026-09-04 (still due on 20 Oct), wakeup on 3 Nov
    await member(env, "w", sh(2026, 8, 5), order_fen=20_000)
    await member(env, "b", sh(2026, 1, 5), birthday="1990-11-12")
    await gold_in_grace(env, store, sh(2026, 11, 25, 3))


KINDS = ["points_expiry", "dormant", "wakeup", "birthday", "demotion_warning"]


@pytest.mark.parametrize("skipped", [
    set(),
    {date(2026, 11, 3), date(2026, 11, 7), date(2026, 11, 12), date(2026, 11, 14)},
    {date(2026, 10, 21), date(2026, 11, 13), date(2026, 11, 18)},
])
async def test_a_day_without_a_run_loses_nothing_and_nothing_comes_twice(store, make_env,
                                                                         skipped):
    env = await make_env(store)
    await scenario(env, store)
    for kind in KINDS:
        await daily(env, kind, date(2026, 10, 20), date(2026, 11, 30), skip=skipped)
    rows = await store.outbox()
    assert len({r.id for r in rows}) == len(rows)
    got = {k: await sent(store, k) for k in KINDS}
    assert got == {
        "points_expiry": ["2026-11-20:30", "2026-11-20:7"],
        "dormant": ["2026-08-05", "2026-10-08"],
        "wakeup": ["2026-08-05"],
        "birthday": ["2026"],
        "demotion_warning": ["2026-11-25:30", "2026-11-25:7"],
    }
    pushes = [r for r in await store.ledger(kinds=["push"])]
    assert len(pushes) == 8  # one mark per notice, however the days ran


async def test_the_scheduler_applies_the_same_rule_after_a_missed_day(store, make_env):
    from bot.jobs.scheduler import Scheduler
    from tests.api.support import Clock

    env = await make_env(store)
    await member(env, "a", sh(2026, 1, 5))
    clock = Clock(sh(2026, 2, 5, 10, 31))  # day 31: the server was down on day 30
    s = Scheduler(env, clock, sid="solo")
    assert await s.heartbeat()
    assert (await s.fire("dormant", sh(2026, 2, 5, 10, 30))).enqueued == 1
    clock.t = sh(2026, 2, 6, 10, 31)
    assert (await s.fire("dormant", sh(2026, 2, 6, 10, 30))).enqueued == 0
    assert await sent(store, "dormant") == ["2026-01-05"]
