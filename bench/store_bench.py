"""Store benchmark: check-ins per second from 10,000 distinct members, and the p99 of one update.

Runs the same workload on every backend in one run:

    .venv/bin/python bench/store_bench.py [--members 10000] [--concurrency 16] [--backends ...]

Each check-in is the real use case (``Members.check_in``: load, normalise, credit a lot,
derive indexes, commit aggregate + ledger + indexes + idempotency key). Members are created
up front with one update each (not timed). Redis uses ``REDIS_URL`` (default db 15, flushed).
Numbers are for comparison on one machine in one run, not constants.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def check_ins(url: str, ids: list[str], conc: int) -> list[float]:
    """Check every member in ``ids`` in once, ``conc`` at a time; the latency of each."""
    store = open_store(url, os.urandom(32))
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


def _child(url: str, ids: list[str], conc: int, out: mp.Queue) -> None:
    out.put(asyncio.run(check_ins(url, ids, conc)))


async def run_backend(name: str, url: str, n: int, conc: int, procs: int) -> dict:
    store = open_store(url, os.urandom(32))
    await store.open()
    if name == "redis":
        await store.client.flushdb()
    try:
        ids = await fill(store, n)
        t0 = time.perf_counter()
        if procs == 1:
            lat = await check_ins(url, ids, conc)
        else:  # several processes sharing the store, as `memberbot serve --workers N` would
            q: mp.Queue = mp.Queue()
            ps = [mp.Process(target=_child, args=(url, ids[i::procs], conc, q))
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
        if name == "redis":
            await store.client.flushdb()
        await store.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--backends", default="sqlite,redis")
    ap.add_argument("--redis-processes", type=int, default=2,
                    help="also run the Redis workload from this many processes (0: skip)")
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite:///{tmp}/bench.db",
                "redis": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")}
        for name in a.backends.split(","):
            results.append(await run_backend(name, urls[name], a.members, a.concurrency, 1))
            if name == "redis" and a.redis_processes > 1:
                results.append(await run_backend(name, urls[name], a.members, a.concurrency,
                                                 a.redis_processes))
    print(f"check-ins of {a.members} distinct members, {a.concurrency} concurrent per process")
    print(f"{'backend':<8} {'processes':>9} {'updates/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(f"{r['backend']:<8} {r['procs']:>9} {r['per_s']:>10.0f} {r['p50_ms']:>8.2f} "
              f"{r['p99_ms']:>8.2f}")
    print("targets: sqlite >= 3000/s with p99 <= 5 ms; redis >= 5000/s")


if __name__ == "__main__":
    asyncio.run(main())
