"""PostgreSQL backend on asyncpg: an update is one read and one commit-function call.

The version check is optimistic: the step runs on what was read, then ``memberbot_commit``
(see ``postgres_schema``) writes the aggregate only if its version has not moved, together with
the idempotency key, index rows, ledger rows, outbox rows and coupon returns, in the one
implicit transaction of that call. Two round trips per update, no lock held while Python runs
the step; measured against ``SELECT … FOR UPDATE`` in ``bench/store_bench.py --pg-lock``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import time
from typing import Any
from urllib.parse import urlparse

import asyncpg

from bot.rules.models import Change, Member

from .base import (
    ConflictError,
    LedgerRow,
    OutboxRow,
    OutOfStock,
    Step,
    Store,
    StoreError,
    StoreUnavailable,
    UniqueTaken,
    outbox_id,
)
from .budgets import PostgresBudgets
from .codec import Codec, dumps, loads
from .postgres_schema import LATEST, MIGRATIONS, TABLES, VERSION_TABLE
from .shared import Batcher, MemberTurns
from .shared import index_rows as _idx_rows

MAX_TRIES = 50
MIGRATION_LOCK = 0x6D656D62  # pg_advisory_lock key: 'memb'

TRANSIENT = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError,
             asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
             asyncpg.AdminShutdownError, asyncpg.DiskFullError, TimeoutError)


def _where(url: str) -> str:
    """The URL without its password, for messages."""
    p = urlparse(url)
    if p.password is None:
        return url
    return p._replace(netloc=p.netloc.replace(f":{p.password}@", "@")).geturl()


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno)
    return " ".join(str(e).split()) or type(e).__name__


def _guarded(fn: Any) -> Any:
    @functools.wraps(fn)
    async def wrapper(self: PostgresStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(self, *args, **kwargs)
        except TRANSIENT as e:
            raise StoreUnavailable(f"PostgreSQL at {self.where} is unavailable "
                                   f"({_why(e)})") from e
    return wrapper


def schema_error(where: str, found: int) -> StoreError:
    return StoreError(f"the PostgreSQL database at {where} has schema version {found}, newer "
                      f"than this memberbot knows ({LATEST}): upgrade memberbot")


async def migrate(conn: asyncpg.Connection, where: str) -> tuple[int, int]:
    """Apply the missing migrations in one transaction; return (version before, after)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(VERSION_TABLE)
        found = await conn.fetchval("SELECT max(version) FROM memberbot_schema") or 0
        if found > LATEST:
            raise schema_error(where, found)
        for version, _, sql in MIGRATIONS:
            if version > found:
                await conn.execute(sql)
        if found < LATEST:
            await conn.execute("DELETE FROM memberbot_schema")
            await conn.execute("INSERT INTO memberbot_schema VALUES ($1)", LATEST)
    return found, LATEST


class _OneLine(logging.Filter):
    """asyncpg's pool logs every failed reconnect during an outage with a traceback: keep the
    line and the cause, drop the traceback (an outage is reported as 'busy', not a bug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OSError | asyncpg.PostgresError | TimeoutError):
            record.args = (record.getMessage(), type(exc).__name__, exc)
            record.msg = "%s (%s: %s)"
            record.exc_info = record.exc_text = None
        return True


_ONE_LINE = _OneLine()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is: memberbot sets no session state (no
    LISTEN, cursors, session locks or SETs), and asyncpg's default reset costs a round trip
    and four statements on every release. An open transaction is still rolled back."""


