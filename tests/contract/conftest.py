"""One store fixture for every backend: the contract suite runs unchanged on each.

Redis tests talk to a real server (``REDIS_URL``, default db 15, flushed before each test); a
missing Redis fails them, it never skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage import Store, StoreError, open_store
from tests.pg import pg_database
from tests.redis_cluster import redis_cluster

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def pg_url():
    """A PostgreSQL database of this test session, created here and dropped after."""
    with pg_database() as url:
        yield url


@pytest.fixture(scope="session")
def cluster_url():
    """A real 3-master Redis Cluster for this test session, stopped after."""
    with redis_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "redis", "redis-cluster", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path):
    key = os.urandom(32)
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path}/t.db", key)
        await s.open()
    elif request.param == "redis-cluster":
        s = open_store(request.getfixturevalue("cluster_url"), key)
        await s.open()
        await s.client.flushdb()
    elif request.param == "postgresql":
        s = open_store(request.getfixturevalue("pg_url"), key)
        await s.open()
        await s.truncate()
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
    if store.kind == "postgresql":
        from storage.postgres_schema import TABLES

        rows = []
        for t in TABLES:  # every row as PostgreSQL prints it (bytea as \x hex, so decode it)
            for r in await store.pool.fetch(f"SELECT {t}::text AS t, * FROM {t}"):
                rows.append(r["t"].encode())
                rows += [v for v in r.values() if isinstance(v, bytes)]
        return b"\n".join(rows)
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
