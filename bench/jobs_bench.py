"""Time ``memberbot jobs run points_expiry --dry-run`` on 100,000 and 1,000,000 members.

Each store holds the same 10,000 members due (their next lot expires 30 days after the as-of
day); everybody else's lots expire on other days of the coming year. A job finds its members
through the ``expiry`` index, so the two runs should cost about the same: the target is
< 10 s for 1,000,000 members and at most 1.3× the 100,000 run.

Fixture shortcut (not how members are ever written in production): the stores are filled by
bulk SQL inserts of encoded aggregates and their index rows into a SQLite file created with
``storage.sqlite.SCHEMA`` — the secondary indexes are dropped during the fill and rebuilt
after it. A sample of members is decoded and checked against ``bot.rules.indexes.derive`` so
the shortcut writes what a commit would. Files are kept in the temp folder and reused.

With ``--store postgresql`` the same members go into PostgreSQL databases (created through
``PG_ADMIN_URL``, named ``<PG_TEST_PREFIX>jobs_<n>``, kept and reused) by ``COPY`` into the
tables memberbot's own migrations create, the index rows' secondary indexes rebuilt after.

Usage: ``python bench/jobs_bench.py [--sizes 100000 1000000] [--runs 3] [--rebuild]
[--store sqlite|postgresql]``.
"""

from __future__ import annotations

import argparse
import base64
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.rules import indexes, load_rules  # noqa: E402
from bot.rules.models import Member  # noqa: E402
from bot.rules.timeutil import add_months, day_num, ts  # noqa: E402
from storage.codec import Codec  # noqa: E402
from storage.sqlite import SCHEMA  # noqa: E402
from tests.pg import PREFIX, _admin, db_url  # noqa: E402

AS_OF = date(2026, 11, 25)
DUE = 10_000
KEY = base64.b64encode(b"b" * 32).decode()
MIX = 0x9E3779B97F4A7C15  # odd: i -> i*MIX mod 2^64 is a bijection, ids spread evenly
SECONDARY = ("idx_num", "idx_tag", "idx_member", "ledger_member", "ledger_at", "outbox_status")
CHUNK = 20_000


def member_id(i: int) -> str:
    return f"{(i * MIX) & 0xFFFFFFFFFFFFFFFF:016x}"


def expiry_for(i: int) -> date:
    """The due members' lots end 30 days after AS_OF; the others' on another day of the year
    after the job's window (the job catches up on every expiry within 30 days)."""
    if i < DUE:
        return AS_OF + timedelta(days=30)
    return AS_OF + timedelta(days=31 + i % 334)


def aggregate(i: int, rules, template: dict) -> tuple[dict, dict]:
    """Member ``i``: one purchase 12 months before its lot expires, a WeCom contact."""
    exp = expiry_for(i)
    earned = add_months(exp, -12)
    paid = ts(datetime.combine(earned, dtime(12), rules.tz))
    pts = 100 + i % 900
    oid = f"o{i}"
    d = dict(template)
    d.update(
        id=member_id(i), member_code=str(100_000_000_000 + i), openid=f"openid-{i}",
        unionid=f"union-{i}", external_userid=f"ext-{i}", owner_userid=f"staff{i % 50}",
        follow_users=[f"staff{i % 50}"], joined_at=paid - 30 * 86400, last_activity=paid,
        last_purchase=paid, invite_code=f"I{i:07d}", lifetime_spend=pts * 100,
        lots=[{"ref": f"order:{oid}", "earned_on": earned.isoformat(),
               "expires_on": exp.isoformat(), "amount": pts, "remaining": pts}],
        orders={oid: {"order_id": oid, "amount_fen": pts * 100, "paid_fen": pts * 100,
                      "paid_at": paid, "points": pts, "multiplier": 1, "store_id": "s1",
                      "coupon_code": None, "points_used": 0, "refunded_fen": 0,
                      "refunds": {}, "points_reversed": 0, "body_hash": ""}},
        coupons=[{"code": f"C{i:011d}", "template": "welcome", "issued_at": paid - 30 * 86400,
                  "valid_until": paid - 23 * 86400, "status": "expired", "order_id": None,
                  "redeemed_at": None, "ref": f"coupon:{member_id(i)}:welcome:join"}],
        rfm="一般发展客户")
    idx = {"expiry": day_num(exp), "last_purchase": day_num(earned),
           "last_activity": day_num(earned), "grace_until": None, "tier_review": None,
           "birthday": None, "coupon_expiry": None,
           "joined": day_num(earned - timedelta(days=30)), "tier": "normal",
           "rfm": "一般发展客户", "tags": None, "followed": "yes", "owner": d["owner_userid"],
           "pending": None, "handover": None, "card": None}
    return d, idx


