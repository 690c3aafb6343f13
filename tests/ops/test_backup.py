"""Backups: a JSONL dump taken while members are being written restores into an empty store
of another backend with every member's balance equal to their ledger sum; SQLite's online
backup through the CLI likewise; a store with members is never restored into."""

from __future__ import annotations

import asyncio
import io
import os
import random
import threading
from datetime import timedelta

import pytest
from click.testing import CliRunner

from bot.backup import BackupError, dump, restore
from bot.cli import main
from bot.members import Members
from bot.rules.models import Refusal
from storage import open_store
from tests.conftest import REDIS_URL
from tests.pg import pg_database

KEY = "a2FrYWthYWthYWthYWthYWthYWthYWthYWthYWthYWs="


async def make_store(kind: str, tmp_path, name: str, pg):
    if kind == "sqlite":
        s = open_store(f"sqlite:///{tmp_path}/{name}.db", KEY)
        await s.open()
    elif kind == "redis":
        s = open_store(REDIS_URL, KEY)
        await s.open()
        await s.client.flushdb()
    else:
        s = open_store(pg.enter_context(pg_database()), KEY)
        await s.open()
    return s


async def seed(members: Members, now, n: int) -> list[str]:
    await members.ensure_stock()
    ids = []
    for i in range(n):
        mid = (await members.register(f"o-{i}", now - timedelta(days=400)))["member_id"]
        await members.record_order(mid, f"seed-{i}", 20_000 + i * 100, now - timedelta(days=1),
                                   now, store_id="S")
        ids.append(mid)
    return ids


async def load(members: Members, ids: list[str], now, stop: asyncio.Event, n: int) -> int:
    """Orders, refunds, staff adjustments and check-ins on random members until ``stop``."""
    rnd = random.Random(7)
    done = 0
    while not stop.is_set() and done < n:
        mid = rnd.choice(ids)
        op = done % 4
        try:
            if op == 0:
                await members.record_order(mid, f"L{done}", rnd.randrange(1000, 90_000), now,
                                           now, store_id="S")
            elif op == 1:
                await members.refund(f"L{done - 1}", f"R{done}", None, now)
            elif op == 2:
                await members.adjust_points(mid, rnd.choice([-30, 40]), "补偿", "ops", now,
                                            key=f"adj{done}")
            else:
                await members.check_in(mid, now + timedelta(days=done))
        except Refusal:
            pass
        done += 1
        await asyncio.sleep(0)
    return done


async def assert_consistent(store, expected: int) -> None:
    assert await store.count_members() == expected
    after = ""
    seen = 0
    while ids := await store.member_ids(after, 500):
        for mid in ids:
            m = await store.get(mid)
            rows = await store.ledger(member_id=mid, limit=10**9)
            assert sum(r.points for r in rows) == sum(x.remaining for x in m.lots) - m.debt, mid
            seen += 1
        after = ids[-1]
    assert seen == expected


@pytest.mark.parametrize("source, target", [("sqlite", "redis"), ("redis", "postgresql"),
                                            ("postgresql", "sqlite")])
async def test_a_dump_taken_under_load_restores_balances_equal_to_ledgers(
        tmp_path, rules, now, source, target):
    import contextlib

    with contextlib.ExitStack() as pg:
        src = await make_store(source, tmp_path, "src", pg)
        members = Members(src, rules)
        ids = await seed(members, now, 40)
        out = io.StringIO()
        stop = asyncio.Event()

        async def backup() -> int:
            await asyncio.sleep(0.01)  # the load is under way
            try:
                return await dump(src, rules, out, now)
            finally:
                stop.set()

        from bot.admins import Accounts

        await Accounts(src).add("vera", "viewer", "viewer-password", now)
        n, writes = await asyncio.gather(backup(), load(members, ids, now, stop, 3000))
        assert n == 40 and writes > 0
        await src.close()

        dst = await make_store(target, tmp_path, "dst", pg)
        try:
            lines = out.getvalue().splitlines(keepends=True)
            assert await restore(dst, rules, lambda: lines, "dump.jsonl", now) == 40
            await assert_consistent(dst, 40)
            again = Members(dst, rules)
            m = await dst.get(ids[0])
            # idempotency survived: the seed order sent again changes nothing
            before = sum(r.points for r in await dst.ledger(member_id=ids[0]))
            res = await again.record_order(ids[0], "seed-0", 20_000, now - timedelta(days=1),
                                           now, store_id="S")
            assert res["points_earned"] == 200
            assert sum(r.points for r in await dst.ledger(member_id=ids[0])) == before
            assert await dst.lookup("member_code", m.member_code) == ids[0]
            assert await dst.lookup("openid", "o-0") == ids[0]
            from bot.admins import Accounts

            assert await Accounts(dst).verify("vera", "viewer-password") is not None
            with pytest.raises(BackupError, match="not empty"):
                await restore(dst, rules, lambda: lines, "dump.jsonl", now)
        finally:
            await dst.close()


