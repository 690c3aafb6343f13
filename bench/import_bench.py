"""Time ``memberbot import-orders`` on 100,000 rows against SQLite.

Generates members (not timed) and a CSV of orders spread over the last two years, then
imports it through the same code path as the command (without the progress bar) and prints
the time. Usage: ``python bench/import_bench.py [--rows N] [--members M] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import keys  # noqa: E402
from bot.importer import import_orders  # noqa: E402
from bot.members import Members  # noqa: E402
from bot.rules import load_rules  # noqa: E402
from bot.rules.models import Entry, Member  # noqa: E402
from bot.rules.timeutil import ts  # noqa: E402
from storage import open_store  # noqa: E402


async def make_members(members: Members, n: int, now: datetime) -> list[str]:
    codes = [str(200000000000 + i) for i in range(n)]

    async def one(i: int, code: str) -> None:
        mid = f"b{i:07d}"
        await members.store.claim("member_code", code, mid)

        def step(_):
            m = Member(id=mid, member_code=code, openid=f"o-bench-{i}", joined_at=ts(now),
                       last_activity=ts(now), invite_code=code[-6:])
            return members._finish(m, now, {}, [Entry("join", ts(now),
                                                      ref=keys.register(mid))], [])

        await members.store.update(mid, step)

    for start in range(0, n, 2000):
        await asyncio.gather(*(one(i, codes[i]) for i in range(start, min(start + 2000, n))))
    return codes


def write_csv(path: Path, rows: int, codes: list[str], now: datetime) -> None:
    rnd = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("order_id", "member_code", "amount_fen", "paid_at", "store_id"))
        for i in range(rows):
            paid = now - timedelta(minutes=rnd.randrange(2 * 365 * 24 * 60))
            w.writerow((f"BENCH-{i:07d}", rnd.choice(codes), rnd.randrange(1000, 200000),
                        paid.isoformat(timespec="seconds"), f"S{rnd.randrange(50):02d}"))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--keep", help="a folder to keep the database and CSV in")
    args = ap.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="memberbot-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    rules = load_rules()
    now = datetime.now(rules.tz)
    store = open_store(f"sqlite:///{folder}/bench.db", os.urandom(32))
    await store.open()
    members = Members(store, rules)
    t = time.perf_counter()
    codes = await make_members(members, args.members, now)
    src = folder / "orders.csv"
    write_csv(src, args.rows, codes, now)
    print(f"setup: {args.members:,} members and a {args.rows:,}-row CSV in "
          f"{time.perf_counter() - t:.1f} s")
    s = await import_orders(members, src, now, concurrency=args.concurrency)
    print(f"import: {s.rows:,} rows, {s.imported:,} imported, {s.rejected:,} rejected, "
          f"in {s.seconds:.1f} s ({s.rows / s.seconds:,.0f} rows/s, SQLite, "
          f"concurrency {args.concurrency})")
    again = await import_orders(members, src, now, concurrency=args.concurrency)
    print(f"re-import: {again.already:,} already imported, {again.imported} imported, "
          f"in {again.seconds:.1f} s")
    await store.close()
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
