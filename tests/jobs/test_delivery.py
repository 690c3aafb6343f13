"""Delivery rules: API errors, quiet hours, the daily cap, opt-out, the OA fallback, batching,
and dry runs that change nothing."""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest

from bot.channels.wecom import Backoff
from bot.jobs.outbox import deliver
from bot.jobs.runner import run_kind
from bot.rules.timeutil import ts

from .support import member, put, run, sh, statuses
from .test_exactly_once import DAY, after_lease, assert_each_once, due_members

ADD = "/cgi-bin/externalcontact/add_msg_template"


async def test_token_expiry_mid_run_refreshes_once_and_delivers_all(store, make_env, fake):
    env = await make_env(store, concurrency=4)
    await due_members(env, 24)
    orig = env.wecom.add_msg_template
    calls = [0]

    async def expire_after_third(*a, **k):
        res = await orig(*a, **k)
        calls[0] += 1
        if calls[0] == 3:
            fake.expire_tokens()  # every later call meets 42001, several at once
        return res

    env.wecom.add_msg_template = expire_after_third
    res = await run(env, "points_expiry", DAY)
    assert res.sent == 24 and not res.failed
    assert_each_once(fake, 24)
    assert fake.token_fetches == 2  # the first token, and one refresh for all of them
    assert any(c.answer.get("errcode") == 42001 for c in fake.to(ADD))


async def test_token_refresh_is_shared_by_processes(store, make_env, fake, tmp_path):
    from storage import open_store

    from .conftest import KEY

    other = open_store(f"sqlite:///{tmp_path}/m.db", KEY)
    await other.open()
    try:
        a, b = await make_env(store), await make_env(other)
        import asyncio

        tokens = await asyncio.gather(*(env.wecom.access_token() for env in (a, b) * 5))
        assert len(set(tokens)) == 1 and fake.token_fetches == 1
        stale = tokens[0]
        fresh = await asyncio.gather(*(env.wecom.access_token(stale=stale)
                                       for env in (a, b) * 5))
        assert len(set(fresh)) == 1 and fresh[0] != stale and fake.token_fetches == 2
    finally:
        await other.close()


async def test_rate_limit_backs_off_and_delivers_all(store, make_env, fake):
    env = await make_env(store, backoff=Backoff(base=1, cap=30, tries=5))
    await due_members(env, 12)
    fake.fail_next(45009, 3, ADD)
    res = await run(env, "points_expiry", DAY)
    assert res.sent == 12
    assert env.sleeps == [1, 2, 4]  # exponential, injected: no real waiting
    assert_each_once(fake, 12)


async def test_a_rate_limit_that_outlasts_the_backoff_holds_rows_for_later(
        store, make_env, fake):
    env = await make_env(store, backoff=Backoff(base=1, cap=8, tries=2))
    await due_members(env, 6)
    fake.fail_next(45033, 3, ADD)
    res = await run(env, "points_expiry", DAY)
    assert res.held["rate_limit"] == 6 and res.sent == 0
    assert (await statuses(store)) == {"pending": 6}
    res = await deliver(env, sh(2026, 11, 25, 10, 1))  # still paused: not even tried
    assert res.sent == 0 and len(fake.to(ADD)) == 3
    after_lease(env)  # (the pause has run out too)
    res = await deliver(env, sh(2026, 11, 25, 10, 5))
    assert res.sent == 6
    assert_each_once(fake, 6)


async def test_invalid_secret_is_a_configuration_problem_not_retried(
        store, make_env, fake):
    env = await make_env(store, wecom_secret="wrong")
    await due_members(env, 5)
    res = await run(env, "points_expiry", DAY)
    assert res.held["config"] == 5 and res.sent == 0
    assert "40001" in env.problems["wecom"] and "WECOM_SECRET" in env.problems["wecom"]
    assert fake.token_fetches == 1 and not fake.to(ADD)  # one try, no retries
    assert (await statuses(store)) == {"pending": 5}
    fixed = await make_env(store)  # the operator fixes WECOM_SECRET
    res = await deliver(fixed, sh(2026, 11, 25, 10, 5))
    assert res.sent == 5 and "wecom" not in fixed.problems
    assert_each_once(fake, 5)


async def test_40001_from_an_api_call_is_also_a_configuration_problem(store, make_env, fake):
    env = await make_env(store)
    await due_members(env, 3, staffs=1, texts=1)
    fake.fail_next(40001, 1, ADD)
    res = await run(env, "points_expiry", DAY)
    assert res.held["config"] == 3 and "wecom" in env.problems
    assert len(fake.to(ADD)) == 1


