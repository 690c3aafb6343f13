"""What every backend needs the same way: index values flattened into integer and text
terms, and unique values as stored (a phone number only as its keyed hash). A backend uses
these instead of another backend's private helpers; and the turns writers of one member take
within a process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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
