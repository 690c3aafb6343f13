"""Tier and RFM segment as WeCom corp tags, against the fake WeCom API."""

from __future__ import annotations

import asyncio

from bot.jobs.runner import run_kind
from tests.fakes.wecom_api import ADD_TAG, MARK_TAG, TAG_LIST

from .support import member, sh

NOW = sh(2026, 11, 25, 10, 30)


def tag_id(fake, group: str, name: str) -> str:
    (g,) = [g for g in fake.tag_groups if g["group_name"] == group]
    (t,) = [t for t in g["tag"] if t["name"] == name]
    return t["id"]


async def test_a_tier_upgrade_marks_the_contact_once_with_the_right_tag_ids(
        store, make_env, fake):
    env = await make_env(store)
    # WeCom already has a group 会员等级 with one of our tags: only the rest is added
    fake.tag_groups = [{"group_id": "g-tier", "group_name": "会员等级",
                        "tag": [{"id": "t-normal", "name": "普通会员"}]}]
    mid = await member(env, "a", sh(2026, 11, 1))
    first = await run_kind(env, "tags", NOW)  # the new contact: tier and segment marked
    assert first.tagged == 1
    adds = [c.body for c in fake.to(ADD_TAG)]
    assert [a.get("group_id") or a.get("group_name") for a in adds] == ["g-tier", "RFM分群"]
    assert [t["name"] for t in adds[0]["tag"]] == ["银卡会员", "金卡会员", "黑金会员"]
    (mark,) = fake.to(MARK_TAG)
    assert mark.body["userid"] == "staff1" and mark.body["external_userid"] == "ext-a"
    assert mark.body["add_tag"] == ["t-normal"]

    await env.members.record_order(mid, "o1", 300_000, sh(2026, 11, 25, 10),
                                   sh(2026, 11, 25, 10))
    res = await asyncio.gather(run_kind(env, "tags", NOW), run_kind(env, "tags", NOW))
    assert sum(r.tagged for r in res) == 1
    assert (await run_kind(env, "tags", NOW)).tagged == 0
    marks = fake.to(MARK_TAG)
    assert len(marks) == 2 and marks[1].ok
    silver = tag_id(fake, "会员等级", "银卡会员")
    segment = (await store.get(mid)).rfm
    assert marks[1].body["add_tag"] == [silver, tag_id(fake, "RFM分群", segment)]
    assert "t-normal" in marks[1].body["remove_tag"] and silver not in marks[1].body["remove_tag"]
    assert len(fake.to(TAG_LIST)) == 1 and len(fake.to(ADD_TAG)) == 2  # groups made once
    rows = [r for r in await store.outbox(kind="wecom_tag")]
    assert {r.status for r in rows} == {"tag_done"} and len(rows) == 2


async def test_a_member_without_wecom_gets_no_tag_rows(store, make_env, fake):
    env = await make_env(store)
    mid = await member(env, "b", sh(2026, 11, 1), staff=None)
    await env.members.record_order(mid, "o1", 300_000, sh(2026, 11, 25, 10),
                                   sh(2026, 11, 25, 10))
    assert await store.outbox(kind="wecom_tag") == []
    assert (await run_kind(env, "tags", NOW)).due == 0 and not fake.to(MARK_TAG)


async def test_at_most_five_mark_tag_calls_at_once(store, make_env, fake):
    env = await make_env(store)
    for i in range(12):
        await member(env, f"c{i}", sh(2026, 11, 1), staff=f"s{i}")
    fake.mark_gate = asyncio.Event()
    run = asyncio.create_task(run_kind(env, "tags", NOW))
    for _ in range(3000):  # event-based: until WeCom holds five calls (≤ 30 s when loaded)
        if fake.marking >= 5 or run.done():
            break
        await asyncio.sleep(0.01)
    fake.mark_gate.set()
    assert (await run).tagged == 12
    assert fake.most_marking == 5  # WeCom's concurrency limit for mark_tag
    assert len(fake.to(MARK_TAG)) == 12
