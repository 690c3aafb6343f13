"""Confirmed delivery against the fake WeCom API: tasks polled until the staff member confirms
(or 3 days pass), reminders within WeCom's limit, crashed batches reconciled."""

from __future__ import annotations

import dataclasses
import time

import aiohttp

from bot.jobs.outbox import deliver
from bot.jobs.runner import run_kind
from tests.fakes.wecom_api import ADD, LIST_V2, REMIND, RESULT, TASK

from .support import sh, statuses
from .test_exactly_once import DAY, due_members, run

NOW = sh(2026, 11, 25, 10, 30)


def with_wecom(env, **over) -> None:
    env.rules = dataclasses.replace(env.rules, wecom={**env.rules.wecom, **over})
    env.members.rules = env.rules


def later(env, seconds: float) -> None:
    base = env.wall()
    env.wall = lambda: base + seconds


async def confirm(env):
    return await run_kind(env, "confirm", NOW)


async def test_a_push_is_confirmed_after_two_polls_with_each_members_status(
        store, make_env, fake):
    env = await make_env(store)
    await due_members(env, 5, staffs=1, texts=1)  # one task of five
    fake.page_size = 2  # the send result comes in three pages
    res = await run(env, "points_expiry", DAY)
    assert res.sent == 5 and await statuses(store) == {"created": 5}
    (msgid,) = fake.tasks

    first = await confirm(env)  # the staff member has not confirmed yet
    assert first.due == 1 and not first.delivery
    assert await statuses(store) == {"created": 5}
    assert fake.to(TASK)[-1].body["msgid"] == msgid and fake.to(TASK)[-1].body["limit"] <= 1000

    fake.confirm(msgid, {"ext-m1": 2, "ext-m2": 3})
    second = await confirm(env)
    assert second.delivery == {"confirmed": 3, "not_friend": 1, "received_other": 1}
    assert await statuses(store) == {"confirmed": 3, "not_friend": 1, "received_other": 1}
    pages = [c for c in fake.to(RESULT) if c.body["msgid"] == msgid]
    assert [c.body["cursor"] for c in pages] == ["", "2", "4"]
    assert all(c.body["limit"] <= 1000 for c in pages)

    third = await confirm(env)  # final: never polled again
    assert third.due == 0 and len(fake.to(TASK)) == 2
    assert "delivery: confirmed" in "\n".join(second.lines())


async def test_a_task_never_confirmed_is_unconfirmed_after_three_days(store, make_env, fake):
    env = await make_env(store)
    await due_members(env, 2, staffs=1, texts=1)
    await run(env, "points_expiry", DAY)
    await confirm(env)
    assert await statuses(store) == {"created": 2}
    later(env, 3 * 86400 + 1)
    res = await confirm(env)
    assert res.delivery == {"unconfirmed": 2} and await statuses(store) == {"unconfirmed": 2}


async def test_an_unconfirmed_task_is_reminded_at_most_three_times_a_day(store, make_env, fake):
    env = await make_env(store)
    await due_members(env, 2, staffs=1, texts=1)
    await run(env, "points_expiry", DAY)
    (msgid,) = fake.tasks
    assert (await confirm(env)).reminded == 0  # not before remind_after_minutes (120)

    with_wecom(env, remind_after_minutes=0)
    reminded = [(await confirm(env)).reminded for _ in range(5)]
    assert reminded == [1, 1, 1, 0, 0]
    assert [c.body for c in fake.to(REMIND)] == [{"msgid": msgid}] * 3
    assert all(c.ok for c in fake.to(REMIND))

    later(env, 86400 + 60)  # a new 24 hours: WeCom allows reminders again
    fake.now = time.time() + 86400 + 60
    assert (await confirm(env)).reminded == 1
    fake.confirm(msgid)
    assert (await confirm(env)).reminded == 0  # confirmed: no reminder
    assert len(fake.to(REMIND)) == 4 and await statuses(store) == {"confirmed": 2}


async def _crash_mid_call(env, fake, *, created: bool, n: int = 3):
    env.wecom.timeout = aiohttp.ClientTimeout(total=0.2)
    fake.hang_on, fake.create_before_hang = 1, created  # the call gets no answer
    res = await run(env, "points_expiry", DAY)
    assert res.uncertain == n and await statuses(env.store) == {"uncertain": n}
    fake.hang_on = None