class PostgresStore(PostgresBudgets, Store):
    kind = "postgresql"

    def __init__(self, url: str, codec: Codec, *, pool_size: int = 8,
                 auto_migrate: bool = True) -> None:
        self.url = url
        self.codec = codec
        self.where = _where(url)
        self.pool_size = pool_size
        self.auto_migrate = auto_migrate
        self.pool: asyncpg.Pool | None = None
        self._turns = MemberTurns()
        self._reads = Batcher(lambda items: self._read_batch(items), inflight=2)
        self._gets = Batcher(lambda ids: self._get_batch(ids), inflight=2)
        self._commits = Batcher(lambda items: self._commit_batch(items), inflight=2)
        self.commits = 0
        self.conflicts = 0
        self.schema: tuple[int, int] | None = None

    # -- life cycle ---------------------------------------------------------------------
    async def open(self) -> None:
        pool_log = logging.getLogger("asyncpg.pool")
        if _ONE_LINE not in pool_log.filters:
            pool_log.addFilter(_ONE_LINE)
        try:
            self.pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size, timeout=5,
                command_timeout=30, server_settings={"application_name": "memberbot"},
                reset=_keep_session)
            async with self.pool.acquire() as c:
                if self.auto_migrate:
                    self.schema = await migrate(c, self.where)
                else:
                    found = await c.fetchval("SELECT max(version) FROM memberbot_schema")
                    if (found or 0) > LATEST:
                        raise schema_error(self.where, found)
                    self.schema = (found or 0, found or 0)
        except StoreError:
            await self.close()
            raise
        except asyncpg.InsufficientPrivilegeError as e:
            await self.close()
            raise StoreError(f"the PostgreSQL user cannot create memberbot's tables at "
                             f"{self.where} ({_why(e)}): grant it CREATE on the database "
                             "(or run `memberbot db upgrade` as its owner)") from e
        except asyncpg.InvalidCatalogNameError as e:
            await self.close()
            raise StoreError(f"no such PostgreSQL database at {self.where} ({_why(e)}): "
                             "create it (createdb) or fix MEMBERBOT_STORE") from e
        except (asyncpg.InvalidAuthorizationSpecificationError,
                asyncpg.InvalidPasswordError) as e:
            await self.close()
            raise StoreError(f"PostgreSQL at {self.where} refused the login ({_why(e)}): fix "
                             "the user or password in MEMBERBOT_STORE") from e
        except ValueError as e:  # asyncpg's URL parser
            await self.close()
            raise StoreError(f"bad PostgreSQL store URL {self.where} ({_why(e)}): use "
                             "postgresql://user[:password]@host:port/database") from e
        except (*TRANSIENT, asyncpg.PostgresError) as e:
            await self.close()
            raise StoreError(f"cannot reach PostgreSQL at {self.where} ({_why(e)}): start "
                             "PostgreSQL or fix MEMBERBOT_STORE") from e

    async def close(self) -> None:
        if self.pool is not None:
            await self._reads.drain()  # let the statements already sent come back
            await self._gets.drain()
            await self._commits.drain()
            pool, self.pool = self.pool, None
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, *TRANSIENT):
                pool.terminate()

    async def ping(self) -> dict[str, Any]:
        try:
            await self.pool.fetchval("SELECT 1")
            return {"kind": self.kind, "ok": True, "url": self.where}
        except (*TRANSIENT, asyncpg.PostgresError, AttributeError) as e:
            return {"kind": self.kind, "ok": False, "url": self.where, "error": _why(e)}

    # -- members ------------------------------------------------------------------------
    async def get(self, member_id: str) -> Member | None:
        row = await self._gets.call(member_id)  # gets waiting together: one statement
        return None if row["data"] is None else self.codec.decode(row["data"], row["version"])

    async def _get_batch(self, ids: list[str]) -> list[Any]:
        return await self.pool.fetch(GET_SQL, ids)

    async def seen(self, member_id: str, key: str) -> tuple[bool, Any]:
        row = await self.pool.fetchrow("SELECT result FROM idem WHERE member_id=$1 AND key=$2",
                                       member_id, key)
        return (False, None) if row is None else (True, loads(row[0]))

    async def update(self, member_id: str, step: Step, *, key: str | None = None) -> Any:
        async with self._turns.turn(member_id):
            return await self._update(member_id, step, key)

    async def _update(self, member_id: str, step: Step, key: str | None) -> Any:
        for attempt in range(MAX_TRIES):
            if attempt:
                self.conflicts += 1
                await asyncio.sleep(random.random() * min(0.05, 0.0005 * 2 ** attempt))
            row = await self._reads.call((member_id, key))
            if row["r"] is not None:
                return loads(row["r"])
            version = row["version"] or 0
            member = None if row["data"] is None else self.codec.decode(row["data"], version)
            change = step(member)
            args = self._commit_args(member_id, key, version, row["idx"], change)
            try:
                if change.claims or change.stock_takes:  # preconditions: a commit of its own
                    res = await self.pool.fetchval(COMMIT_SQL, *args)
                else:
                    res = await self._commits.call(args)
            except asyncpg.SerializationError:
                continue  # the same key committed by another writer: read its result
            except asyncpg.PostgresError as e:  # a precondition: nothing was written
                if e.sqlstate == "MBU01":
                    raise UniqueTaken(e.hint, self._claimed(change, e.hint), e.detail) from None
                if e.sqlstate == "MBS01":
                    raise OutOfStock(e.detail) from None
                raise
            if res == 0:
                self.commits += 1
                return change.result
        raise ConflictError(f"member {member_id}: {MAX_TRIES} concurrent writers in a row, "
                            "update not committed")

    # -- group reads and commits: the updates waiting at one moment share one statement ----
    async def _read_batch(self, items: list[tuple[str, str | None]]) -> list[Any]:
        # a stored result is never NULL (``None`` is stored as ``null``)
        return await self.pool.fetch(READ_SQL, [i[0] for i in items], [i[1] for i in items])

    async def _commit_batch(self, items: list[list[Any]]) -> list[Any]:
        """One transaction for the batch (one fsync); if one item's key was committed
        concurrently (or two processes' batches deadlock) every item commits on its own."""
        if len(items) > 1:
            try:
                return list(await self.pool.fetchval(BATCH_SQL, *_batch_args(items)))
            except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError):
                pass
        out: list[Any] = []
        for args in items:
            try:
                out.append(await self.pool.fetchval(COMMIT_SQL, *args))
            except asyncpg.PostgresError as e:
                out.append(e)
        return out

    def _commit_args(self, member_id: str, key: str | None, version: int, idx: str | None,
                     change: Change) -> list[Any]:
        new = change.member
        new_version, data, new_idx_json = 0, None, None
        names: list[str] = []
        rows: list[tuple[str, int | None, str | None]] = []
        if new is not None:
            new_version = new.version = version + 1
            data = self.codec.encode(new)
            old_idx = loads(idx) or {}
            new_idx = change.indexes if change.indexes is not None else old_idx
            new_idx_json = dumps(new_idx).decode()
            names = [n for n in old_idx.keys() | new_idx.keys()
                     if old_idx.get(n) != new_idx.get(n)]
            rows = [r for n in names for r in _idx_rows(n, new_idx.get(n))]
        es = change.entries
        obs = change.outbox
        sr, cl, st = change.stock_returns, change.claims, change.stock_takes
        # an empty list goes as NULL: nothing to encode, and the function skips the statement
        return [
            member_id, version, new_version, data, new_idx_json, key, dumps(change.result),
            int(time.time()), names or None, *_cols(rows, 3),
            *_cols([(e.kind, e.at, e.points, e.amount_fen, e.ref,
                     dumps(e.data).decode() if e.data else None) for e in es], 6),
            *_cols([(outbox_id(member_id, o["kind"], o["period"]), o["kind"], o["period"],
                     o.get("status", "pending"), dumps(o.get("data", {})).decode())
                    for o in obs], 5),
            *_cols(sr, 2), *_cols([(k, self._uval(k, v)) for k, v in cl], 2), *_cols(st, 2),
        ]

    async def idem_all(self, member_id: str) -> dict[str, Any]:
        rows = await self.pool.fetch("SELECT key, result FROM idem WHERE member_id=$1",
                                     member_id)
        return {r[0]: loads(r[1]) for r in rows}

    @staticmethod
    def _claimed(change: Change, kind: str) -> str:
        return next((v for k, v in change.claims if k == kind), "")

    async def count_members(self) -> int:
        return await self.pool.fetchval("SELECT count(*) FROM members")

    async def member_ids(self, after: str = "", limit: int = 1000) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT id FROM members WHERE id > $1 ORDER BY id LIMIT $2",
            after, limit)
        return [r[0] for r in rows]

    # -- uniques ------------------------------------------------------------------------


    async def claim(self, kind: str, value: str, member_id: str) -> str:
        for _ in range(MAX_TRIES):
            # A racing claim that commits while this statement waits on it is invisible to
            # this statement's snapshot: the next statement sees its owner.
            owner = await self.pool.fetchval(
                "WITH ins AS (INSERT INTO uniques (kind, value, member_id) VALUES ($1,$2,$3) "
                "ON CONFLICT DO NOTHING RETURNING member_id) "
                "SELECT member_id FROM ins UNION ALL "
                "SELECT member_id FROM uniques WHERE kind=$1 AND value=$2 LIMIT 1",
                kind, self._uval(kind, value), member_id)
            if owner is not None:
                return owner
        raise ConflictError(f"unique {kind}: too many concurrent claims and releases")

    async def lookup(self, kind: str, value: str) -> str | None:
        for v in self._uvals(kind, value):
            owner = await self.pool.fetchval(
                "SELECT member_id FROM uniques WHERE kind=$1 AND value=$2", kind, v)
            if owner is not None:
                return owner
        return None

    async def release(self, kind: str, value: str, member_id: str) -> None:
        await self.pool.execute("DELETE FROM uniques WHERE kind=$1 AND value=$2 AND member_id=$3",
                                kind, self._uval(kind, value), member_id)

    # -- indexes ------------------------------------------------------------------------
    async def range(self, index: str, lo: int, hi: int, *, after: str = "",
                    limit: int | None = None) -> list[tuple[str, int]]:
        # The planner cannot tell how many members one index's range holds (the statistics
        # of ``num`` mix every index), and may walk the whole table in member order to find
        # a job's few due members. So count first, at most SPARSE of them, through (name,
        # num): a range with fewer is read through that index and sorted (its cost follows
        # the members due, not the table); a larger one is walked in member order.
        async with self.pool.acquire() as c:
            rows = await c.fetch(*await self._range_query(c, index, lo, hi, after, limit))
        return [(r[0], r[1]) for r in rows]

    @staticmethod
    async def _range_query(c: asyncpg.Connection, index: str, lo: int, hi: int, after: str,
                           limit: int | None) -> tuple[str, ...]:
        if await c.fetchval(RANGE_COUNT_SQL, index, lo, hi, SPARSE) < SPARSE:
            return RANGE_SPARSE_SQL, index, lo, hi, after, limit, SPARSE
        return RANGE_SQL, index, lo, hi, after, limit

    async def tagged(self, index: str, value: str, *, after: str = "",
                     limit: int | None = None) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT member_id FROM idx WHERE name=$1 AND tag=$2 AND member_id > $3 "
            "ORDER BY member_id LIMIT $4", index, value, after, limit)
        return [r[0] for r in rows]

    async def tag_counts(self, index: str) -> dict[str, int]:
        rows = await self.pool.fetch("SELECT tag, count(*) FROM idx WHERE name=$1 AND "
                                     "tag IS NOT NULL GROUP BY tag", index)
        return {r[0]: r[1] for r in rows}

    # -- stock --------------------------------------------------------------------------
    async def stock_init(self, template: str, total: int) -> None:
        await self.pool.execute("INSERT INTO stock (template, remaining, total) VALUES "
                                "($1,$2,$2) ON CONFLICT DO NOTHING", template, total)

    async def stock_set(self, template: str, remaining: int) -> None:
        await self.pool.execute(
            "INSERT INTO stock (template, remaining, total) VALUES ($1,$2,$2) "
            "ON CONFLICT (template) DO UPDATE SET remaining=excluded.remaining",
            template, remaining)

    async def stock_take(self, template: str, key: str) -> bool:
        return await self.pool.fetchval("SELECT memberbot_stock_take($1, $2)", template, key)

    async def stock_return(self, template: str, key: str) -> None:
        await self.pool.execute("SELECT memberbot_stock_return($1, $2)", template, key)

    async def stock(self, template: str) -> int | None:
        return await self.pool.fetchval("SELECT remaining FROM stock WHERE template=$1",
                                        template)

    # -- ledger and outbox --------------------------------------------------------------
    async def ledger(self, *, member_id: str | None = None, since: int | None = None,
                     until: int | None = None, kinds: list[str] | None = None,
                     after_id: int = 0, limit: int = 10000,
                     newest_first: bool = False) -> list[LedgerRow]:
        q = ["SELECT id, member_id, kind, at, points, amount_fen, ref, data FROM ledger "
             "WHERE id > $1"]
        args: list[Any] = [after_id]
        if member_id is None:
            # Ids are drawn when a row is inserted, not when its transaction commits: a
            # transaction still running may commit a smaller id than rows already visible. A
            # reader that pages by id (the changes feed, webhooks) would pass it for good, so
            # rows are shown only once no writing transaction that started before their id was
            # drawn is still running (any id it draws later is larger than theirs).
            q.append("AND drawn_at < (SELECT coalesce(min(xact_start), 'infinity') "
                     "FROM pg_stat_activity WHERE datname = current_database() "
                     "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL)")
        for cond, val in (("member_id = ${}", member_id), ("at >= ${}", since),
                          ("at < ${}", until), ("kind = ANY(${})", kinds or None)):
            if val is not None:
                args.append(val)
                q.append("AND " + cond.format(len(args)))
        args.append(max(limit, 0))
        q.append(f"ORDER BY id {'DESC' if newest_first else ''} LIMIT ${len(args)}")
        return [LedgerRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], loads(r[7]) or {})
                for r in await self.pool.fetch(" ".join(q), *args)]

    async def outbox(self, *, status: str | None = None, kind: str | None = None,
                     limit: int = 10000) -> list[OutboxRow]:
        rows = await self.pool.fetch(
            "SELECT id, member_id, kind, period, status, created_at, data FROM outbox "
            "WHERE ($1::text IS NULL OR status=$1) AND ($2::text IS NULL OR kind=$2) "
            "ORDER BY created_at, id LIMIT $3", status, kind, max(limit, 0))
        return [OutboxRow(r[0], r[1], r[2], r[3], r[4], r[5], loads(r[6]) or {}) for r in rows]

    async def outbox_set(self, row_id: str, status: str, data: dict[str, Any] | None = None,
                         *, expect: str | None = None) -> bool:
        # one statement: the row lock orders racing writers, each sees the winner's status
        n = await self.pool.fetchval(
            "WITH u AS (UPDATE outbox SET status=$2, data=data || $3::jsonb, updated_at=$4 "
            "WHERE id=$1 AND ($5::text IS NULL OR status=$5) RETURNING 1) SELECT count(*) FROM u",
            row_id, status, dumps(data or {}).decode(), int(time.time()), expect)
        return n == 1

    # -- kv -----------------------------------------------------------------------------
    async def kv_get(self, key: str) -> str | None:
        return await self.pool.fetchval(
            "SELECT value FROM kv WHERE key=$1 AND (expires IS NULL OR expires > $2)",
            key, time.time())

    async def kv_set(self, key: str, value: str, *, ttl: float | None = None,
                     only_new: bool = False, expect: str | None = None) -> bool:
        now = time.time()
        expires = None if ttl is None else now + ttl
        if only_new and expect is not None:
            return False
        if expect is not None:
            sql = ("UPDATE kv SET value=$2, expires=$3 WHERE key=$1 AND value=$5 AND "
                   "(expires IS NULL OR expires > $4) RETURNING 1")
        elif only_new:
            sql = ("INSERT INTO kv (key, value, expires) VALUES ($1,$2,$3) ON CONFLICT (key) "
                   "DO UPDATE SET value=excluded.value, expires=excluded.expires "
                   "WHERE kv.expires IS NOT NULL AND kv.expires <= $4 RETURNING 1")
        else:
            sql = ("INSERT INTO kv (key, value, expires) VALUES ($1,$2,$3) ON CONFLICT (key) "
                   "DO UPDATE SET value=excluded.value, expires=excluded.expires RETURNING 1")
        args = [key, value, expires] + ([now] if only_new or expect is not None else [])
        if expect is not None:
            args.append(expect)
        return await self.pool.fetchval(sql, *args) == 1

    async def kv_delete(self, key: str, *, expect: str | None = None) -> bool:
        n = await self.pool.fetchval(
            "WITH d AS (DELETE FROM kv WHERE key=$1 AND ($2::text IS NULL OR value=$2) "
            "RETURNING expires) SELECT count(*) FROM d WHERE expires IS NULL OR expires > $3",
            key, expect, time.time())
        return n == 1

    async def incr_window(self, key: str, ttl: float) -> int:
        now = time.time()
        return int(await self.pool.fetchval(
            "INSERT INTO kv (key, value, expires) VALUES ($1, '1', $2) ON CONFLICT (key) DO "
            "UPDATE SET value = CASE WHEN kv.expires <= $3 THEN '1' "
            "ELSE (kv.value::bigint + 1)::text END, "
            "expires = CASE WHEN kv.expires <= $3 THEN excluded.expires ELSE kv.expires END "
            "RETURNING value", key, now + ttl, now))

    # -- operators ----------------------------------------------------------------------
    async def truncate(self) -> None:
        """Empty every table (tests and benchmarks)."""
        await self.pool.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")


