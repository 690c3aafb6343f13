"""A process killed (SIGKILL) in the middle of a burst of updates leaves every member whole,
and running the same work again applies each event exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta

from bot.rules import load_rules
from bot.rules.points import balance

RULES = load_rules()
START = datetime(2026, 1, 1, 10, 0, tzinfo=RULES.tz)
DAYS = 12
MEMBERS = 15

WORKER = textwrap.dedent(f"""
    import asyncio, os, sys
    from datetime import datetime, timedelta
    from bot.members import Members
    from bot.rules import load_rules
    from storage import open_store

    async def main(url):
        rules = load_rules()
        store = open_store(url, os.urandom(32))
        await store.open()
        m = Members(store, rules)
        start = datetime(2026, 1, 1, 10, 0, tzinfo=rules.tz)
        ids = [(await m.register(f"crash-{{i}}", start))["member_id"] for i in range({MEMBERS})]
        print("ready", flush=True)
        for day in range({DAYS}):
            now = start + timedelta(days=day)
            jobs = [m.check_in(mid, now) for mid in ids]
            jobs += [m.record_order(mid, f"o-{{mid}}-{{day}}", 1999, now, now) for mid in ids]
            await asyncio.gather(*jobs)
            print("day", day, flush=True)
        await store.close()
        print("done", flush=True)

    asyncio.run(main(sys.argv[1]))
""")


def _url(store) -> str:
    return f"sqlite:///{store.path}" if store.kind == "sqlite" else store.url


async def _run_worker(url: str, kill_after_days: int | None) -> int:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    p = await asyncio.create_subprocess_exec(sys.executable, "-c", WORKER, url, env=env,
                                             stdout=subprocess.PIPE)
    days = 0
    while True:
        line = await asyncio.wait_for(p.stdout.readline(), 60)
        if not line:
            break
        if line.startswith(b"day"):
            days += 1
            if kill_after_days is not None and days >= kill_after_days:
                p.send_signal(signal.SIGKILL)  # mid-burst: the next day's updates are in flight
                break
    await p.wait()
    return days


async def _check_whole(store) -> list:
    ids = await store.member_ids(limit=1000)
    assert len(ids) == MEMBERS
    out = []
    for mid in ids:
        m = await store.get(mid)
        rows = await store.ledger(member_id=mid)
        # every acknowledged change is in the ledger once, with its aggregate
        assert sum(r.points for r in rows) == sum(x.remaining for x in m.lots) - m.debt
        assert sum(1 for r in rows if r.kind == "checkin") == m.checkin_total
        assert sum(1 for r in rows if r.kind == "order") == len(m.orders)
        out.append(m)
    return out


async def test_sigkill_mid_burst_then_rerun_applies_each_event_once(store):
    url = _url(store)
    await _run_worker(url, kill_after_days=3)
    await _check_whole(store)
    assert await _run_worker(url, kill_after_days=None) == DAYS
    final = await _check_whole(store)
    last = (START + timedelta(days=DAYS - 1)).date()
    for m in final:
        assert m.checkin_total == DAYS
        assert len(m.orders) == DAYS
        # 7-day cycle: 5+6+7+8+9+10+10+20, then 5+6+7+8+9; 19 points per order
        assert balance(m, last) == 75 + 35 + 19 * DAYS + 0
        assert m.checkin_streak == DAYS - 7
