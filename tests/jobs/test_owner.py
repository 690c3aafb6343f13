"""A member's owner staff: pushes wait when the owner left the company (address book
delete_user) until a new one is known, and a new owner gets the tier and segment tags marked
anew, once (fake WeCom API). A customer deleting the staff member (del_follow_user) only drops
the relation: nobody can reach them on WeCom, so nothing waits."""

from __future__ import annotations

import asyncio

from bot import analytics, keys
from bot.jobs import handover
from bot.jobs.base import Summary
from bot.jobs.outbox import deliver
from bot.jobs.runner import run_kind
from bot.web import CTX
from tests.fakes.wecom_api import ADD, MARK_TAG

from .support import member, sh, statuses
from .test_exactly_once import DAY, run
from .test_wecom_callback import app_client, contact  # noqa: F401 - the fixture

NOW = sh(2026, 11, 25, 10, 30)


async def _due(env, names, staff="alice"):
    return [await member(env, n, sh(2025, 12, 1), staff=staff, order_fen=10_000,
                         paid_at=sh(2025, 12, 25)) for n in names]


async def test_pushes_of_a_member_whose_owner_left_wait_for_a_handover(store, make_env, fake):
    env = await make_env(store)
    ids = await _due(env, ["m0", "m1"])
    assert await env.members.staff_left("alice", NOW) == 2  # alice left the company
    assert await env.members.staff_left("alice", NOW) == 0  # a repeat changes nothing
    m = await store.get(ids[0])
    assert m.owner_left["staff"] == "alice" and m.follow_users == []
    assert m.owner_userid == "alice"  # kept: a handover from alice finds the member

    res = await run(env, "points_expiry", DAY)
    assert res.enqueued == 2 and res.sent == 0 and res.held["no_owner"] == 2
    assert "waiting for a new owner" in "\n".join(res.lines())
    assert await statuses(store) == {"pending": 2} and not fake.to(ADD)
    again = await deliver(env, NOW)  # held, not failed, not wasted: every run says so
    assert again.held["no_owner"] == 2 and await statuses(store) == {"pending": 2}
    report = await analytics.compute(store, env.rules, DAY, 30)
    assert report["pushes"]["awaiting_owner"] == {"handover": 0, "owner_left": 2}
    dry = await run_kind(env, "outbox", NOW, dry_run=True)
    assert dry.held["no_owner"] == 2 and not dry.would_send

    await handover.start(env, "alice", "bob", resigned=True, now=NOW,
                         summary=Summary("handover", NOW))
    fake.finish_transfers()
    assert (await run_kind(env, "handover", NOW)).moved == 2
    m = await store.get(ids[0])
    assert m.owner_userid == "bob" and not m.owner_left
    sent = await deliver(env, NOW)
    assert sent.sent == 2 and not sent.held
    (call,) = fake.to(ADD)
    assert call.body["sender"] == "bob"
    assert fake.delivered() == {"ext-m0": 1, "ext-m1": 1}


async def test_a_new_add_external_contact_ends_the_wait(store, make_env, fake):
    env = await make_env(store)
    (mid,) = await _due(env, ["m0"])
    await env.members.staff_left("alice", NOW)
    assert (await run(env, "points_expiry", DAY)).held["no_owner"] == 1
    await env.members.link_wecom("ext-m0", NOW, staff="carol", unionid="u-m0")
    m = await store.get(mid)
    assert (m.owner_userid, m.follow_users, m.owner_left) == ("carol", ["carol"], {})
    assert (await deliver(env, NOW)).sent == 1
    assert [c.body["sender"] for c in fake.to(ADD)] == ["carol"]


async def test_removing_one_of_two_staff_passes_the_owner_on_without_waiting(store, make_env,
                                                                             fake):
    env = await make_env(store)
    (mid,) = await _due(env, ["m0"])
    await env.members.link_wecom("ext-m0", NOW, staff="bob", unionid="u-m0")
    await env.members.staff_left("alice", NOW)
    m = await store.get(mid)
    assert (m.owner_userid, m.owner_left) == ("bob", {})
    assert (await run(env, "points_expiry", DAY)).sent == 1
    assert [c.body["sender"] for c in fake.to(ADD)] == ["bob"]


