"""Fault tests (``make faults``): bounded, loopback only, their own servers and databases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import REDIS_URL
from tests.pg import pg_database


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def store_url(request, tmp_path) -> Iterator[str]:
    yield from _store(request.param, tmp_path)


@pytest.fixture(params=["redis", "postgresql"])
def shared_url(request, tmp_path) -> Iterator[str]:
    """A store several processes share (``--workers``: SQLite is refused)."""
    yield from _store(request.param, tmp_path)


def _store(kind: str, tmp_path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/fault.db"
    elif kind == "redis":
        import redis.asyncio as aioredis

        async def flush() -> None:
            r = aioredis.from_url(REDIS_URL)
            await r.flushdb()
            await r.aclose()

        asyncio.run(flush())
        yield REDIS_URL
    else:
        with pg_database("faults_") as url:
            yield url