async def test_fail_list_and_other_errors_are_recorded_per_member_and_the_job_goes_on(
        store, make_env, fake):
    env = await make_env(store)
    await due_members(env, 12)  # 12 distinct (staff, text) groups: one call each
    fake.fail_ids = {"ext-m0", "ext-m5"}
    fake.refuse = {"ext-m7": 41048}  # that call fails outright
    res = await run(env, "points_expiry", DAY)
    assert res.failed == {"fail_list": 2, 41048: 1} and res.sent == 9
    rows = {r.member_id: r for r in await store.outbox() if r.kind != "wecom_tag"}
    failed = [r for r in rows.values() if r.status == "failed"]
    assert sorted(str(r.data["error"]) for r in failed) == ["41048", "fail_list", "fail_list"]
    sent = [r for r in rows.values() if r.status == "created"]
    assert len(sent) == 9 and all(r.data["msgid"].startswith("msg") for r in sent)


async def test_quiet_hours_hold_until_nine(store, make_env, fake, rules):
    env = await make_env(store)
    mid = await member(env, "a", sh(2026, 11, 1))
    # an upgrade recorded at 22:00 enqueues tier_upgrade at once
    await env.members.record_order(mid, "big", 300_000, sh(2026, 11, 25, 22), sh(2026, 11, 25, 22))
    res = await run_kind(env, "tier_upgrade", sh(2026, 11, 25, 22, 1))
    assert res.held["quiet"] == 1 and res.sent == 0 and not fake.to(ADD)
    res = await run_kind(env, "tier_upgrade", sh(2026, 11, 26, 8, 59))
    assert res.held["quiet"] == 1 and not fake.to(ADD)
    res = await run_kind(env, "tier_upgrade", sh(2026, 11, 26, 9, 0))
    assert res.sent == 1
    (call,) = fake.to(ADD)
    assert "恭喜您升级为银卡会员" in call.body["text"]["content"]


async def at_once_due(env, store, name: str):
    """A member due for birthday, points_expiry and dormant on DAY."""
    mid = await member(env, name, sh(2025, 12, 25, 13), order_fen=10_000,
                       paid_at=sh(2025, 12, 25, 12), birthday="1990-11-25")
    m = await store.get(mid)
    m.last_activity = ts(sh(2026, 10, 26, 20))  # 30 days before DAY
    await put(store, m, env, sh(2026, 10, 26, 20))
    return mid


@pytest.mark.parametrize("order", [["birthday", "points_expiry", "dormant"],
                                   ["dormant", "points_expiry", "birthday"]])
async def test_one_push_a_day_by_priority_whatever_order_jobs_run(store, make_env, fake,
                                                                  order):
    env = await make_env(store)
    mid = await at_once_due(env, store, "a")
    results = {k: await run(env, k, DAY) for k in order}
    assert [results[k].enqueued for k in ("points_expiry", "birthday", "dormant")] == [1, 0, 0]
    assert results["birthday"].skipped["cap"] == results["dormant"].skipped["cap"] == 1
    assert [r.kind for r in await store.outbox() if r.kind != "wecom_tag"] == ["points_expiry"]
    assert sum(fake.delivered().values()) == 1
    m = await store.get(mid)
    assert m.push_days == {"2026-11-25": "points_expiry"}
    assert [c.template for c in m.coupons].count("birthday") == 1  # the gift still comes
    caps = await store.ledger(member_id=mid, kinds=["push_skip"])
    assert sorted(r.data["kind"] for r in caps) == ["birthday", "dormant"]


async def test_the_daily_cap_is_the_rules_number(store, make_env, fake, rules):
    import dataclasses

    env = await make_env(store)
    env.rules = dataclasses.replace(rules, push={**rules.push, "daily_cap": 2})
    env.members.rules = env.rules
    await at_once_due(env, store, "a")
    got = {k: (await run(env, k, DAY)).enqueued for k in ("birthday", "points_expiry",
                                                          "dormant")}
    assert got == {"birthday": 1, "points_expiry": 1, "dormant": 0}


async def test_opted_out_members_get_nothing(store, make_env, fake):
    env = await make_env(store)
    await member(env, "out", sh(2025, 12, 1), order_fen=10_000, paid_at=sh(2025, 12, 25),
                 opted_out=True)
    stays = await member(env, "in", sh(2025, 12, 1), order_fen=10_000,
                         paid_at=sh(2025, 12, 25))
    res = await run_kind(env, "points_expiry", sh(2026, 11, 25, 21, 30))  # held: quiet
    assert res.skipped["opt_out"] == 1 and res.enqueued == 1
    await env.members.set_opt_out(stays, True, sh(2026, 11, 25, 22))  # 退订 before delivery
    res = await deliver(env, sh(2026, 11, 26, 9))
    assert res.skipped["opt_out"] == 1 and res.sent == 0 and not fake.to(ADD)