async def test_a_staff_member_leaving_makes_pushes_wait_and_a_deletion_does_not(
        app_client, fake):  # noqa: F811
    client, wc = await app_client()
    ctx = client.server.app[CTX]
    for eu, staff in (("ext-a", "alice"), ("ext-b", "bob"), ("ext-c", "bob")):
        fake.contacts[eu] = contact(f"u-{eu}", staff)
        await wc.event("add_external_contact", eu, staff)
    # the customer deleted bob / bob deleted the customer: nobody reaches them on WeCom
    await wc.event("del_follow_user", "ext-b", "bob", created=1764000100)
    await wc.event("del_external_contact", "ext-c", "bob", created=1764000200)
    r = await wc.staff_deleted("alice")  # alice left the company
    assert r.status == 200 and await r.text() == "success"

    async def get(eu):
        return await ctx.store.get(await ctx.store.lookup("external_userid", eu))

    for _ in range(500):  # her customers are marked in the background
        if (await get("ext-a")).owner_left:
            break
        await asyncio.sleep(0.02)
    a, b, c = await get("ext-a"), await get("ext-b"), await get("ext-c")
    assert a.owner_left and a.awaits_owner and a.owner_userid == "alice"
    for m in (b, c):
        assert not m.owner_left and m.owner_userid is None and m.follow_users == []
    assert await ctx.store.tag_counts("handover") == {"owner_left": 1}
    for _ in range(500):  # done: the departure note is dropped
        if await ctx.store.kv_get(keys.staff_departures()) is None:
            break
        await asyncio.sleep(0.02)
    assert await ctx.store.kv_get(keys.staff_departures()) is None


async def test_a_departure_cut_off_by_a_crash_is_finished_by_the_handover_job(store, make_env,
                                                                             fake):
    env = await make_env(store)
    ids = await _due(env, ["m0", "m1"])
    await env.members.note_departure("alice", NOW)  # noted; then the process died
    assert not (await store.get(ids[0])).owner_left
    await run_kind(env, "handover", NOW)
    assert all([(await store.get(i)).owner_left for i in ids])
    assert await store.kv_get(keys.staff_departures()) is None
    assert (await run(env, "points_expiry", DAY)).held["no_owner"] == 2


async def test_a_handover_marks_the_tags_again_under_the_new_owner_once(store, make_env,
                                                                        fake):
    env = await make_env(store)
    # tier and segment stay as they are through NOW: only the new owner makes a mark
    await member(env, "m0", sh(2026, 11, 1), staff="alice", order_fen=10_000,
                 paid_at=sh(2026, 11, 20))
    assert (await run_kind(env, "tags", NOW)).tagged == 1
    (first,) = fake.to(MARK_TAG)
    assert first.body["userid"] == "alice"
    before = len(await store.outbox(kind="wecom_tag"))
    await handover.start(env, "alice", "bob", resigned=False, now=NOW,
                         summary=Summary("handover", NOW))
    assert (await run_kind(env, "tags", NOW)).due == 0  # nothing to mark yet
    fake.finish_transfers()
    assert (await run_kind(env, "handover", NOW)).moved == 1
    rows = await store.outbox(kind="wecom_tag")
    assert len(rows) == before + 1  # committed with the change of owner
    new = max(rows, key=lambda r: r.period)
    assert new.status == "tag_pending" and new.data["owner"] == "bob"
    for _ in range(2):  # a rerun of both jobs marks nothing twice
        await run_kind(env, "handover", NOW)
        await run_kind(env, "tags", NOW)
    marks = fake.to(MARK_TAG)
    assert [c.body["userid"] for c in marks] == ["alice", "bob"]
    assert marks[1].body["external_userid"] == "ext-m0"
    assert marks[1].body["add_tag"] == first.body["add_tag"]  # the same tier and segment
    assert len(await store.outbox(kind="wecom_tag")) == before + 1


async def test_tag_marks_wait_for_the_new_owner_too(store, make_env, fake):
    env = await make_env(store)
    (mid,) = await _due(env, ["m0"])
    await env.members.staff_left("alice", NOW)
    res = await run_kind(env, "tags", NOW)
    assert res.tagged == 0 and res.held["no_owner"] == 1 and not fake.to(MARK_TAG)
    assert {r.status for r in await store.outbox(kind="wecom_tag")} == {"tag_pending"}
    await env.members.link_wecom("ext-m0", NOW, staff="carol", unionid="u-m0")
    assert (await run_kind(env, "tags", NOW)).tagged == 1
    assert [c.body["userid"] for c in fake.to(MARK_TAG)] == ["carol"]