def _cols(rows: list[tuple[Any, ...]], n: int) -> list[list[Any] | None]:
    """Rows as ``n`` column arrays, each None when there are no rows."""
    if not rows:
        return [None] * n
    return [list(c) for c in zip(*rows, strict=True)]


def _batch_args(items: list[list[Any]]) -> list[Any]:
    """``memberbot_commit`` arguments of several items as ``memberbot_commit_batch``'s: the
    items' scalars as arrays, their rows' arrays concatenated with the item number (1-based)
    in front."""
    out: list[Any] = [[a[i] for a in items] for i in (0, 1, 2, 3, 4, 5, 6)]
    out.append(items[0][7])
    for first, n in ((8, 1), (9, 3), (12, 6), (18, 5), (23, 2)):
        owner: list[int] = []
        cols: list[list[Any]] = [[] for _ in range(n)]
        for k, a in enumerate(items, 1):
            if a[first] is None:
                continue
            owner += [k] * len(a[first])
            for c in range(n):
                cols[c] += a[first + c]
        out += [owner or None, *(c or None for c in cols)]
    return out


SPARSE = 50_000
RANGE_SQL = ("SELECT member_id, num FROM idx WHERE name=$1 AND num BETWEEN $2 AND $3 "
             "AND member_id > $4 ORDER BY member_id LIMIT $5")
