"""Exactly once across crashes, reruns and concurrent senders (SQLite; Redis below)."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import date

import pytest

from bot.jobs.outbox import deliver
from storage import open_store

from .conftest import KEY
from .support import member, run, sh, statuses

DAY = date(2026, 11, 25)  # 30 days before lots earned on 2025-12-25 expire


class Crash(Exception):
    """Stands for the process dying at this point."""


def crash_on(obj, name: str, n: int, *, after: bool = True) -> None:
    """Make the ``n``-th call of ``obj.name`` die, before or after it did its work."""
    orig = getattr(obj, name)
    seen = [0]

    async def wrapper(*a, **k):
        seen[0] += 1
        mine = seen[0]  # calls overlap: count at entry
        if mine == n and not after:
            raise Crash(name)
        res = await orig(*a, **k)
        if mine == n and after:
            raise Crash(name)
        return res

    setattr(obj, name, wrapper)


def heal(obj, name: str) -> None:
    del obj.__dict__[name]


async def due_members(env, n: int, *, staffs: int = 3, texts: int = 4) -> list[str]:
    """``n`` members due for points_expiry on DAY; (staff, text) groups of a few each."""
    return [await member(env, f"m{i}", sh(2025, 12, 1), staff=f"staff{i % staffs}",
                         order_fen=10_000 * (1 + i % texts), paid_at=sh(2025, 12, 25))
            for i in range(n)]


def after_lease(env) -> None:
    env.wall = lambda: time.time() + env.lease + 1


def assert_each_once(fake, n: int) -> None:
    reached = fake.reached()
    assert set(reached) == {f"ext-m{i}" for i in range(n)}
    assert set(reached.values()) == {1}, reached


CRASHES = [
    ("store", "update", 9, True),  # enqueueing: member 9's mark commits, then death
    ("store", "update", 9, False),  # enqueueing: death before member 9's mark
    ("wecom", "add_msg_template", 3, True),  # the 3rd call went out, its answer is lost
    ("wecom", "add_msg_template", 3, False),  # death just before the 3rd call
    ("store", "outbox_set", 40, True),  # while recording results
    ("store", "kv_set", 12, True),  # while moving a batch record
]


@pytest.mark.parametrize("where, name, n, after", CRASHES)
async def test_a_crash_then_a_rerun_sends_the_rest_and_nothing_twice(
        store, make_env, fake, where, name, n, after):
    env = await make_env(store)
    await due_members(env, 24)
    target = store if where == "store" else env.wecom
    crash_on(target, name, n, after=after)
    with pytest.raises(Crash):
        await run(env, "points_expiry", DAY)
    heal(target, name)
    after_lease(env)  # the dead sender's batch lease has run out
    await run(env, "points_expiry", DAY)
    st = await statuses(store)
    assert st["pending"] == st["sending"] == 0
    assert st["created"] + st["uncertain"] == 24
    if (name, after) == ("add_msg_template", False):
        # died between marking the batch "calling" and calling: never resent (at most once)
        assert set(fake.reached().values()) == {1} and st["uncertain"] >= 1
        return
    assert_each_once(fake, 24)
    if (name, after) == ("add_msg_template", True):
        assert st["uncertain"] >= 1  # in flight at the crash: resolved, not resent
    else:
        assert st["uncertain"] == 0
    assert (await run(env, "points_expiry", DAY)).already == 24  # a third run: nothing
    assert_each_once(fake, 24)


@pytest.mark.parametrize("n, after", [(3, True), (4, False), (11, True)])
async def test_a_crash_between_the_coupon_and_the_mark_gives_one_coupon_and_one_message(
        store, make_env, fake, n, after):
    env = await make_env(store)
    ids = [await member(env, f"m{i}", sh(2026, 1, 5), staff=f"staff{i % 2}",
                        birthday="1990-11-25") for i in range(8)]
    crash_on(store, "update", n, after=after)  # coupon issues and marks interleave
    with pytest.raises(Crash):
        await run(env, "birthday", DAY)
    heal(store, "update")
    after_lease(env)
    res = await run(env, "birthday", DAY)
    assert res.sent + res.already >= 1
    for mid in ids:
        assert [c.template for c in (await store.get(mid)).coupons].count("birthday") == 1
    assert set(fake.reached()) == {f"ext-m{i}" for i in range(8)}
    assert set(fake.reached().values()) == {1}


async def test_a_batch_in_flight_elsewhere_is_left_alone_until_its_lease_ends(
        store, make_env, fake):
    env = await make_env(store)
    await due_members(env, 6)
    crash_on(env.wecom, "add_msg_template", 1, after=True)
    with pytest.raises(Crash):
        await run(env, "points_expiry", DAY)
    heal(env.wecom, "add_msg_template")
    res = await deliver(env, sh(2026, 11, 25, 10, 1))  # the lease still runs
    assert res.held["in_flight"] >= 1 and (await statuses(store))["sending"] >= 1
    after_lease(env)
    await deliver(env, sh(2026, 11, 25, 10, 2))
    assert_each_once(fake, 6)


async def test_a_batch_answered_before_the_crash_is_confirmed_with_its_msgid(
        store, make_env, fake):
    env = await make_env(store)
    await due_members(env, 6, staffs=1, texts=1)  # one batch of six
    fake.fail_ids = {"ext-m2"}
    crash_on(store, "outbox_set", 6 + 2, after=False)  # 6 claims, then 2nd result row
    with pytest.raises(Crash):
        await run(env, "points_expiry", DAY)
    heal(store, "outbox_set")
    await deliver(env, sh(2026, 11, 25, 10, 5))
    assert len(fake.to("/cgi-bin/externalcontact/get_groupmsg_send_result")) == 1
    st = await statuses(store)
    assert st == {"created": 5, "failed": 1}
    assert len(fake.to("/cgi-bin/externalcontact/add_msg_template")) == 1


async def test_two_senders_at_once_never_send_a_row_twice(store, make_env, fake, tmp_path):
    env = await make_env(store, concurrency=4)
    await due_members(env, 40)
    from bot.jobs.runner import run_kind

    res = await run_kind(env, "points_expiry", sh(2026, 11, 25, 21, 30))  # quiet: held
    assert res.enqueued == 40 and res.held["quiet"] == 40
    assert not fake.to("/cgi-bin/externalcontact/add_msg_template")
    other = open_store(f"sqlite:///{tmp_path}/m.db", KEY)  # a second process, same file
    await other.open()
    try:
        env2 = await make_env(other, concurrency=4)
        morning = sh(2026, 11, 26, 9)
        a, b = await asyncio.gather(deliver(env, morning), deliver(env2, morning))
        assert a.sent + b.sent == 40
        assert_each_once(fake, 40)
    finally:
        await other.close()


REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
async def redis_store():
    import importlib.util

    if importlib.util.find_spec("storage.redis") is None:
        pytest.fail("storage/redis.py is missing: the Redis exactly-once test cannot run")
    import redis.asyncio as aioredis

    raw = aioredis.from_url(REDIS_URL)
    await raw.flushdb()
    s = open_store(REDIS_URL, KEY)
    await s.open()
    yield s
    await s.close()
    await raw.flushdb()
    await raw.aclose()


@pytest.mark.parametrize("name, n, after", [("update", 9, True),
                                             ("add_msg_template", 3, True),
                                             ("outbox_set", 40, True)])
async def test_exactly_once_after_a_crash_on_redis(redis_store, make_env, fake, name, n,
                                                   after):
    env = await make_env(redis_store)
    await due_members(env, 24)
    target = env.wecom if name == "add_msg_template" else redis_store
    crash_on(target, name, n, after=after)
    with pytest.raises(Crash):
        await run(env, "points_expiry", DAY)
    heal(target, name)
    after_lease(env)
    await run(env, "points_expiry", DAY)
    assert_each_once(fake, 24)
    st = await statuses(redis_store)
    assert st["created"] + st["uncertain"] == 24 and st["pending"] == st["sending"] == 0
