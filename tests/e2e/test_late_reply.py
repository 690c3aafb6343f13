"""The late-reply module on its own: answer within the budget, else ``success`` now and one
customer-service message later, once across copies, processes and retries; rate limits are
retried, other refusals are not. A real store, the fake OA API on a local port."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bot import keys
from bot.channels.wechat import WeChatClient
from bot.handlers.late import LateReplies, Recomputed
from bot.members import Members
from storage import open_store

from .conftest import oa_settings

SEND = "/cgi-bin/message/custom/send"


@pytest.fixture
async def members(tmp_path, rules):
    store = open_store(f"sqlite:///{tmp_path}/late.db", b"k" * 32)
    await store.open()
    yield Members(store, rules)
    await store.close()


@pytest.fixture
async def late(members, fake_api, tmp_path):
    async with aiohttp.ClientSession() as session:
        client = WeChatClient(members.store, oa_settings(tmp_path, fake_api), session)
        tasks: set[asyncio.Task] = set()

        def spawn(coro):
            t = asyncio.create_task(coro)
            tasks.add(t)
            return t

        lr = LateReplies(members, lambda: client, spawn)
        lr.budget, lr.retry_delays = 0.2, (0.01, 0.01)
        lr.tasks = tasks
        yield lr
        await asyncio.gather(*tasks, return_exceptions=True)


def slow(text: str | None, seconds: float, calls: list | None = None):
    async def compute():
        if calls is not None:
            calls.append(1)
        await asyncio.sleep(seconds)
        return text
    return compute


async def test_a_reply_ready_in_time_is_the_answer_and_nothing_is_sent(late, fake_api):
    assert await late.answer("k1", "o1", slow("hi", 0)) == "hi"
    await asyncio.sleep(0.05)
    assert fake_api.to(SEND) == []


async def test_a_slow_reply_is_success_now_and_one_message_later_for_all_copies(
        late, fake_api):
    calls: list = []
    copies = await asyncio.gather(*(late.answer("k2", "o2", slow("late hi", 0.4, calls))
                                    for _ in range(3)))
    assert copies == [None, None, None] and len(calls) == 1  # one computation
    [sent] = await fake_api.wait_for(SEND)
    assert sent.body["touser"] == "o2" and sent.body["text"]["content"] == "late hi"
    await asyncio.gather(*late.tasks)
    assert len(fake_api.to(SEND)) == 1
    assert await late.stored("k2", "late hi") is None  # a later retry: no second copy


async def test_a_message_another_process_marked_late_is_not_sent_here(late, members,
                                                                      fake_api):
    await members.cache(keys.late_reply("k3"), "1", 60, only_new=True)
    assert await late.answer("k3", "o3", slow("x", 0.4)) is None
    await asyncio.gather(*late.tasks)
    assert fake_api.to(SEND) == []
    assert await late.stored("k3", "x") is None  # a retry gets no second copy either
    assert await late.stored("k4", "kept") == "kept" and await late.stored("k4", "") is None


async def test_a_recomputed_reply_of_a_message_sent_late_is_not_answered_again(late,
                                                                               fake_api):
    assert await late.answer("k5", "o5", slow(Recomputed("r"), 0.4)) is None
    await fake_api.wait_for(SEND)
    assert await late.answer("k5", "o5", slow(Recomputed("r"), 0)) is None


async def test_a_rate_limit_is_retried_and_another_refusal_is_not(late, fake_api):
    fake_api.fail_next(45009)
    assert await late.answer("k6", "o6", slow("tried", 0.3)) is None
    sends = await fake_api.wait_for(SEND, 2)
    assert [s.body["text"]["content"] for s in sends] == ["tried", "tried"]
    fake_api.fail_next(40003)  # invalid openid: retrying cannot help
    assert await late.answer("k7", "o7", slow("once", 0.3)) is None
    await asyncio.gather(*late.tasks)
    assert len(fake_api.to(SEND)) == 3
