"""Retries, the 5-second budget, API token expiry and store failures, end to end."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bot.rules import load_rules
from storage import StoreUnavailable, open_store
from tests.conftest import REDIS_URL

from .conftest import oa_settings
from .wechat_client import event_xml, text_xml


async def credits(bot, openid: str) -> list:
    return await bot.ledger(openid, ["credit"])


async def test_three_concurrent_retries_one_credit_three_identical_replies(bot):
    await bot.wx.follow("o_r")
    xml = text_xml("o_r", "签到")
    replies = await asyncio.gather(*(bot.wx.post(xml, "o_r") for _ in range(3)))
    assert len({r.content for r in replies}) == 1 and "签到成功" in replies[0].content
    later = await bot.wx.post(xml, "o_r")  # a retry after the first answer
    assert later.content == replies[0].content
    assert len(await credits(bot, "o_r")) == 1


async def test_concurrent_event_retries_register_once(bot):
    xml = event_xml("o_new", "subscribe", create_time=1764000000)
    replies = await asyncio.gather(*(bot.wx.post(xml, "o_new") for _ in range(3)))
    assert len({r.content for r in replies}) == 1 and "欢迎" in replies[0].content
    assert await bot.store.count_members() == 1
    assert len((await bot.member("o_new")).coupons) == 1


async def test_exchange_retried_issues_one_coupon(bot, clock):
    await bot.wx.follow("o_x")
    m = await bot.member("o_x")
    await bot.ctx.members.record_order(m.id, "ord-x", 200000, clock(), clock())
    xml = text_xml("o_x", "兑换 1")
    replies = await asyncio.gather(*(bot.wx.post(xml, "o_x") for _ in range(3)))
    assert len({r.content for r in replies}) == 1 and "兑换成功" in replies[0].content
    m = await bot.member("o_x")
    assert [c.template for c in m.coupons].count("points_500") == 1


async def retries_across_processes(make_bot, settings_over: dict) -> None:
    """Three servers on one store (as three processes would be), one copy each."""
    bots = [await make_bot(**settings_over) for _ in range(3)]
    await bots[0].wx.follow("o_multi")
    xml = text_xml("o_multi", "签到")
    replies = await asyncio.gather(*(b.wx.post(xml, "o_multi") for b in bots))
    assert len({r.content for r in replies}) == 1 and "签到成功" in replies[0].content
    assert len(await credits(bots[0], "o_multi")) == 1
    await bots[1].wx.text("o_multi", "手机 13800138000")
    bday = text_xml("o_multi", "生日 1990-05-20")
    replies = await asyncio.gather(*(b.wx.post(bday, "o_multi") for b in bots))
    assert len({r.content for r in replies}) == 1 and "获得 50 积分" in replies[0].content


async def test_retries_across_processes_on_sqlite(make_bot, tmp_path):
    await retries_across_processes(make_bot, {"store_url": f"sqlite:///{tmp_path}/shared.db"})


async def test_retries_across_processes_on_redis(make_bot, settings):
    store = open_store(REDIS_URL, settings.data_key)
    await store.open()
    try:
        await store.client.flushdb()
    finally:
        await store.close()
    await retries_across_processes(make_bot, {"store_url": REDIS_URL})


@pytest.fixture
def slow_checkin(bot):
    """Check-in takes longer than the (lowered) reply budget. The budget stays well above
    what any other step takes on a loaded machine (a follow must still answer in time)."""
    bot.oa.budget = 0.5
    bot.oa.late_retry_delays = (0.01, 0.01)
    original = bot.ctx.members.check_in

    async def slow(*a, **kw):
        await asyncio.sleep(2.0)
        return await original(*a, **kw)

    bot.ctx.members.check_in = slow
    follow = bot.wx.follow

    async def follow_in_time(*a, **kw):  # only the check-in is late, also on a busy machine
        bot.oa.budget = 4.0
        try:
            return await follow(*a, **kw)
        finally:
            bot.oa.budget = 0.05

    bot.wx.follow = follow_in_time
    return bot


async def test_slow_reply_is_success_then_a_customer_service_message(slow_checkin, fake_api):
    bot = slow_checkin
    await bot.wx.follow("o_slow")
    xml = text_xml("o_slow", "签到")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r = await bot.wx.post(xml, "o_slow")
    assert r.success and loop.time() - t0 < 1.5  # answered at the budget, not at the end
    [sent] = await fake_api.wait_for("/cgi-bin/message/custom/send")
    assert sent.body["touser"] == "o_slow" and sent.body["msgtype"] == "text"
    assert "签到成功" in sent.body["text"]["content"]
    retry = await bot.wx.post(xml, "o_slow")  # WeChat's retry after that: no second copy
    assert retry.success
    await asyncio.sleep(0.05)
    assert len(fake_api.to("/cgi-bin/message/custom/send")) == 1
    assert len(await credits(bot, "o_slow")) == 1


async def test_late_reply_survives_token_expiry_with_one_refresh(slow_checkin, fake_api):
    bot = slow_checkin
    await bot.wx.follow("o_tok")  # user/info fetched the first token
    assert fake_api.token_fetches == 1
    fake_api.fail_next(42001)
    assert (await bot.wx.text("o_tok", "签到")).success
    sends = await fake_api.wait_for("/cgi-bin/message/custom/send", 2)
    assert fake_api.token_fetches == 2  # refreshed exactly once
    assert sends[0].query["access_token"] != sends[1].query["access_token"]
    assert "签到成功" in sends[1].body["text"]["content"]


async def test_late_reply_backs_off_on_rate_limit(slow_checkin, fake_api):
    bot = slow_checkin
    await bot.wx.follow("o_45009")
    fake_api.fail_next(45009)
    assert (await bot.wx.text("o_45009", "签到")).success
    sends = await fake_api.wait_for("/cgi-bin/message/custom/send", 2)
    assert sends[1].body["text"]["content"] == sends[0].body["text"]["content"]
    assert fake_api.token_fetches == 1


async def test_store_failure_answers_busy_and_writes_nothing(bot, monkeypatch):
    await bot.wx.follow("o_s")
    before = await bot.ledger("o_s")

    async def down(*a, **kw):
        raise StoreUnavailable("Redis down")

    monkeypatch.setattr(bot.store, "update", down)
    r = await bot.wx.text("o_s", "签到")
    assert r.status == 200 and r.content == "系统繁忙，请稍后再试"
    monkeypatch.undo()
    assert await bot.ledger("o_s") == before
    assert "签到成功" in (await bot.wx.text("o_s", "签到")).content  # recovers by itself


async def test_a_bug_is_never_a_stack_trace(bot, monkeypatch):
    await bot.wx.follow("o_bug")

    async def broken(*a, **kw):
        raise RuntimeError("boom: secret internals")

    monkeypatch.setattr(bot.ctx.members, "get", broken)
    r = await bot.wx.text("o_bug", "积分")
    assert r.content == "系统繁忙，请稍后再试" and "boom" not in r.body


async def test_closed_store_answers_busy(make_bot, tmp_path, fake_api):
    bot = await make_bot(path=tmp_path)
    await bot.wx.follow("o_cl")
    await bot.store.close()
    r = await bot.wx.text("o_cl", "签到")
    assert r.status == 200 and r.content == "系统繁忙，请稍后再试"
    assert oa_settings(tmp_path, fake_api).wechat_appid  # the settings stay usable


async def test_rate_limit_is_shared_by_processes(make_bot, tmp_path):
    """Two servers on one store: the shared count stops a member who spreads commands."""
    rules = dataclasses.replace(load_rules(), rate_limit={"commands_per_minute": 4})
    shared = {"store_url": f"sqlite:///{tmp_path}/limit.db", "rules": rules}
    a, b = await make_bot(**shared), await make_bot(**shared)
    await a.wx.follow("o_spam")
    allowed = 0
    for i in range(12):
        r = await (a, b)[i % 2].wx.text("o_spam", "积分")
        allowed += "太频繁" not in r.content
        await asyncio.sleep(0.05)  # a person's pace: the background counts land in between
    assert 4 <= allowed <= 4 + 2  # the limit, plus at most limit/2 per extra process


async def test_a_retry_gets_the_first_reply_even_after_the_state_changed(bot):
    await bot.wx.follow("o_first")
    xml = text_xml("o_first", "积分")
    first = await bot.wx.post(xml, "o_first")
    assert "当前积分：0" in first.content
    await bot.wx.text("o_first", "签到")
    retry = await bot.wx.post(xml, "o_first")  # WeChat's retry of the first message
    assert retry.content == first.content
    assert "当前积分：5" in (await bot.wx.text("o_first", "积分")).content


async def test_unsubscribe_retries_are_applied_once(bot):
    await bot.wx.follow("o_u")
    xml = event_xml("o_u", "unsubscribe", create_time=1764000100)
    replies = await asyncio.gather(*(bot.wx.post(xml, "o_u") for _ in range(3)))
    assert all(r.success for r in replies)
    assert len(await bot.ledger("o_u", ["unfollow"])) == 1


async def test_copies_of_a_slow_message_all_get_success_and_one_late_reply(slow_checkin,
                                                                           fake_api):
    bot = slow_checkin
    await bot.wx.follow("o_copies")
    xml = text_xml("o_copies", "签到")
    first = asyncio.ensure_future(bot.wx.post(xml, "o_copies"))
    await asyncio.sleep(0.6)  # the first is past its budget, still working
    copies = await asyncio.gather(*(bot.wx.post(xml, "o_copies") for _ in range(2)))
    assert (await first).success and all(c.success for c in copies)
    await fake_api.wait_for("/cgi-bin/message/custom/send")
    await asyncio.sleep(0.1)
    assert len(fake_api.to("/cgi-bin/message/custom/send")) == 1
    assert len(await credits(bot, "o_copies")) == 1


async def test_a_retry_after_midnight_counts_for_the_day_the_member_sent_it(bot, clock):
    await bot.wx.follow("o_mid")
    tz = clock.t.tzinfo
    clock.t = clock.t.replace(hour=23, minute=59, second=58, tzinfo=tz)
    xml = text_xml("o_mid", "签到", create_time=int(clock.t.timestamp()))
    first = await bot.wx.post(xml, "o_mid")
    clock.advance(seconds=5)  # WeChat's retry lands on the next day
    again = await bot.wx.post(xml, "o_mid")
    assert first.content == again.content and "签到成功" in first.content
    assert len(await credits(bot, "o_mid")) == 1


async def test_an_invite_cut_off_between_its_two_sides_is_finished_by_a_retry(bot, monkeypatch):
    await bot.wx.follow("o_inviter")
    await bot.wx.follow("o_invitee")
    code = (await bot.member("o_inviter")).invite_code
    members = bot.ctx.members
    real = members.run
    calls = {"n": 0}

    async def flaky(member_id, now, body, *, key=None):
        if key and key.startswith("invite:") and member_id == (await bot.member("o_inviter")).id:
            calls["n"] += 1
            if calls["n"] == 1:
                raise StoreUnavailable("blip between the two sides")
        return await real(member_id, now, body, key=key)

    monkeypatch.setattr(members, "run", flaky)
    xml = text_xml("o_invitee", f"绑定 {code}")
    busy = await bot.wx.post(xml, "o_invitee")
    assert "系统繁忙" in busy.content
    await bot.wx.post(xml, "o_invitee")  # WeChat's retry of the same message
    assert sum(r.points for r in await bot.ledger("o_inviter", ["credit"])) == 50
    assert sum(r.points for r in await bot.ledger("o_invitee", ["credit"])) == 50
    assert (await bot.member("o_inviter")).invited_total == 1


async def test_any_message_counts_as_activity_once_a_day(bot, clock):
    await bot.wx.follow("o_act")
    clock.advance(days=20)
    await bot.wx.text("o_act", "积分")
    await bot.wx.text("o_act", "优惠券")
    m = await bot.member("o_act")
    assert m.last_activity == int(clock.t.timestamp())
    assert await bot.store.seen(m.id, f"activity:{m.id}:{clock.t.date()}") == (
        True, {"day": str(clock.t.date())})


async def test_a_store_locked_by_another_process_is_success_within_the_budget(bot, fake_api):
    """Another process (an import, a job) holds SQLite's write lock for longer than WeChat
    waits: the callback answers ``success`` at the budget, not when the lock is released (the
    nonce's write goes on), and the reply follows as a customer-service message."""
    import sqlite3
    import threading

    await bot.wx.follow("o_lock")
    bot.oa.budget = 0.3
    bot.oa.late_retry_delays = (0.01, 0.01)
    other = sqlite3.connect(bot.store.path, check_same_thread=False, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Event()
    threading.Timer(3.0, lambda: (other.execute("COMMIT"), released.set())).start()
    r = await bot.wx.post(text_xml("o_lock", "签到"), "o_lock")
    assert r.success and not released.is_set()  # answered while the lock was still held
    [sent] = await fake_api.wait_for("/cgi-bin/message/custom/send")
    assert "签到成功" in sent.body["text"]["content"]
    assert released.is_set() and len(await credits(bot, "o_lock")) == 1
    other.close()
