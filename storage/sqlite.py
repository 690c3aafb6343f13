"""SQLite backend: WAL, one writer connection that group-commits, reads inline.

Every write (member update, claim, stock, outbox, kv) is a small function queued to the one
writer, which group-commits them (:mod:`storage.sqlite_writer`); reads go to a second
connection on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bot.rules.models import Change, Member

from .base import (
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
from .budgets import SQLiteBudgets
from .codec import Codec, dumps, loads
from .shared import index_rows as _idx_rows
from .sqlite_schema import SCHEMA
from .sqlite_writer import BUSY_MS, GroupCommit, single


class SQLiteStore(SQLiteBudgets, GroupCommit, Store):
    kind = "sqlite"
    one_process = True

    def __init__(self, path: str, codec: Codec, *, synchronous: str = "FULL") -> None:
        self.path = path
        self.codec = codec
        self.synchronous = synchronous
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._queue: list[tuple[Any, asyncio.Future]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self.commits = 0
        self._purge_due = False
        self.conflicts = 0  # SQLite serialises writers; kept for the metrics contract

    # -- life cycle ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() not in ("wal", "memory"):  # readers beside a COMMIT need WAL
            c.close()
            raise sqlite3.OperationalError(f"the database cannot use WAL (journal mode {mode})")
        c.execute(f"PRAGMA synchronous={self.synchronous}")
        c.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        return c

    async def open(self) -> None:
        p = Path(self.path)
        if self.path != ":memory:":
            try:
                p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder {p.parent} for the SQLite database "
                                 f"({e.strerror}): set MEMBERBOT_STORE to a writable path") from e
            if not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
                raise StoreError(f"cannot write the SQLite database {p}: the path is not "
                                 "writable; set MEMBERBOT_STORE to a writable path")
            with contextlib.suppress(FileExistsError):
                # owner-only from the start; SQLite gives -wal and -shm the database's mode
                os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            self._w = self._connect()
            self._w.executescript(SCHEMA)
            self._w.execute("PRAGMA busy_timeout=0")  # see _group: the loop never waits
            self._r = self._connect()
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the SQLite database {p}: {e}") from e
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="memberbot-sqlite")
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._writer())

    async def close(self) -> None:
        if self._task is not None:
            self._closing = True
            self._wake.set()
            if not self._task.done():
                # drains what is queued, then returns; at shutdown the loop may cancel it
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for c in (self._w, self._r):
            if c is not None:
                c.close()
        self._w = self._r = None

    async def ping(self) -> dict[str, Any]:
        try:
            self._r.execute("SELECT 1").fetchone()
            return {"kind": self.kind, "ok": True, "path": self.path}
        except (sqlite3.Error, AttributeError) as e:
            return {"kind": self.kind, "ok": False, "error": str(e)}

    # -- members ----------------------------------------------------------------------------
    async def get(self, member_id: str) -> Member | None:
        row = self._r.execute("SELECT version, data FROM members WHERE id=?",
                              (member_id,)).fetchone()
        return None if row is None else self.codec.decode(row[1], row[0])

    async def seen(self, member_id: str, key: str) -> tuple[bool, Any]:
        row = self._r.execute("SELECT result FROM idem WHERE member_id=? AND key=?",
                              (member_id, key)).fetchone()
        return (False, None) if row is None else (True, loads(row[0]))

    async def update(self, member_id: str, step: Step, *, key: str | None = None) -> Any:
        return await self._write(lambda c: self._apply(c, member_id, step, key))

    def _apply(self, c: sqlite3.Connection, member_id: str, step: Step, key: str | None) -> Any:
        if key is not None:
            row = c.execute("SELECT result FROM idem WHERE member_id=? AND key=?",
                            (member_id, key)).fetchone()
            if row is not None:
                return loads(row[0])
        row = c.execute("SELECT version, data, idx FROM members WHERE id=?",
                        (member_id,)).fetchone()
        member = None if row is None else self.codec.decode(row[1], row[0])
        change = step(member)
        now = int(time.time())
        self._check_preconditions(c, member_id, change)
        new = change.member
        if new is not None:
            version = (row[0] if row else 0) + 1
            new.version = version
            data = self.codec.encode(new)
            old_idx = loads(row[2]) if row and row[2] else {}
            new_idx = change.indexes if change.indexes is not None else old_idx
            if row is None:
                c.execute("INSERT INTO members (id, version, data, idx) VALUES (?,?,?,?)",
                          (member_id, version, data, dumps(new_idx)))
            else:
                cur = c.execute("UPDATE members SET version=?, data=?, idx=? "
                                "WHERE id=? AND version=?",
                                (version, data, dumps(new_idx), member_id, row[0]))
                if cur.rowcount != 1:  # cannot happen under BEGIN IMMEDIATE; guard anyway
                    raise StoreUnavailable("version conflict")
            self._write_idx(c, member_id, old_idx, new_idx)
        if len(change.entries) == 1:
            e = change.entries[0]
            c.execute("INSERT INTO ledger (member_id, kind, at, points, amount_fen, ref, data) "
                      "VALUES (?,?,?,?,?,?,?)", (member_id, e.kind, e.at, e.points,
                                                 e.amount_fen, e.ref,
                                                 dumps(e.data) if e.data else None))
        elif change.entries:
            c.executemany(
                "INSERT INTO ledger (member_id, kind, at, points, amount_fen, ref, data) "
                "VALUES (?,?,?,?,?,?,?)",
                [(member_id, e.kind, e.at, e.points, e.amount_fen, e.ref,
                  dumps(e.data) if e.data else None) for e in change.entries])
        for ob in change.outbox:
            rid = outbox_id(member_id, ob["kind"], ob["period"])
            c.execute("INSERT OR IGNORE INTO outbox (id, member_id, kind, period, status, "
                      "created_at, updated_at, data) VALUES (?,?,?,?,?,?,?,?)",
                      (rid, member_id, ob["kind"], ob["period"], ob.get("status", "pending"),
                       now, now, dumps(ob.get("data", {}))))
        for template, skey in change.stock_returns:
            self._stock_return(c, template, skey)
        for kind, value in change.claims:
            c.execute("INSERT OR IGNORE INTO uniques (kind, value, member_id) VALUES (?,?,?)",
                      (kind, self._uval(kind, value), member_id))
        for template, skey in change.stock_takes:
            self._stock_take(c, template, skey)
        if key is not None:
            c.execute("INSERT INTO idem (member_id, key, result, at) VALUES (?,?,?,?)",
                      (member_id, key, dumps(change.result), now))
        return change.result

    def _check_preconditions(self, c: sqlite3.Connection, member_id: str,
                             change: Change) -> None:
        """Before the first write: the change's claims are free and its stock is there."""
        for kind, value in change.claims:
            row = c.execute("SELECT member_id FROM uniques WHERE kind=? AND value=?",
                            (kind, self._uval(kind, value))).fetchone()
            if row is not None and row[0] != member_id:
                raise UniqueTaken(kind, value, row[0])
        for template, skey in change.stock_takes:
            if not self._holds(c, template, skey) and not c.execute(
                    "SELECT 1 FROM stock WHERE template=? AND remaining>0",
                    (template,)).fetchone():
                raise OutOfStock(template)

    @staticmethod
    def _write_idx(c: sqlite3.Connection, member_id: str, old: dict, new: dict) -> None:
        """Only the index values that changed; a value of one row (a number, one tag) that
        stays one row is updated in place, so the row and the B-tree pages of the indexes
        whose column did not change are not written again."""
        gone, rows = [], []
        for name in set(old) | set(new):
            if old.get(name) == new.get(name):
                continue
            before, after = _idx_rows(name, old.get(name)), _idx_rows(name, new.get(name))
            if len(before) == 1 and len(after) == 1:
                (_, n0, _), (_, num, tag) = before[0], after[0]
                if n0 is not None and num is not None:  # a number moves: one index entry
                    c.execute("UPDATE idx SET num=? WHERE name=? AND member_id=?",
                              (num, name, member_id))
                else:
                    c.execute("UPDATE idx SET num=?, tag=? WHERE name=? AND member_id=?",
                              (num, tag, name, member_id))
                continue
            if before:
                gone.append((name, member_id))
            rows += [(n, member_id, num, tag) for n, num, tag in after]
        if gone:
            c.executemany("DELETE FROM idx WHERE name=? AND member_id=?", gone)
        if rows:
            c.executemany("INSERT INTO idx (name, member_id, num, tag) VALUES (?,?,?,?)", rows)

    async def idem_all(self, member_id: str) -> dict[str, Any]:
        rows = self._r.execute("SELECT key, result FROM idem WHERE member_id=? ORDER BY at",
                               (member_id,)).fetchall()
        return {k: loads(r) for k, r in rows}

    def online_backup(self, dest: str) -> int:
        """Copy the database to ``dest`` with SQLite's online backup API: one consistent
        snapshot while writers go on (WAL). Returns the pages copied."""
        src = sqlite3.connect(self.path, timeout=30)
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
            return dst.execute("PRAGMA page_count").fetchone()[0]
        finally:
            dst.close()
            src.close()

    async def count_members(self) -> int:
        return self._r.execute("SELECT COUNT(*) FROM members").fetchone()[0]

    async def member_ids(self, after: str = "", limit: int = 1000) -> list[str]:
        rows = self._r.execute("SELECT id FROM members WHERE id > ? ORDER BY id LIMIT ?",
                               (after, limit)).fetchall()
        return [r[0] for r in rows]

    # -- uniques ----------------------------------------------------------------------------


    async def claim(self, kind: str, value: str, member_id: str) -> str:
        v = self._uval(kind, value)

        def fn(c: sqlite3.Connection) -> str:
            c.execute("INSERT OR IGNORE INTO uniques (kind, value, member_id) VALUES (?,?,?)",
                      (kind, v, member_id))
            return c.execute("SELECT member_id FROM uniques WHERE kind=? AND value=?",
                             (kind, v)).fetchone()[0]

        return await self._write(fn)

    async def lookup(self, kind: str, value: str) -> str | None:
        for v in self._uvals(kind, value):
            row = self._r.execute("SELECT member_id FROM uniques WHERE kind=? AND value=?",
                                  (kind, v)).fetchone()
            if row:
                return row[0]
        return None

    async def release(self, kind: str, value: str, member_id: str) -> None:
        v = self._uval(kind, value)
        await self._write(lambda c: c.execute(
            "DELETE FROM uniques WHERE kind=? AND value=? AND member_id=?",
            (kind, v, member_id)) and None)

    # -- indexes ----------------------------------------------------------------------------
    async def range(self, index: str, lo: int, hi: int, *, after: str = "",
                    limit: int | None = None) -> list[tuple[str, int]]:
        rows = self._r.execute(
            "SELECT member_id, num FROM idx WHERE name=? AND num BETWEEN ? AND ? "
            "AND member_id > ? ORDER BY member_id LIMIT ?",
            (index, lo, hi, after, -1 if limit is None else limit)).fetchall()
        return [(r[0], r[1]) for r in rows]

    async def tagged(self, index: str, value: str, *, after: str = "",
                     limit: int | None = None) -> list[str]:
        rows = self._r.execute(
            "SELECT member_id FROM idx WHERE name=? AND tag=? AND member_id > ? "
            "ORDER BY member_id LIMIT ?",
            (index, value, after, -1 if limit is None else limit)).fetchall()
        return [r[0] for r in rows]

    async def tag_counts(self, index: str) -> dict[str, int]:
        rows = self._r.execute("SELECT tag, COUNT(*) FROM idx WHERE name=? AND tag IS NOT NULL "
                               "GROUP BY tag", (index,)).fetchall()
        return dict(rows)

    # -- stock ------------------------------------------------------------------------------
    async def stock_init(self, template: str, total: int) -> None:
        await self._write(lambda c: c.execute(
            "INSERT OR IGNORE INTO stock (template, remaining, total) VALUES (?,?,?)",
            (template, total, total)) and None)

    async def stock_set(self, template: str, remaining: int) -> None:
        await self._write(lambda c: c.execute(
            "INSERT INTO stock (template, remaining, total) VALUES (?,?,?) ON CONFLICT(template) "
            "DO UPDATE SET remaining=excluded.remaining", (template, remaining, remaining))
            and None)

    @staticmethod
    def _holds(c: sqlite3.Connection, template: str, key: str) -> bool:
        """Whether ``key`` holds a unit: taken and not given back since."""
        return {r[0] for r in c.execute("SELECT dir FROM stock_log WHERE template=? AND key=?",
                                        (template, key))} == {"take"}

    @classmethod
    def _stock_take(cls, c: sqlite3.Connection, template: str, key: str) -> bool:
        # a key whose unit went back (a refused exchange retried) takes a new one
        if cls._holds(c, template, key):
            return True
        cur = c.execute("UPDATE stock SET remaining=remaining-1 "
                        "WHERE template=? AND remaining>0", (template,))
        if cur.rowcount != 1:
            return False
        c.execute("DELETE FROM stock_log WHERE template=? AND key=? AND dir='ret'",
                  (template, key))
        c.execute("INSERT OR IGNORE INTO stock_log (template, key, dir) VALUES (?,?,'take')",
                  (template, key))
        return True

    async def stock_take(self, template: str, key: str) -> bool:
        return await self._write(lambda c: self._stock_take(c, template, key))

    @staticmethod
    def _stock_return(c: sqlite3.Connection, template: str, key: str) -> None:
        if not c.execute("SELECT 1 FROM stock_log WHERE template=? AND key=? AND dir='take'",
                         (template, key)).fetchone():
            return
        cur = c.execute("INSERT OR IGNORE INTO stock_log (template, key, dir) VALUES (?,?,'ret')",
                        (template, key))
        if cur.rowcount == 1:
            c.execute("UPDATE stock SET remaining=remaining+1 WHERE template=?", (template,))

    async def stock_return(self, template: str, key: str) -> None:
        await self._write(lambda c: self._stock_return(c, template, key))

    async def stock(self, template: str) -> int | None:
        row = self._r.execute("SELECT remaining FROM stock WHERE template=?",
                              (template,)).fetchone()
        return row[0] if row else None

    # -- ledger and outbox ------------------------------------------------------------------
    async def ledger(self, *, member_id: str | None = None, since: int | None = None,
                     until: int | None = None, kinds: list[str] | None = None,
                     after_id: int = 0, limit: int = 10000,
                     newest_first: bool = False) -> list[LedgerRow]:
        q = ["SELECT id, member_id, kind, at, points, amount_fen, ref, data FROM ledger "
             "WHERE id > ?"]
        args: list[Any] = [after_id]
        if member_id is not None:
            q.append("AND member_id = ?")
            args.append(member_id)
        if since is not None:
            q.append("AND at >= ?")
            args.append(since)
        if until is not None:
            q.append("AND at < ?")
            args.append(until)
        if kinds:
            q.append(f"AND kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        q.append(f"ORDER BY id {'DESC' if newest_first else ''} LIMIT ?")
        args.append(limit)
        return [LedgerRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], loads(r[7]) or {})
                for r in self._r.execute(" ".join(q), args).fetchall()]

    async def outbox(self, *, status: str | None = None, kind: str | None = None,
                     limit: int = 10000) -> list[OutboxRow]:
        q = ["SELECT id, member_id, kind, period, status, created_at, data FROM outbox WHERE 1=1"]
        args: list[Any] = []
        if status is not None:
            q.append("AND status = ?")
            args.append(status)
        if kind is not None:
            q.append("AND kind = ?")
            args.append(kind)
        q.append("ORDER BY created_at, id LIMIT ?")
        args.append(limit)
        return [OutboxRow(r[0], r[1], r[2], r[3], r[4], r[5], loads(r[6]) or {})
                for r in self._r.execute(" ".join(q), args).fetchall()]

    async def outbox_set(self, row_id: str, status: str, data: dict[str, Any] | None = None,
                         *, expect: str | None = None) -> bool:
        def fn(c: sqlite3.Connection) -> bool:
            row = c.execute("SELECT status, data FROM outbox WHERE id=?", (row_id,)).fetchone()
            if row is None or (expect is not None and row[0] != expect):
                return False
            merged = {**(loads(row[1]) or {}), **(data or {})}
            c.execute("UPDATE outbox SET status=?, data=?, updated_at=? WHERE id=?",
                      (status, dumps(merged), int(time.time()), row_id))
            return True

        return await self._write(fn)

    # -- kv -----------------------------------------------------------------------------------
    async def kv_get(self, key: str) -> str | None:
        if self._r is None:
            raise StoreUnavailable("the store is closed")
        row = self._r.execute("SELECT value, expires FROM kv WHERE key=?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= time.time()):
            return None
        return row[0]

    async def kv_set(self, key: str, value: str, *, ttl: float | None = None,
                     only_new: bool = False, expect: str | None = None) -> bool:
        if expect is None:  # one statement (a callback nonce, a mark): no savepoint
            now = time.time()
            expires = None if ttl is None else now + ttl
            if only_new:  # written unless a live value is there
                return await self._write(single(lambda c: c.execute(
                    "INSERT INTO kv (key, value, expires) VALUES (?,?,?) ON CONFLICT(key) "
                    "DO UPDATE SET value=excluded.value, expires=excluded.expires "
                    "WHERE kv.expires IS NOT NULL AND kv.expires <= ? RETURNING 1",
                    (key, value, expires, now)).fetchall() != []))
            return await self._write(single(lambda c: c.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?,?,?)",
                (key, value, expires)).rowcount == 1))

        def fn(c: sqlite3.Connection) -> bool:
            now = time.time()
            row = c.execute("SELECT value, expires FROM kv WHERE key=?", (key,)).fetchone()
            live = row is not None and (row[1] is None or row[1] > now)
            if only_new and live:
                return False
            if expect is not None and (not live or row[0] != expect):
                return False
            c.execute("INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?,?,?)",
                      (key, value, None if ttl is None else now + ttl))
            return True

        return await self._write(fn)

    async def kv_delete(self, key: str, *, expect: str | None = None) -> bool:
        def fn(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM kv WHERE key=? AND expires <= ?", (key, time.time()))
            if expect is None:
                return c.execute("DELETE FROM kv WHERE key=?", (key,)).rowcount == 1
            return c.execute("DELETE FROM kv WHERE key=? AND value=?",
                             (key, expect)).rowcount == 1

        return await self._write(fn)

    async def incr_window(self, key: str, ttl: float) -> int:
        now = time.time()
        # one statement (a rate-limit counter is on the callback path): restart the window
        # when it has expired, else count on
        return await self._write(single(lambda c: c.execute(
            "INSERT INTO kv (key, value, expires) VALUES (?, '1', ?) ON CONFLICT(key) DO UPDATE "
            "SET value = CASE WHEN expires <= ? THEN '1' ELSE CAST(value AS INTEGER) + 1 END, "
            "expires = CASE WHEN expires <= ? THEN excluded.expires ELSE expires END "
            "RETURNING CAST(value AS INTEGER)", (key, now + ttl, now, now)).fetchone()[0]))
