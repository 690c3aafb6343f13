"""Store benchmark: check-ins per second from 10,000 distinct members, and the p99 of one update.

Runs the same workload on every backend in one run, from 1 and from 2 processes (SQLite, one
writer, from 1 only):

    .venv/bin/python bench/store_bench.py [--members 10000] [--concurrency 16]
        [--backends sqlite,postgresql,redis,redis-cluster] [--processes 1,2] [--pg-lock]

Each check-in is the real use case (``Members.check_in``: load, normalise, credit a lot,
derive indexes, commit aggregate + ledger + indexes + idempotency key). Members are created
up front with one update each (not timed). Redis uses ``REDIS_URL`` (default db 15, flushed);
PostgreSQL a database created for the run through ``PG_ADMIN_URL`` (prefix ``PG_TEST_PREFIX``)
and dropped after; Redis Cluster a 3-master cluster started for the run from ``redis-server``
(``CLUSTER_PORTS`` to pin its ports). ``--pg-lock`` adds a PostgreSQL row measured with
``SELECT … FOR UPDATE`` in a transaction instead of the optimistic version check.
Numbers are for comparison on one machine in one run, not constants.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.members import Members  # noqa: E402
from bot.rules import Change, Member, load_rules  # noqa: E402
from bot.rules.indexes import derive  # noqa: E402
from storage import open_store  # noqa: E402
from storage.postgres import PostgresStore  # noqa: E402
from tests.pg import pg_database  # noqa: E402
from tests.redis_cluster import redis_cluster  # noqa: E402

RULES = load_rules()
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=RULES.tz)


async def fill(store, n: int) -> list[str]:
    ids = [f"b{i:07d}" for i in range(n)]

    def create(mid: str):
        def step(_m):
            m = Member(id=mid, member_code=f"9{int(mid[1:]):011d}", joined_at=int(NOW.timestamp()))
            return Change(m, None, [], [], derive(m, NOW.date(), RULES))
        return step

    sem = asyncio.Semaphore(64)

    async def one(mid: str) -> None:
        async with sem:
            await store.update(mid, create(mid))

    await asyncio.gather(*(one(mid) for mid in ids))
    return ids


class LockingPostgres(PostgresStore):
    """The alternative measured by ``--pg-lock``: the member row locked (SELECT … FOR UPDATE)
    in a transaction around the step, instead of the optimistic version check."""

    async def _update(self, member_id, step, key):
        from storage.codec import loads
        from storage.postgres import COMMIT_SQL

        while True:
            async with self.pool.acquire() as c, c.transaction():
                if key is not None:
                    r = await c.fetchval("SELECT result FROM idem WHERE member_id=$1 AND key=$2",
                                         member_id, key)
                    if r is not None:
                        return loads(r)
                row = await c.fetchrow("SELECT version, data, idx FROM members WHERE id=$1 "
                                       "FOR UPDATE", member_id)
                version = row["version"] if row else 0
                change = step(None if row is None else self.codec.decode(row["data"], version))
                res = await c.fetchval(COMMIT_SQL, *self._commit_args(
                    member_id, key, version, row["idx"] if row else None, change))
                if res == 0:
                    self.commits += 1
                    return change.result


def opened(url: str, lock: bool = False):
    if lock:
        return LockingPostgres(url, __import__("storage").Codec(os.urandom(32)))
    return open_store(url, os.urandom(32))


async def check_ins(url: str, ids: list[str], conc: int, lock: bool = False) -> list[float]:
    """Check every member in ``ids`` in once, ``conc`` at a time; the latency of each."""
    store = opened(url, lock)
    await store.open()
    try:
        members = Members(store, RULES)
        lat: list[float] = []
        queue = iter(ids)

        async def worker() -> None:
            for mid in queue:
                t = time.perf_counter()
                await members.check_in(mid, NOW)
                lat.append(time.perf_counter() - t)

        await asyncio.gather(*(worker() for _ in range(conc)))
        return lat
    finally:
        await store.close()


def _child(url: str, ids: list[str], conc: int, lock: bool, out: mp.Queue) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.put(asyncio.run(check_ins(url, ids, conc, lock)))


async def empty(store) -> None:
    if store.kind.startswith("redis"):
        await store.client.flushdb()
    elif store.kind == "postgresql":
        await store.truncate()


async def run_backend(name: str, url: str, n: int, conc: int, procs: int,
                      lock: bool = False) -> dict:
    store = open_store(url, os.urandom(32))
    await store.open()
    await empty(store)
    try:
        ids = await fill(store, n)
        t0 = time.perf_counter()
        if procs == 1:
            lat = await check_ins(url, ids, conc, lock)
        else:  # several processes sharing the store, as `memberbot serve --workers N` would
            q: mp.Queue = mp.Queue()
            ps = [mp.Process(target=_child, args=(url, ids[i::procs], conc, lock, q))
                  for i in range(procs)]
            for p in ps:
                p.start()
            lat = [x for _ in ps for x in q.get()]
            for p in ps:
                p.join()
        wall = time.perf_counter() - t0
        for mid in (ids[0], ids[-1]):  # every member credited exactly once
            m = await store.get(mid)
            assert m.checkin_total == 1, "benchmark workload did not commit"
        lat.sort()
        return {"backend": name, "procs": procs, "updates": len(lat), "per_s": len(lat) / wall,
                "p50_ms": statistics.median(lat) * 1e3,
                "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1e3}
    finally:
        await empty(store)
        await store.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--backends", default="sqlite,postgresql,redis,redis-cluster")
    ap.add_argument("--processes", default="1,2",
                    help="process counts to run each shared backend from")
    ap.add_argument("--pg-lock", action="store_true",
                    help="also measure PostgreSQL with SELECT … FOR UPDATE")
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    counts = [int(x) for x in a.processes.split(",")]
    names = a.backends.split(",")
    results = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        urls = {"sqlite": f"sqlite:///{tmp}/bench.db",
                "redis": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")}
        if "postgresql" in names:
            urls["postgresql"] = stack.enter_context(pg_database("bench"))
        if "redis-cluster" in names:
            urls["redis-cluster"] = stack.enter_context(redis_cluster())
        for name in names:
            for procs in ([1] if name == "sqlite" else counts):
                r = await run_backend(name, urls[name], a.members, a.concurrency, procs)
                results.append(r)
                if name == "postgresql" and a.pg_lock:
                    r = await run_backend(name, urls[name], a.members, a.concurrency, procs,
                                          lock=True)
                    results.append({**r, "backend": "postgresql FOR UPDATE"})
    print(f"check-ins of {a.members} distinct members, {a.concurrency} concurrent per process")
    print(f"{'backend':<22} {'processes':>9} {'updates/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(f"{r['backend']:<22} {r['procs']:>9} {r['per_s']:>10.0f} {r['p50_ms']:>8.2f} "
              f"{r['p99_ms']:>8.2f}")
    print("targets: sqlite >= 3000/s with p99 <= 5 ms; redis >= 5000/s; postgresql >= 3000/s "
          "with p99 <= 10 ms; redis-cluster from 2 processes >= redis in this run")
    got = {(r["backend"], r["procs"]): r["per_s"] for r in results}
    if ("redis-cluster", 2) in got:
        c2 = got["redis-cluster", 2]
        for procs in (1, 2):
            if ("redis", procs) in got:
                r = got["redis", procs]
                print(f"redis-cluster from 2 processes: {c2:.0f}/s vs redis from {procs}: "
                      f"{r:.0f}/s = {c2 / r:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
