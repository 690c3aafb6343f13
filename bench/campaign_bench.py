"""Orders per second through ``Members.record_order``, without and with a budgeted campaign
(积分翻倍): what the budget's grant costs (one failed step asking for it, one atomic take,
the step again). 200 members, 16 concurrent callers; SQLite and Redis (``REDIS_URL``, flushed).

    .venv/bin/python bench/campaign_bench.py [--orders 3000] [--rounds 2]

Numbers are for comparison side by side in one run on one machine, not constants.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.members import Members  # noqa: E402
from bot.rules.config import DEFAULTS, _merge, build_rules  # noqa: E402
from storage import open_store  # noqa: E402


async def run(kind: str, campaign: bool, n: int, conc: int = 16) -> float:
    over = {"campaigns": [{"key": "wk", "name": "翻倍", "multiplier": 2,
                           "budget": 10**9}]} if campaign else {}
    rules = build_rules(_merge(DEFAULTS, over))
    now = datetime(2026, 12, 5, 10, tzinfo=rules.tz)
    url = (f"sqlite:///{tempfile.mkdtemp()}/b.db" if kind == "sqlite"
           else os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    s = open_store(url, os.urandom(32))
    await s.open()
    if kind != "sqlite":
        await s.client.flushdb()
    m = Members(s, rules)
    mids = [(await m.register(f"o{i}", now))["member_id"] for i in range(200)]
    todo = list(range(n))

    async def worker() -> None:
        while todo:
            i = todo.pop()
            await m.record_order(mids[i % 200], f"ord{i}", 10_000 + i, now, now)

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    dt = time.perf_counter() - t
    await s.close()
    return n / dt


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    for kind in ("sqlite", "redis"):
        for _ in range(a.rounds):
            for c in (False, True):
                rate = await run(kind, c, a.orders)
                print(f"{kind:7} {'campaign' if c else 'plain':9} {rate:6.0f} orders/s")


if __name__ == "__main__":
    asyncio.run(main())