async def test_members_without_wecom_fall_back_to_oa_template_or_are_unreachable(
        store, make_env, fake):
    env = await make_env(store, oa=True)
    await member(env, "w", sh(2025, 12, 1), order_fen=10_000, paid_at=sh(2025, 12, 25))
    await member(env, "o", sh(2025, 12, 1), staff=None, order_fen=10_000,
                 paid_at=sh(2025, 12, 25))
    gone = await member(env, "x", sh(2025, 12, 1), staff=None, order_fen=10_000,
                        paid_at=sh(2025, 12, 25))
    await env.members.unfollow(gone, sh(2026, 1, 1))  # not a follower: no template message
    res = await run(env, "points_expiry", DAY)
    assert res.sent == 2 and res.unreachable == 1
    (tpl,) = fake.to("/cgi-bin/message/template/send")
    assert tpl.body["touser"] == "o-o" and tpl.body["template_id"] == "TPL1"
    assert "积分将于 2026-12-25 到期" in tpl.body["data"]["content"]["value"]
    no_oa = await make_env(store)  # no template id configured: counted unreachable
    await member(no_oa, "p", sh(2025, 12, 1), staff=None, order_fen=10_000,
                 paid_at=sh(2025, 12, 25))
    assert (await run(no_oa, "points_expiry", DAY)).unreachable == 1


async def test_one_call_per_staff_and_text_with_at_most_the_recipient_limit(
        store, make_env, fake, monkeypatch):
    import bot.jobs.outbox as outbox

    monkeypatch.setattr(outbox, "MAX_RECIPIENTS", 2)
    env = await make_env(store)
    for i in range(5):  # same staff, same text (the dormant message is not personal)
        await member(env, f"d{i}", sh(2026, 10, 26, 8), staff="staffA")
    await member(env, "e", sh(2026, 10, 26, 8), staff="staffB")
    res = await run(env, "dormant", DAY)
    assert res.sent == 6
    sizes = sorted((c.body["sender"], len(c.body["external_userid"])) for c in fake.to(ADD))
    assert sizes == [("staffA", 1), ("staffA", 2), ("staffA", 2), ("staffB", 1)]
    assert all(c.body["chat_type"] == "single" for c in fake.to(ADD))


def snapshot(path) -> dict:
    db = sqlite3.connect(path)
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("members", "idem", "uniques", "idx", "ledger", "outbox", "stock",
                          "stock_log", "kv")}
    finally:
        db.close()


@pytest.mark.parametrize("kind", ["points_expiry", "birthday", "wakeup", "member_day",
                                  "dormant", "demotion_warning", "housekeeping",
                                  "tier_upgrade", "outbox"])
async def test_a_dry_run_sends_nothing_and_changes_nothing(store, make_env, fake, tmp_path,
                                                           kind):
    env = await make_env(store)
    await at_once_due(env, store, "a")
    up = await member(env, "u", sh(2026, 11, 1))
    await env.members.record_order(up, "up", 300_000, sh(2026, 11, 25, 8), sh(2026, 11, 25, 8))
    await member(env, "b", sh(2026, 8, 27), order_fen=20_000)  # wakeup on DAY
    await member(env, "c", sh(2026, 11, 1), order_fen=1_500_000)  # member day
    g = await store.get(await member(env, "g", sh(2026, 1, 1)))
    g.tier, g.grace_until = "gold", ts(sh(2026, 12, 25, 3))  # warned 30 days ahead, on DAY
    await put(store, g, env, sh(2026, 11, 1))
    fake.calls.clear()
    before = snapshot(tmp_path / "m.db")
    day = date(2026, 11, 15) if kind == "member_day" else DAY
    res = await run(env, kind, day, dry_run=True)
    assert res.due >= 1 and res.dry_run
    assert snapshot(tmp_path / "m.db") == before
    assert fake.calls == []
    assert "dry run" in res.lines()[0]


@pytest.mark.parametrize("deliver_at, sent, stale", [
    (sh(2026, 11, 26, 9, 0), 3, 0),   # held one night: still delivered
    (sh(2026, 11, 27, 10, 0), 0, 3),  # held for days: no longer true, skipped
])
async def test_a_push_held_too_long_is_skipped_as_stale(store, make_env, fake, deliver_at,
                                                        sent, stale):
    from bot.keys import OUTBOX_PAUSED as PAUSE_KEY

    env = await make_env(store)
    await due_members(env, 3)
    await env.store.kv_set(PAUSE_KEY, str(env.wall() + 3600))  # WeCom paused: rows held
    res = await run(env, "points_expiry", DAY)
    assert res.sent == 0 and not fake.to(ADD)
    await env.store.kv_delete(PAUSE_KEY)
    res = await deliver(env, deliver_at)
    assert (res.sent, res.skipped["stale"]) == (sent, stale)
    assert len(fake.to(ADD)) == sent  # personal texts (points, dates): one call each
