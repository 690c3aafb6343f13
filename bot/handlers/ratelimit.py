"""The per-member command limit of the Official Account (rules ``rate_limit``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine

from .. import keys
from ..members import Members

log = logging.getLogger("memberbot.oa")

WINDOW = 60.0


class CommandLimit:
    """``commands_per_minute`` per member, counted with ``Members.count`` (the store's shared
    ``incr_window``).

    Each process counts a member's commands in memory; past half the limit within the window,
    each command is also counted in the store, which all processes share, and that count
    decides: awaited once it is near the limit, beside the reply's work before that. So it is
    exact in one process, and quiet members (nearly all) cost no write on the hot path; a
    member whose commands reach P processes at once may get up to (P-1) x limit/2 more before
    the shared count stops them.
    """

    def __init__(self, members: Members, limit: int,
                 spawn: Callable[[Coroutine], object]) -> None:
        self.members = members
        self.limit = limit
        self.quiet = limit // 2
        self.spawn = spawn
        self._windows: dict[str, list] = {}  # member -> [here, window end, store's count]

    async def exceeded(self, member_id: str) -> bool:
        """Count one command; whether it is over the limit (then answer politely)."""
        now = time.monotonic()
        w = self._windows.get(member_id)
        if w is None or w[1] <= now:
            if len(self._windows) >= 200_000:
                self._windows = {m: v for m, v in self._windows.items() if v[1] > now}
            w = self._windows[member_id] = [0, now + WINDOW, 0]
        w[0] += 1
        if w[0] <= self.quiet:
            return False
        key = keys.chat_rate(member_id)
        own = w[0] - self.quiet  # what this process adds to the store's count, this included
        if max(w[2] + 1, own) + self.quiet < self.limit:
            self.spawn(self._count(key, w))
            return False
        n = await self.members.count(key, WINDOW)
        w[2] = max(w[2], n)
        return n + self.quiet > self.limit

    async def _count(self, key: str, w: list) -> None:
        try:
            n = await self.members.count(key, WINDOW)
        except Exception as e:
            log.warning("rate-limit count not stored: %s", e)
            return
        w[2] = max(w[2], n)