async def test_an_uncertain_batch_found_in_wecom_is_adopted_and_not_resent(
        store, make_env, fake):
    env = await make_env(store)
    await due_members(env, 3, staffs=1, texts=1)
    await _crash_mid_call(env, fake, created=True)
    (msgid,) = fake.tasks  # WeCom created the task; the answer was lost
    res = await run_kind(env, "reconcile", NOW)
    assert res.adopted == 3 and res.resent == 0
    listing = fake.to(LIST_V2)[0].body
    assert listing["creator"] == "staff0" and listing["limit"] <= 100
    assert listing["end_time"] - listing["start_time"] <= 31 * 86400
    assert await statuses(store) == {"created": 3}
    assert {r.data["msgid"] for r in await store.outbox(kind="points_expiry")} == {msgid}
    await deliver(env, NOW)
    assert (await run_kind(env, "reconcile", NOW)).due == 0
    assert len(fake.to(ADD)) == 1  # nothing resent
    fake.confirm(msgid)
    assert (await confirm(env)).delivery == {"confirmed": 3}


async def test_an_uncertain_batch_wecom_never_created_is_resent_once(store, make_env, fake):
    env = await make_env(store)
    await due_members(env, 3, staffs=1, texts=1)
    await _crash_mid_call(env, fake, created=False)
    res = await run_kind(env, "reconcile", NOW)  # too early to tell: WeCom may not list it
    assert res.resent == 0 and res.held["reconcile_wait"] == 3
    later(env, 11 * 60)
    res = await run_kind(env, "reconcile", NOW)
    assert res.resent == 3 and res.sent == 3
    assert await statuses(store) == {"created": 3}
    assert (await run_kind(env, "reconcile", NOW)).resent == 0
    ok = [c for c in fake.to(ADD) if c.ok]
    assert len(ok) == 1 and sorted(ok[0].body["external_userid"]) == ["ext-m0", "ext-m1",
                                                                      "ext-m2"]
    assert fake.delivered() == {"ext-m0": 1, "ext-m1": 1, "ext-m2": 1}


async def test_a_resent_batch_lost_again_is_failed_not_resent_twice(store, make_env, fake):
    env = await make_env(store)
    await due_members(env, 2, staffs=1, texts=1)
    await _crash_mid_call(env, fake, created=False, n=2)
    later(env, 11 * 60)
    fake.hang_on = 2  # the resend is cut off too
    await run_kind(env, "reconcile", NOW)
    assert await statuses(store) == {"uncertain": 2}
    fake.hang_on = None
    base = time.time()
    env.wall = lambda: base + 30 * 60
    res = await run_kind(env, "reconcile", NOW)
    assert res.resent == 0 and res.failed["lost"] == 2
    assert await statuses(store) == {"failed": 2} and len(fake.to(ADD)) == 2


async def test_wecoms_per_customer_limit_holds_a_push_for_the_next_period(
        store, make_env, fake):
    from bot.rules.config import send_limit

    from .support import member

    env = await make_env(store)
    with_wecom(env, send_limit="day")  # the admin set 1 group message a day per customer
    mid = await member(env, "a", sh(2026, 11, 1))
    await env.members.record_order(mid, "o1", 300_000, sh(2026, 11, 25, 10),
                                   sh(2026, 11, 25, 10))
    assert (await run_kind(env, "tier_upgrade", sh(2026, 11, 25, 10, 1))).sent == 1
    await env.members.record_order(mid, "o2", 1_300_000, sh(2026, 11, 25, 11),
                                   sh(2026, 11, 25, 11))
    res = await run_kind(env, "tier_upgrade", sh(2026, 11, 25, 11, 1))
    assert res.sent == 0 and res.held["send_limit"] == 1
    assert "held: WeCom's per-customer limit" in "\n".join(res.lines())
    assert len(fake.to(ADD)) == 1 and (await statuses(store))["pending"] == 1
    res = await run_kind(env, "tier_upgrade", sh(2026, 11, 26, 9, 5))  # the next day
    assert res.sent == 1 and len(fake.to(ADD)) == 2
    assert fake.delivered() == {"ext-a": 2}

    day = sh(2026, 2, 10).date()
    with_wecom(env, send_limit="month")
    assert send_limit(env.rules, day) == ("2026-02", 28)
    with_wecom(env, send_limit="week")
    assert send_limit(env.rules, day) == ("2026-W07", 7)
