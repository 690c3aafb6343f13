"""SQLite on a small tmpfs that fills up, or turns read-only, under load: members read
系统繁忙, the API answers 503, no traceback, nothing half-written (every member's balance is
the sum of its ledger), and once there is room again service is back by itself with every
acknowledged change there exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from datetime import datetime

import aiohttp
import pytest

from bot.rules import load_rules
from bot.rules.points import balance
from storage import open_store
from tests.serving import Served

from .load import DATA_KEY, ENV, Load
from .test_kill9 import ledger_counts
from .test_store_outage import hit

pytestmark = pytest.mark.faults


@contextlib.contextmanager
def small_tmpfs(path, size: str = "4m"):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path) -> None:
    """Write until the file system is full."""
    with open(path / "filler", "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()


async def whole(url: str) -> None:
    """Nothing half-written: each member's balance is the sum of its ledger lines."""
    rules = load_rules()
    store = open_store(url, DATA_KEY)
    async with store:
        day = datetime.now(rules.tz).date()
        for mid in await store.member_ids():
            m = await store.get(mid)
            rows = await store.ledger(member_id=mid)
            assert balance(m, day) == sum(r.points for r in rows), mid


async def test_sqlite_on_a_full_disk_is_busy_and_half_writes_nothing(tmp_path):
    with small_tmpfs(tmp_path / "disk") as disk:
        url = f"sqlite:///{disk}/m.db"
        srv = Served(tmp_path, {**ENV, "MEMBERBOT_STORE": url})
        srv.start()
        load = Load(srv.base, members=10)
        n, answers = 0, set()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
                await load.follow_all(http)
                assert await hit(load, http, 0, n) == ("ok", "ok")
                fill(disk)
                for _ in range(60):  # SQLite may still have room in its WAL for a while
                    n += 1
                    answers.add(await hit(load, http, n, n))
                    if ("busy", "busy") in answers and len(answers) > 1 or \
                            answers == {("busy", "busy")} and n > 10:
                        break
                assert ("busy", "busy") in answers, answers
                assert answers <= {("busy", "busy"), ("ok", "ok"), ("ok", "busy"),
                                   ("busy", "ok")}, answers
                (disk / "filler").unlink()
                for _ in range(50):  # back by itself
                    n += 1
                    if await hit(load, http, n, n) == ("ok", "ok"):
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("not back after the disk had room again")
        finally:
            srv.stop()
        checkins, orders = await ledger_counts(url)
        assert all(orders[o] == 1 for o in load.acked_orders)
        assert set(orders.values()) <= {1} and set(checkins.values()) <= {1}
        assert all(checkins[o] == 1 for o in load.acked_checkins)
        await whole(url)
    log = srv.log_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def test_sqlite_on_a_read_only_disk_is_one_error_line_at_start(tmp_path):
    """A file system that is read-only (remounted while files are open for writing is refused
    by Linux, so it is read-only from the start): serve says so in one line and exits."""
    with small_tmpfs(tmp_path / "disk") as disk:
        srv = Served(tmp_path, {**ENV, "MEMBERBOT_STORE": f"sqlite:///{disk}/m.db"})
        srv.start()
        srv.stop()  # the database exists now; the disk turns read-only
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        before = (disk / "m.db").read_bytes()
        p = subprocess.run([*srv.args(), "--port", "1"], cwd=tmp_path, env=srv.env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "not writable" in errors[0], p.stderr
        assert (disk / "m.db").read_bytes() == before