# ORDER BY name, num with a LIMIT: read in idx_num's order, never a scan of the table
RANGE_COUNT_SQL = ("SELECT count(*) FROM (SELECT 1 FROM idx WHERE name=$1 AND num BETWEEN $2 "
                   "AND $3 ORDER BY name, num LIMIT $4) AS s")
RANGE_SPARSE_SQL = ("SELECT member_id, num FROM (SELECT member_id, num FROM idx WHERE name=$1 "
                    "AND num BETWEEN $2 AND $3 ORDER BY name, num LIMIT $6) AS s "
                    "WHERE member_id > $4 ORDER BY member_id LIMIT $5")
# each member read through the primary key (OFFSET 0 keeps the planner from turning the
# look-ups into a join that may scan the table)
READ_SQL = ("SELECT (SELECT result FROM idem WHERE member_id=x.id AND key=x.k) AS r, "
            "m.version, m.data, m.idx FROM unnest($1::text[], $2::text[]) WITH ORDINALITY "
            "AS x(id, k, n) LEFT JOIN LATERAL (SELECT version, data, idx FROM members "
            "WHERE id=x.id OFFSET 0) AS m ON true ORDER BY x.n")
GET_SQL = ("SELECT m.version, m.data FROM unnest($1::text[]) WITH ORDINALITY AS x(id, n) "
           "LEFT JOIN LATERAL (SELECT version, data FROM members WHERE id=x.id OFFSET 0) AS m "
           "ON true ORDER BY x.n")
BATCH_SQL = ("SELECT memberbot_commit_batch($1,$2,$3,$4,$5::jsonb[],$6,$7,$8,$9,$10,$11,$12,"
             "$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,$28,$29,$30)")
COMMIT_SQL = ("SELECT memberbot_commit($1,$2,$3,$4,$5::jsonb,$6,$7,$8,$9,$10,$11,$12,$13,$14,"
              "$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,$28,$29)")

# Every contract call answers an outage with one StoreUnavailable line ("busy, retry").
for _name in Store.__abstractmethods__ - {"open", "close", "ping"}:
    setattr(PostgresStore, _name, _guarded(getattr(PostgresStore, _name)))
