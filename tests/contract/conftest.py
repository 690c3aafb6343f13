"""One store fixture for every backend: the contract suite runs unchanged on each.

Redis tests talk to a real server (``REDIS_URL``, default db 15, flushed before each test); a
missing Redis fails them, it never skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage import Store, StoreError, open_store

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path):
    key = os.urandom(32)
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path}/t.db", key)
        await s.open()
    else:
        s = open_store(REDIS_URL, key)
        try:
            await s.open()
        except StoreError as e:
            pytest.fail(f"the Redis contract tests need a Redis server at {REDIS_URL} "
                        f"(set REDIS_URL): {e}", pytrace=False)
        await s.client.flushdb()
    try:
        yield s
    finally:
        await s.close()


async def raw_bytes(store: Store) -> bytes:
    """Everything the backend has persisted, as raw bytes, to check what is (not) in clear."""
    if store.kind == "sqlite":
        files = [Path(store.path + suffix) for suffix in ("", "-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    r = store.client
    out: list[bytes] = []
    async for k in r.scan_iter(count=1000):
        out.append(k)
        t = (await r.type(k)).decode()
        if t == "string":
            out.append(await r.get(k))
        elif t == "hash":
            for field, value in (await r.hgetall(k)).items():
                out += [field, value]
        elif t == "list":
            out += await r.lrange(k, 0, -1)
        elif t == "set":
            out += list(await r.smembers(k))
        elif t == "zset":
            out += await r.zrange(k, 0, -1)
        else:
            raise AssertionError(f"unexpected Redis type {t} for {k!r}")
    return b"\n".join(out)


@pytest.fixture
def raw(store: Store):
    """``await raw()``: the store's persisted bytes right now."""
    return lambda: raw_bytes(store)
