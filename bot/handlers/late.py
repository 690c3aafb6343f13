"""The 4-second late reply of the Official Account (ARCHITECTURE.md, callback path).

WeChat waits 5 s for a callback's answer and retries up to three times. A reply ready within
``budget`` is the answer; one that is not is answered ``success`` and sent when ready as a
customer-service message, once: copies of the message in this process share one computation,
and a mark in the store (``keys.late_reply``, taken once) keeps other processes and later
retries from answering or sending it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from .. import keys
from ..channels.wechat import RATE_LIMITED, WeChatAPIError, WeChatClient
from ..members import Members

log = logging.getLogger("memberbot.oa")

MARK_SECONDS = 3 * 86400  # longer than WeChat retries a message


class Recomputed(str):
    """A reply computed again for each copy of a message rather than stored."""


class LateReplies:
    budget = 4.0  # seconds; WeChat gives up after 5
    retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0)  # on 45009 and network errors

    def __init__(self, members: Members, client: Callable[[], WeChatClient | None],
                 spawn: Callable[[Coroutine], Any]) -> None:
        self.members = members
        self.client = client
        self.spawn = spawn
        self._inflight: dict[str, asyncio.Task] = {}
        self._late: set[str] = set()
        self._sent: set[str] = set()

    async def answer(self, key: str, openid: str,
                     compute: Callable[[], Coroutine[Any, Any, str | None]]) -> str | None:
        """The reply if ready within ``budget``; else None (answer ``success``), and it is
        sent to ``openid`` when ready. Copies of one message (``key``) share one
        ``compute``."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(compute())
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        if not task.done():
            await self._wait(task)
        if key in self._late:
            return None  # a copy already answered "success": the reply goes out as a message
        if task.done():
            text = task.result()
            if isinstance(text, Recomputed) and key in self._sent:
                return None  # a retry of a message whose reply went out late
            return text
        self._late.add(key)
        self.spawn(self._deliver(key, openid, task))
        return None

    async def stored(self, key: str, stored: str | None) -> str | None:
        """A retry's stored reply, unless a copy was answered ``success`` and it went out
        late (in any process)."""
        if not stored:
            return None
        if await self.members.cached(keys.late_reply(key)):
            return None  # already sent as a customer-service message
        return stored

    async def _wait(self, task: asyncio.Task) -> None:
        """Until ``task`` is done or the budget is spent (asyncio.wait, without its sets)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def wake(_: object = None) -> None:
            if not waiter.done():
                waiter.set_result(None)

        task.add_done_callback(wake)
        timer = loop.call_later(self.budget, wake)
        try:
            await waiter
        finally:
            timer.cancel()
            task.remove_done_callback(wake)

    async def _deliver(self, key: str, openid: str, task: asyncio.Task) -> None:
        try:
            try:
                if not await self.members.cache(keys.late_reply(key), "1", MARK_SECONDS,
                                                only_new=True):
                    return  # another process answered "success" first and delivers it
            except Exception as e:
                log.warning("late reply mark not stored (%s); delivering anyway", e)
            text = await task
            if text:
                if len(self._sent) > 100_000:
                    self._sent.clear()
                self._sent.add(key)
                await self._send(openid, text)
        finally:
            self._late.discard(key)

    async def _send(self, openid: str, text: str) -> None:
        client = self.client()
        if client is None or not client.configured:
            log.warning("a late reply was dropped: WECHAT_APPID/WECHAT_APPSECRET not set")
            return
        for delay in (0.0, *self.retry_delays):
            if delay:
                await asyncio.sleep(delay)
            try:
                await client.send_text(openid, str(text))
                return
            except WeChatAPIError as e:
                if e.errcode not in RATE_LIMITED:
                    log.error("late reply not delivered: %s", e)
                    return
                log.warning("late reply rate limited (%s); retrying", e.errcode)
            except (TimeoutError, aiohttp.ClientError) as e:
                log.warning("late reply: API unreachable (%s); retrying", e)
        log.error("late reply not delivered after %d tries", len(self.retry_delays) + 1)
