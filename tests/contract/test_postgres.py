"""PostgreSQL only: migrations, operators' mistakes, several processes on one database."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from bot.members import Members
from bot.rules import Change, load_rules
from storage import Store, open_store
from storage.postgres_schema import LATEST
from tests.contract.test_store_raw import bump
from tests.pg import _admin, db_url, pg_database


async def opened(url: str, key: bytes = b"k" * 32) -> Store:
    s = open_store(url, key)
    await s.open()
    return s


def cli(*args: str, store: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMBERBOT_", "WECHAT_"))}
    env.update(MEMBERBOT_STORE=store, MEMBERBOT_DATA_KEY=base64.b64encode(b"x" * 32).decode())
    return subprocess.run([sys.executable, "-m", "bot", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def one_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, p.stderr
    return errors[0]


def test_db_upgrade_creates_then_reports_current_and_newer_is_refused():
    with pg_database("mig") as url:
        p = cli("db", "upgrade", store=url)
        assert p.returncode == 0, p.stderr
        assert f"upgraded from version 0 to {LATEST}" in p.stdout
        p = cli("db", "upgrade", store=url)
        assert f"schema is current (version {LATEST})" in p.stdout

        async def bump_schema() -> None:
            c = await asyncpg.connect(url)
            await c.execute("UPDATE memberbot_schema SET version=$1", LATEST + 1)
            await c.close()

        asyncio.run(bump_schema())
        line = one_error(cli("db", "upgrade", store=url))
        assert f"schema version {LATEST + 1}" in line and "upgrade memberbot" in line
        line = one_error(cli("serve", "--port", "0", "--no-scheduler", store=url))
        assert "newer than this memberbot knows" in line


async def test_servers_starting_together_migrate_once():
    with pg_database("race") as url:
        stores = await asyncio.gather(*(opened(url) for _ in range(4)))
        try:
            assert sorted(s.schema[0] for s in stores) == [0, LATEST, LATEST, LATEST]
            assert await stores[0].pool.fetchval("SELECT count(*) FROM memberbot_schema") == 1
        finally:
            for s in stores:
                await s.close()


@pytest.mark.parametrize("what", ["unreachable", "no database", "no rights", "bad url"])
def test_operator_mistakes_are_one_line(what):
    role = f"{os.environ.get('PG_TEST_PREFIX', 'memberbot_test_')}weak_{secrets.token_hex(3)}"
    if what == "unreachable":
        url, expect = "postgresql://postgres@127.0.0.1:1/x", "cannot reach PostgreSQL"
    elif what == "no database":
        url, expect = db_url("memberbot_no_such_db"), "no such PostgreSQL database"
    elif what == "bad url":
        url, expect = "postgresql://postgres@127.0.0.1:notaport/x", "PostgreSQL"
    else:
        _admin(f'CREATE ROLE "{role}" LOGIN')
        url, expect = None, "grant it CREATE"
    try:
        if url is None:
            with pg_database("weak") as admin_url:
                url = admin_url.replace("postgres@", f"{role}@", 1)
                line = one_error(cli("serve", "--port", "0", "--no-scheduler", store=url))
        else:
            line = one_error(cli("serve", "--port", "0", "--no-scheduler", store=url))
        assert expect in line, line
    finally:
        if what == "no rights":
            _admin(f'DROP ROLE IF EXISTS "{role}"')


async def test_version_conflict_reruns_the_step_on_fresh_state(pg_url):
    a, b = await opened(pg_url), await opened(pg_url)
    try:
        await a.truncate()
        await a.update("m1", bump("m1"), key="create")
        real, raced = a._read_batch, []

        def racing(b_key: str, b_result: Any = None):
            async def read(items):  # another process commits after A's read
                rows = await real(items)
                if not raced:
                    raced.append(b_key)
                    await b.update("m1", bump("m1", result=b_result), key=b_key)
                return rows
            return read

        a._read_batch = racing("b1")
        calls: list[str] = []
        assert await a.update("m1", bump("m1", calls=calls), key="a1") == {"n": 3}
        assert calls == ["m1", "m1"] and a.conflicts == 1  # the step ran again on fresh state
        # B commits A's very key in between: A answers B's result and applies nothing itself.
        raced.clear()
        a._read_batch = racing("k", "by b")
        assert await a.update("m1", bump("m1"), key="k") == "by b"
        assert await a.seen("m1", "k") == (True, "by b")
        m = await a.get("m1")
        assert (m.checkin_total, m.version) == (4, 4)
        assert len(await a.ledger(member_id="m1")) == 4
    finally:
        await a.close()
        await b.close()


async def test_many_processes_on_one_member_lose_nothing(pg_url):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    s = await opened(pg_url)
    await s.truncate()
    code = (
        "import asyncio, sys\n"
        "from storage import open_store\n"
        "from tests.contract.test_store_raw import bump\n"
        "async def main(i):\n"
        "    s = open_store(sys.argv[1], b'k' * 32)\n"
        "    await s.open()\n"
        "    await asyncio.gather(*(s.update('m1', bump('m1'), key=f'{i}-{j}') "
        "for j in range(25)), s.update('m1', bump('m1'), key='once'))\n"
        "    print(s.conflicts)\n"
        "    await s.close()\n"
        "asyncio.run(main(sys.argv[2]))\n")
    try:
        procs = [await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, pg_url, str(i), env=env,
            stdout=subprocess.PIPE) for i in range(3)]
        outs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        m = await s.get("m1")
        assert (m.checkin_total, m.version) == (76, 76)
        assert len(await s.ledger()) == 76
        assert len(await s.ledger(member_id="m1")) == 76
    finally:
        await s.close()


async def test_ledger_and_orders_are_plain_sql(pg_url):
    s = await opened(pg_url)
    try:
        await s.truncate()
        rules = load_rules()
        m = Members(s, rules)
        now = datetime(2026, 11, 25, 10, 0, tzinfo=rules.tz)
        mid = (await m.register("sql-1", now))["member_id"]
        await m.record_order(mid, "o-1", 12345, now, now)
        rows = await s.pool.fetch("SELECT member_id, order_id, amount_fen FROM orders")
        assert [tuple(r) for r in rows] == [(mid, "o-1", 12345)]
        total = await s.pool.fetchval(
            "SELECT sum(points) FROM ledger WHERE member_id=$1", mid)
        assert total == sum(r.points for r in await s.ledger(member_id=mid))
    finally:
        await s.close()


async def test_a_ledger_row_committed_late_with_a_smaller_id_is_not_passed_by(pg_url):
    """Ids are drawn at insert: a transaction still running holds a smaller id than a row
    committed after it. A reader paging by id (changes feed, webhooks) must not pass it."""
    s = await opened(pg_url)
    slow = await asyncpg.connect(pg_url)
    try:
        await s.truncate()
        await s.update("m0", bump("m0"), key="before")
        first = [r.id for r in await s.ledger()]
        tx = slow.transaction()
        await tx.start()  # a commit in flight: its ledger row has the next id, not committed
        await slow.execute("INSERT INTO ledger (member_id, kind, at, points, amount_fen, ref) "
                           "VALUES ('m9', 'credit', 1, 1, 0, 'slow')")
        await s.update("m1", bump("m1"), key="after")  # committed, with a larger id
        assert [r.id for r in await s.ledger(after_id=first[-1])] == []
        assert [r.ref for r in await s.ledger(member_id="m1")] == ["m1"]  # own rows: at once
        await tx.commit()
        assert [r.ref for r in await s.ledger(after_id=first[-1])] == ["slow", "m1"]
    finally:
        await slow.close()
        await s.close()


async def test_concurrent_updates_of_many_members_share_one_commit(pg_url):
    """The updates waiting at one moment commit in one transaction (one fsync), each with its
    own index rows, ledger rows, outbox rows and key."""
    s = await opened(pg_url)
    try:
        await s.truncate()
        ids = [f"g{i:02d}" for i in range(24)]
        await asyncio.gather(*(s.update(m, bump(m, indexes={"expiry": 1, "tier": "a"}),
                                        key="create") for m in ids))
        xacts = await s.pool.fetchval(XACTS)
        sizes: list[int] = []
        real = s._commit_batch

        async def counted(items):
            sizes.append(len(items))
            return await real(items)

        s._commit_batch = counted
        results = await asyncio.gather(*(s.update(m, bump(
            m, indexes={"expiry": 2, "tier": None, "tags": [m]},
            outbox=[{"kind": "push", "period": "p"}]), key="second") for m in ids))
        assert results == [{"n": 2}] * len(ids)
        assert max(sizes) > 1 and len(sizes) < len(ids)  # grouped, not one commit each
        assert await s.pool.fetchval(XACTS) - xacts < 2 * len(ids)
        assert [m for m, _ in await s.range("expiry", 2, 2)] == ids
        assert await s.tag_counts("tier") == {}
        assert await s.tagged("tags", "g07") == ["g07"]
        assert len(await s.outbox(status="pending")) == len(ids)
        for m in ids:
            assert [r.ref for r in await s.ledger(member_id=m)] == [m, m]
            assert await s.seen(m, "second") == (True, {"n": 2})
            assert (await s.get(m)).version == 2
    finally:
        await s.close()


XACTS = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"


async def test_a_batch_with_a_stale_version_or_a_raced_key_commits_each_item_once(pg_url):
    """In one batch, an item whose member moved is told to read again (the others commit);
    an item whose key another writer committed meanwhile rolls the batch back and every item
    commits on its own: the raced one is not applied twice."""
    s = await opened(pg_url)
    try:
        await s.truncate()
        for m in ("a", "b", "c"):
            await s.update(m, bump(m), key="create")

        def args(m: str, version: int, key: str) -> list[Any]:
            change = bump(m)(None)
            change.member.checkin_total = version + 1
            return s._commit_args(m, key, version, None, change)

        # b's version is 1, not 5: only b is refused
        assert await s._commit_batch([args("a", 1, "k1"), args("b", 5, "k1"),
                                      args("c", 1, "k1")]) == [0, 2, 0]
        await s.update("b", bump("b"), key="k2")  # b's k2 is committed by another writer
        answer = s._commit_args("b", "k2", 2, None, Change(None, "late"))  # writes no member
        out = await s._commit_batch([args("a", 2, "k2"), answer, args("c", 2, "k2")])
        assert out == [0, 1, 0]  # b: its key was committed (read its result)
        assert await s.seen("b", "k2") == (True, {"n": 2})
        for m, n in (("a", 3), ("b", 2), ("c", 3)):
            assert len(await s.ledger(member_id=m)) == n
            assert (await s.get(m)).version == n
    finally:
        await s.close()


def test_released_migrations_are_never_edited():
    """A database migrated by an earlier release has run these texts: a change to one of
    them would never reach it (a change is a new migration at the end)."""
    import hashlib

    from storage.postgres_schema import MIGRATIONS

    released = {1: "235a79424374b393", 2: "edc6dd32c64abb20", 3: "30565a6547c35c3c",
                4: "227b619ba0983c98", 5: "80bcc88aaf024417", 6: "6a9ba78555fade34"}
    for version, _, sql in MIGRATIONS:
        if version in released:
            assert hashlib.sha256(sql.encode()).hexdigest()[:16] == released[version], version


async def test_a_few_due_members_are_found_without_walking_every_member(pg_url):
    """Job cost follows the members due: the range of one index is read through (name, num)
    even when the statistics (which mix every index's numbers) suggest a walk in member
    order, and paged results are the same either way."""
    from storage.postgres import SPARSE

    s = await opened(pg_url)
    try:
        await s.truncate()
        await s.pool.execute(
            "INSERT INTO idx (name, member_id, num) SELECT n, 'x' || lpad(i::text, 7, '0'), "
            "CASE WHEN n = 'expiry' AND i % 1000 <> 7 THEN 50000 + i % 100 ELSE i % 1000 END "
            "FROM generate_series(1, 60000) AS i, unnest(ARRAY['expiry', 'joined', 'birthday']) "
            "AS n")
        await s.pool.execute("ANALYZE idx")
        due = await s.range("expiry", 0, 999, limit=40)
        assert due == [(f"x{i:07d}", 7) for i in range(7, 60000, 1000)][:40]
        assert await s.range("expiry", 0, 999, after="x0030007", limit=2) == [
            ("x0031007", 7), ("x0032007", 7)]
        async with s.pool.acquire() as c:  # the very query range() runs
            sql, *args = await s._range_query(c, "expiry", 0, 999, "", 40)
            plan = "\n".join(r[0] for r in await c.fetch("EXPLAIN " + sql, *args))
        assert "idx_num" in plan and "idx_member" not in plan, plan
        # a dense range (more than SPARSE members) is walked in member order, same answer
        assert len(await s.range("joined", 0, 999, limit=SPARSE + 5)) == SPARSE + 5
    finally:
        await s.close()


async def test_gets_waiting_together_share_one_statement(pg_url):
    """A job reads its due members concurrently: one statement for the gets of a moment."""
    s = await opened(pg_url)
    try:
        await s.truncate()
        for m in ("a", "b", "c"):
            await s.update(m, bump(m), key="create")
        sizes: list[int] = []
        real = s._get_batch

        async def counted(ids):
            sizes.append(len(ids))
            return await real(ids)

        s._get_batch = counted
        got = await asyncio.gather(*(s.get(m) for m in ("a", "nobody", "c", "b")))
        assert [m and m.id for m in got] == ["a", None, "c", "b"]
        assert sizes == [4]
    finally:
        await s.close()
