"""An access token shared by every process through the store and refreshed once.

WeChat and WeCom both invalidate the previous token when a new one is fetched, so several
processes must not race to refresh: one takes a short lock in the store, the others wait for
the token it writes. A token the API refused (``stale``) is replaced unless another process
has replaced it already.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

from storage import Store

from .. import keys

# fetch() -> (token, expires_in seconds); raises the platform's error when refused
Fetch = Callable[[], Awaitable[tuple[str, int]]]


class SharedToken:
    lock_seconds = 10.0
    wait_step = 0.05

    def __init__(self, store: Store, key: str) -> None:
        self.store = store
        self.key = key
        self.lock_key = keys.token_lock(key)
        self.refreshes = 0

    async def get(self, fetch: Fetch, *, stale: str | None = None) -> str:
        cached = await self.store.kv_get(self.key)
        if cached and cached != stale:
            return cached
        owner = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lock_seconds
        while not await self.store.kv_set(self.lock_key, owner, ttl=self.lock_seconds,
                                          only_new=True):
            await asyncio.sleep(self.wait_step)  # another process is refreshing: wait for it
            cur = await self.store.kv_get(self.key)
            if cur and cur != stale:
                return cur
            if loop.time() > deadline:  # the holder died; its lock has expired by now
                break
        try:
            cur = await self.store.kv_get(self.key)
            if cur and cur != stale:
                return cur
            token, expires_in = await fetch()
            # five minutes early, so a token is never used in its last moments
            await self.store.kv_set(self.key, token, ttl=max(expires_in - 300, 60))
            self.refreshes += 1
            return token
        finally:
            await self.store.kv_delete(self.lock_key, expect=owner)
