"""What every backend needs the same way: index values flattened into integer and text
terms, and unique values as stored (a phone number only as its keyed hash). A backend uses
these instead of another backend's private helpers; and the turns writers of one member take
within a process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol


class Hasher(Protocol):
    """What the helpers need of :class:`storage.codec.Codec`."""

    def lookup_hash(self, value: str) -> str: ...

    def lookup_hashes(self, value: str) -> list[str]: ...


def index_terms(value: Any) -> tuple[int | None, set[str]]:
    """An index value as (integer or None, text tags): integers are range-queryable, texts
    and lists of texts are equality tags, ``None`` is "not in this index"."""
    if value is None:
        return None, set()
    if isinstance(value, bool | int):
        return int(value), set()
    if isinstance(value, str):
        return None, {value}
    return None, {str(v) for v in value}


def index_rows(name: str, value: Any) -> list[tuple[str, int | None, str | None]]:
    """An index value as table rows ``(name, num, tag)`` (SQL backends)."""
    num, tags = index_terms(value)
    if num is not None:
        return [(name, num, None)]
    return [(name, None, t) for t in sorted(tags)]


def unique_value(codec: Hasher, kind: str, value: str) -> str:
    """A unique as stored: a phone number only as its keyed hash, never in clear."""
    return codec.lookup_hash(value) if kind == "phone" else value


def unique_values(codec: Hasher, kind: str, value: str) -> list[str]:
    """What a look-up tries: a phone's hash under each data key (during a key rotation)."""
    return codec.lookup_hashes(value) if kind == "phone" else [value]


class MemberTurns:
    """Writers of one member take turns within this process, so a burst on one member costs
    N commits, not N^2 attempts: only other processes can cause version conflicts. A lock
    lives only while someone waits for it."""

    def __init__(self) -> None:
        self._turns: dict[str, list[Any]] = {}  # member id -> [lock, callers]

    @asynccontextmanager
    async def turn(self, member_id: str) -> AsyncIterator[None]:
        turn = self._turns.get(member_id)
        if turn is None:
            turn = self._turns[member_id] = [asyncio.Lock(), 0]
        turn[1] += 1
        try:
            async with turn[0]:
                yield
        finally:
            turn[1] -= 1
            if not turn[1]:
                del self._turns[member_id]


class Batcher:
    """Calls waiting at the same moment share one round trip: ``await b.call(item)`` queues
    the item, and ``run(items)`` (one statement, one pipeline) answers every item waiting
    when it starts, in order, with a result or an exception. At most ``inflight`` runs at
    once; what arrives meanwhile waits for the next run (a group commit under load, one item
    per run when idle). A caller hears only its own item's outcome."""

    def __init__(self, run: Callable[[list[Any]], Awaitable[list[Any]]], *,
                 inflight: int = 2, most: int = 256) -> None:
        self._run = run
        self._inflight = inflight
        self._most = most
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()
        self._scheduled = False

    async def call(self, item: Any) -> Any:
        return await self.submit(item)

    def submit(self, item: Any) -> asyncio.Future:
        """Queue ``item``; its future holds the outcome (await it, or leave it to run)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((item, fut))
        if not self._scheduled:  # after the callers woken with this one have queued theirs
            self._scheduled = True
            loop.call_soon(self._start)
        return fut

    def _start(self) -> None:
        self._scheduled = False
        while self._pending and len(self._tasks) < self._inflight:
            batch, self._pending = self._pending[:self._most], self._pending[self._most:]
            task = asyncio.get_running_loop().create_task(self._one(batch))
            self._tasks.add(task)

    async def _one(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except BaseException as e:  # the round trip failed: every caller in it hears it
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            if not isinstance(e, Exception):
                raise
        else:
            for (_, fut), r in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(r, BaseException):
                    fut.set_exception(r)
                else:
                    fut.set_result(r)
        finally:
            self._tasks.discard(asyncio.current_task())
            if self._pending:
                self._start()

    async def drain(self) -> None:
        """Wait until everything queued has run (before closing the connection it uses)."""
        while self._tasks or self._pending:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:  # queued this turn: its run starts on the next
                await asyncio.sleep(0)
