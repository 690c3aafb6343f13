"""A member's owner staff: pushes wait when the owner left (del_follow_user) until a new one is
known, and a new owner gets the tier and segment tags marked anew, once (fake WeCom API)."""

from __future__ import annotations

from bot import analytics
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
    for eu in ("ext-m0", "ext-m1"):  # the customer deleted alice, its only staff member
        res = await env.members.unlink_wecom(eu, "alice", NOW, left=True)
        assert res["waiting"] is True
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
    await env.members.unlink_wecom("ext-m0", "alice", NOW, left=True)
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
    await env.members.unlink_wecom("ext-m0", "alice", NOW, left=True)
    m = await store.get(mid)
    assert (m.owner_userid, m.owner_left) == ("bob", {})
    assert (await run(env, "points_expiry", DAY)).sent == 1
    assert [c.body["sender"] for c in fake.to(ADD)] == ["bob"]


async def test_del_follow_user_makes_pushes_wait_and_del_external_contact_does_not(
        app_client, fake):  # noqa: F811
    client, wc = await app_client()
    ctx = client.server.app[CTX]
    for eu in ("ext-a", "ext-b"):
        fake.contacts[eu] = contact(f"u-{eu}", "alice")
        await wc.event("add_external_contact", eu, "alice")
    await wc.event("del_follow_user", "ext-a", "alice", created=1764000100)
    await wc.event("del_external_contact", "ext-b", "alice", created=1764000200)
    a = await ctx.store.get(await ctx.store.lookup("external_userid", "ext-a"))
    b = await ctx.store.get(await ctx.store.lookup("external_userid", "ext-b"))
    assert a.owner_left and a.awaits_owner and a.owner_userid == "alice"
    assert not b.owner_left and b.owner_userid is None
    assert await ctx.store.tag_counts("handover") == {"owner_left": 1}


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
    await env.members.unlink_wecom("ext-m0", "alice", NOW, left=True)
    res = await run_kind(env, "tags", NOW)
    assert res.tagged == 0 and res.held["no_owner"] == 1 and not fake.to(MARK_TAG)
    assert {r.status for r in await store.outbox(kind="wecom_tag")} == {"tag_pending"}
    await env.members.link_wecom("ext-m0", NOW, staff="carol", unionid="u-m0")
    assert (await run_kind(env, "tags", NOW)).tagged == 1
    assert [c.body["userid"] for c in fake.to(MARK_TAG)] == ["carol"]
