"""Learning a follower's ``unionid`` from the OA API (PRODUCT.md 2.1): on subscribe, and
lazily later when the API was not reachable then."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine

from .. import keys
from ..channels.wechat import WeChatClient
from ..context import Context

log = logging.getLogger("memberbot.oa")


class UnionIds:
    timeout = 1.5  # on subscribe: the welcome reply must not wait long for user/info

    def __init__(self, ctx: Context, spawn: Callable[[Coroutine], object]) -> None:
        self.ctx = ctx
        self.spawn = spawn
        self._checked: set[str] = set()  # members whose unionid need not be looked up here

    @property
    def client(self) -> WeChatClient | None:
        return self.ctx.oa

    async def on_subscribe(self, openid: str,
                           member_id: str | None) -> tuple[bool, str | None]:
        """``user/info`` when the API is configured: (answered, unionid). Unreachable →
        (False, None): register without it, learn it later."""
        if self.client is None:
            return False, None
        if member_id is not None:
            m = await self.ctx.members.get(member_id)
            if m is not None and m.unionid:
                return True, None
        try:
            info = await asyncio.wait_for(self.client.user_info(openid), self.timeout)
        except Exception as e:
            log.warning("user/info unavailable on subscribe (%s); unionid learnt later",
                        type(e).__name__)
            return False, None
        return True, info.get("unionid") or None

    def answered(self, member_id: str) -> None:
        """user/info answered for this member: nothing more to learn later."""
        self._mark(member_id)

    def later(self, member_id: str, openid: str) -> None:
        """On any other message: try again, in the background, at most once a day."""
        if member_id not in self._checked and self.client is not None:
            self._mark(member_id)
            self.spawn(self._learn(member_id, openid))

    def _mark(self, member_id: str) -> None:
        if len(self._checked) > 100_000:
            self._checked.clear()
        self._checked.add(member_id)

    async def _learn(self, member_id: str, openid: str) -> None:
        members = self.ctx.members
        try:
            m = await self.ctx.members.get(member_id)
            if m is None or m.unionid:
                return
            mark = keys.unionid_try(member_id)
            if await members.cached(mark) or not await members.cache(mark, "1", 86400,
                                                                     only_new=True):
                return
            info = await asyncio.wait_for(self.client.user_info(openid), 10)
            if info.get("unionid"):
                await self.ctx.members.register(openid, self.ctx.now(), unionid=info["unionid"])
        except Exception as e:
            log.info("unionid for member %s not learnt: %s", member_id, type(e).__name__)