def fill(path: Path, n: int) -> None:
    rules = load_rules()
    template = Member(id="", member_code="").to_dict()
    template.pop("version")
    path.unlink(missing_ok=True)
    for extra in ("-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.executescript(SCHEMA)
    for name in SECONDARY:
        db.execute(f"DROP INDEX IF EXISTS {name}")
    t0 = time.perf_counter()
    for lo in range(0, n, CHUNK):
        mrows, irows = [], []
        for i in range(lo, min(lo + CHUNK, n)):
            d, idx = aggregate(i, rules, template)
            mrows.append((d["id"], 1, orjson.dumps(d), orjson.dumps(idx)))
            irows += [(k, d["id"], v, None) if isinstance(v, int) else (k, d["id"], None, v)
                      for k, v in idx.items() if v is not None]
        db.execute("BEGIN")
        db.executemany("INSERT INTO members (id, version, data, idx) VALUES (?,?,?,?)", mrows)
        db.executemany("INSERT INTO idx (name, member_id, num, tag) VALUES (?,?,?,?)", irows)
        db.execute("COMMIT")
    db.executescript(SCHEMA)  # rebuilds the secondary indexes in one sorted pass each
    db.execute("ANALYZE")
    db.close()
    print(f"  filled {n:,} members in {time.perf_counter() - t0:.1f} s ({path})", flush=True)
    check(path, rules)


def check(path: Path, rules) -> None:
    """The shortcut wrote what a commit would: decoded members derive the same indexes."""
    codec = Codec(base64.b64decode(KEY))
    db = sqlite3.connect(path)
    for (mid, version, data, idx) in db.execute(
            "SELECT id, version, data, idx FROM members ORDER BY id LIMIT 50"):
        m = codec.decode(data, version)
        earned = date.fromisoformat(m.lots[0].earned_on)
        want, got = indexes.derive(m, earned, rules), orjson.loads(idx)
        assert want == got, (mid, set(got) ^ set(want), {k: (got.get(k), v) for k, v in
                                                         want.items() if got.get(k) != v})
    db.close()


PG_SECONDARY = {  # dropped during the COPY, created after it (as in postgres_schema)
    "idx_num": "CREATE INDEX idx_num ON idx (name, num, member_id) WHERE num IS NOT NULL",
    "idx_tag": "CREATE INDEX idx_tag ON idx (name, tag, member_id) WHERE tag IS NOT NULL",
    "idx_member": "CREATE INDEX idx_member ON idx (member_id, name)",
}


def pg_fill(n: int, rebuild: bool) -> str:
    """A PostgreSQL database with ``n`` members (reused when it already holds them)."""
    import asyncio

    import asyncpg

    from storage import open_store

    name = f"{PREFIX}jobs_{n}"
    url = db_url(name)

    async def count() -> int | None:
        try:
            c = await asyncpg.connect(url)
        except asyncpg.InvalidCatalogNameError:
            return None
        try:
            return await c.fetchval("SELECT count(*) FROM members")
        except asyncpg.UndefinedTableError:
            return 0
        finally:
            await c.close()

    if not rebuild and asyncio.run(count()) == n:
        return url
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')

    async def load() -> None:
        store = open_store(url, KEY)
        await store.open()  # memberbot's own migrations create the tables
        await store.close()
        rules = load_rules()
        template = Member(id="", member_code="").to_dict()
        template.pop("version")
        c = await asyncpg.connect(url)
        try:
            for idx_name in PG_SECONDARY:
                await c.execute(f"DROP INDEX {idx_name}")
            t0 = time.perf_counter()
            for lo in range(0, n, CHUNK):
                mrows, irows = [], []
                for i in range(lo, min(lo + CHUNK, n)):
                    d, idx = aggregate(i, rules, template)
                    mrows.append((d["id"], 1, orjson.dumps(d), orjson.dumps(idx).decode()))
                    irows += [(k, d["id"], v, None) if isinstance(v, int)
                              else (k, d["id"], None, v) for k, v in idx.items()
                              if v is not None]
                await c.copy_records_to_table("members", records=mrows,
                                              columns=["id", "version", "data", "idx"])
                await c.copy_records_to_table("idx", records=irows,
                                              columns=["name", "member_id", "num", "tag"])
            for sql in PG_SECONDARY.values():
                await c.execute(sql)
            await c.execute("VACUUM ANALYZE")
            print(f"  filled {n:,} members in {time.perf_counter() - t0:.1f} s ({name})",
                  flush=True)
        finally:
            await c.close()

    asyncio.run(load())
    return url


def timed_run(path: Path | str) -> tuple[float, str]:
    store = path if isinstance(path, str) else f"sqlite:///{path}"
    data_dir = Path(tempfile.gettempdir()) if isinstance(path, str) else path.parent
    env = {**os.environ, "MEMBERBOT_STORE": store, "MEMBERBOT_DATA_KEY": KEY,
           "MEMBERBOT_DATA_DIR": str(data_dir), "WECHAT_TOKEN": "bench",
           "MEMBERBOT_API_SECRET": "bench", "WECOM_CORP_ID": "wwbench",
           "WECOM_SECRET": "bench", "WECOM_API_BASE": "http://127.0.0.1:9"}
    cmd = [str(Path(sys.executable).parent / "memberbot"), "jobs", "run", "points_expiry",
           "--dry-run", "--as-of", AS_OF.isoformat()]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"jobs run failed: {out.stderr.strip()}")
    return wall, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "memberbot-jobs-bench")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    medians: dict[int, float] = {}
    for n in args.sizes:
        print(f"{n:,} members, {DUE:,} due for points_expiry on {AS_OF} ({args.store}):",
              flush=True)
        if args.store == "postgresql":
            path = pg_fill(n, args.rebuild)
        else:
            path = args.dir / f"jobs_{n}.db"
            if args.rebuild or not path.exists():
                fill(path, n)
        timed_run(path)  # warm the page cache once
        walls, summary = [], ""
        for _ in range(args.runs):
            wall, summary = timed_run(path)
            walls.append(wall)
        due = next(x.split()[-1] for x in summary.splitlines() if x.strip().startswith("due"))
        job = next(x.split()[-2] for x in summary.splitlines() if x.strip().startswith("time"))
        medians[n] = statistics.median(walls)
        print(f"  memberbot jobs run points_expiry --dry-run: due {due}; wall "
              f"{', '.join(f'{w:.2f}' for w in walls)} s (median {medians[n]:.2f} s; the job "
              f"itself {job} s)", flush=True)
    if len(medians) >= 2:
        small, big = min(medians), max(medians)
        ratio = medians[big] / medians[small]
        verdict = "OK" if medians[big] < 10 and ratio <= 1.3 else "MISSED"
        print(f"{big:,} vs {small:,}: {medians[big]:.2f} s vs {medians[small]:.2f} s = "
              f"{ratio:.2f}× (target < 10 s and ≤ 1.3×): {verdict}")


if __name__ == "__main__":
    main()