async def test_a_cut_short_dump_is_refused(tmp_path, rules, now):
    src = await make_store("sqlite", tmp_path, "src", None)
    await seed(Members(src, rules), now, 3)
    out = io.StringIO()
    await dump(src, rules, out, now)
    await src.close()
    lines = out.getvalue().splitlines(keepends=True)
    dst = await make_store("sqlite", tmp_path, "dst", None)
    try:
        with pytest.raises(BackupError, match="cut short"):
            await restore(dst, rules, lambda: lines[:-1], "dump.jsonl", now)
        with pytest.raises(BackupError, match="not a memberbot backup"):
            await restore(dst, rules, lambda: lines[1:], "dump.jsonl", now)
        assert await dst.count_members() == 0  # checked whole before anything was written
        assert await restore(dst, rules, lambda: lines, "dump.jsonl", now) == 3
    finally:
        await dst.close()


def cli(tmp_path, db: str, *args: str):
    env = {"MEMBERBOT_STORE": f"sqlite:///{tmp_path}/{db}", "MEMBERBOT_DATA_KEY": KEY,
           "MEMBERBOT_DATA_DIR": str(tmp_path), "WECHAT_TOKEN": "t",
           "MEMBERBOT_API_SECRET": "s", "MEMBERBOT_RULES": "", "MEMBERBOT_TZ": ""}
    return CliRunner().invoke(main, list(args), env=env)


@pytest.mark.parametrize("fmt", ["sqlite", "jsonl"])
def test_backup_cli_while_another_process_writes_then_restore(tmp_path, rules, now, fmt):
    async def prepare():
        s = await make_store("sqlite", tmp_path, "live", None)
        ids = await seed(Members(s, rules), now, 20)
        await s.close()
        return ids

    ids = asyncio.run(prepare())
    stop = threading.Event()

    def writer() -> None:  # the server, writing on through its own connection
        async def go():
            s = open_store(f"sqlite:///{tmp_path}/live.db", KEY)
            await s.open()
            ev = asyncio.Event()
            task = asyncio.create_task(load(Members(s, rules), ids, now, ev, 10**6))
            while not stop.is_set():
                await asyncio.sleep(0.01)
            ev.set()
            await task
            await s.close()
        asyncio.run(go())

    t = threading.Thread(target=writer)
    t.start()
    try:
        res = cli(tmp_path, "live.db", "backup", str(tmp_path / "b.bak"), "--format", fmt)
    finally:
        stop.set()
        t.join(60)
    assert res.exit_code == 0, res.output
    assert oct(os.stat(tmp_path / "b.bak").st_mode & 0o777) == "0o600"
    again = cli(tmp_path, "live.db", "backup", str(tmp_path / "b.bak"))
    assert again.exit_code == 1 and "exists" in again.output
    res = cli(tmp_path, "new.db", "restore", str(tmp_path / "b.bak"))
    assert res.exit_code == 0, res.output
    assert res.output.startswith("restored 20 members")

    async def check():
        s = open_store(f"sqlite:///{tmp_path}/new.db", KEY)
        await s.open()
        try:
            await assert_consistent(s, 20)
        finally:
            await s.close()

    asyncio.run(check())
    refused = cli(tmp_path, "new.db", "restore", str(tmp_path / "b.bak"))
    assert refused.exit_code == 1 and "not empty" in refused.output


@pytest.mark.parametrize("target", ["sqlite", "redis", "postgresql"])
async def test_campaign_budgets_used_survive_a_dump_and_restore(tmp_path, now, target):
    """A restored store goes on from the budget the campaign had used: never overspent."""
    import contextlib

    from bot.rules.config import DEFAULTS, _merge, build_rules

    rules = build_rules(_merge(DEFAULTS, {"campaigns": [
        {"key": "wk", "name": "翻倍", "multiplier": 2, "budget": 300}]}))
    with contextlib.ExitStack() as pg:
        src = await make_store("sqlite", tmp_path, "bsrc", pg)
        members = Members(src, rules)
        mid = (await members.register("o-b", now))["member_id"]
        await members.record_order(mid, "b-1", 20_000, now, now)  # 200 of 300
        out = io.StringIO()
        await dump(src, rules, out, now)
        await src.close()
        dst = await make_store(target, tmp_path, "bdst", pg)
        try:
            lines = out.getvalue().splitlines(keepends=True)
            await restore(dst, rules, lambda: lines, "dump.jsonl", now)
            assert await dst.budget_used("wk") == 200
            res = await Members(dst, rules).record_order(mid, "b-2", 20_000, now, now)
            assert res["campaign_points"] == 100 and await dst.budget_used("wk") == 300
        finally:
            await dst.close()
