"""The SQLite backend's one writer: group commit.

Every write (member update, claim, stock, outbox, kv) is a small function queued here. The
functions waiting at one moment run on the event loop in one transaction, each in its own
savepoint (a step that raises rolls back only itself), the COMMIT (its fsync) runs on the
writer thread while the loop serves the next requests, and only then are the callers' futures
resolved: nothing is acknowledged before it is durable, and one fsync serves a whole burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter  # not through `time`: tests replace the store's wall clock
from typing import Any

from .base import StoreUnavailable

log = logging.getLogger("memberbot.store")

BATCH_MAX = 512
BATCH_SLICE = 0.005  # seconds of statements on the event loop per group commit
BUSY_MS = 30_000  # how long a write waits for another process's lock (on the writer thread)
PURGE_EVERY = 5000  # commits


def _locked(e: sqlite3.OperationalError) -> bool:
    """Another connection holds the lock (SQLITE_BUSY or SQLITE_LOCKED, any extended code)."""
    return (getattr(e, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_BUSY,
                                                          sqlite3.SQLITE_LOCKED)


def _purge(c: sqlite3.Connection) -> None:
    c.execute("DELETE FROM kv WHERE expires <= ?", (time.time(),))


def _orphan(loop: asyncio.AbstractEventLoop) -> asyncio.Future:
    """A future nobody awaits (the purge): its failure is logged, not left unretrieved."""
    fut = loop.create_future()
    fut.add_done_callback(lambda f: f.cancelled() or f.exception() is None or log.warning(
        "expired kv not purged: %s", f.exception()))
    return fut


def single(fn: Any) -> Any:
    """Mark a write of exactly one SQL statement: SQLite makes it atomic by itself."""
    fn.single = True
    return fn


class GroupCommit:
    """The writer half of :class:`storage.sqlite.SQLiteStore`: its writer connection ``_w``,
    thread ``_pool``, queue and task (set up by the store's ``open``)."""

    _w: sqlite3.Connection | None
    _pool: ThreadPoolExecutor | None
    _queue: list[tuple[Any, asyncio.Future]]
    _wake: asyncio.Event | None
    _task: asyncio.Task | None
    _closing: bool
    commits: int
    _purge_due: bool

    async def _write(self, fn: Any) -> Any:
        if self._task is None or self._closing:
            raise StoreUnavailable("the store is closed")
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((fn, fut))
        self._wake.set()
        return await fut

    async def _writer(self) -> None:
        """Group commit: the updates waiting at this moment run on the event loop in one
        transaction, each in its own savepoint, and the COMMIT (its fsync) runs on the
        writer thread while the loop serves the next requests; the callers' futures resolve
        after the commit. Statements run on the loop because a writer thread would give up
        and take back the GIL around every statement while the loop holds it (a convoy that
        capped check-ins near 1,100/s, PERFORMANCE.md); the fsync is one call, so one
        hand-over per batch. A batch stops taking updates after ``BATCH_SLICE`` seconds of
        statements (a job's burst does not stall the callbacks) or ``BATCH_MAX`` updates."""
        loop = asyncio.get_running_loop()
        while not self._closing or self._queue:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:BATCH_MAX], self._queue[BATCH_MAX:]
                try:
                    outcomes = await self._group(loop, batch)
                except Exception as e:  # the writer lives on: a failed batch fails alone
                    if not isinstance(e, sqlite3.Error):
                        log.exception("SQLite writer: a batch failed")
                    err = StoreUnavailable(f"SQLite write failed: {e}")
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(err)
                    continue
                if len(outcomes) < len(batch):  # the slice ran out: the rest goes next
                    self._queue[:0] = batch[len(outcomes):]
                for (_, fut), (ok, val) in zip(batch, outcomes, strict=False):
                    if fut.done():
                        continue
                    if ok:
                        fut.set_result(val)
                    else:
                        fut.set_exception(val)
                if self._purge_due:  # after the acknowledgements: never holds them up
                    self._purge_due = False
                    self._queue.append((single(_purge), _orphan(loop)))

    async def _group(self, loop: asyncio.AbstractEventLoop,
                     batch: list[tuple[Any, asyncio.Future]]) -> list[tuple[bool, Any]]:
        """One transaction for (the start of) ``batch``, committed; or an error, nothing."""
        c = self._w
        try:
            c.execute("BEGIN IMMEDIATE")  # busy_timeout 0: never waits on the event loop
        except sqlite3.OperationalError as e:
            if not _locked(e):
                raise
            # another process (a `memberbot jobs` run, a backup) holds the write lock: wait
            # for it on the writer thread, not on the loop
            return await loop.run_in_executor(self._pool, self._batch, batch)
        commit = None
        try:
            out = self._run_batch(batch, perf_counter() + BATCH_SLICE)
            commit = loop.run_in_executor(self._pool, self._commit)
            await asyncio.shield(commit)
        except BaseException:
            # a COMMIT still running on the thread (the writer cancelled at shutdown) ends
            # there, and close() waits for the thread; else nothing of the batch stays
            if commit is None or commit.done():
                self._rollback()
            raise
        return out

    def _batch(self, batch: list[tuple[Any, asyncio.Future]]) -> list[tuple[bool, Any]]:
        """On the writer thread, waiting for another process's write lock: the batch in one
        transaction, committed, or nothing."""
        c = self._w
        c.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        try:
            c.execute("BEGIN IMMEDIATE")
            out = self._run_batch(batch, None)
            self._commit()
        except BaseException:
            self._rollback()
            raise
        finally:
            c.execute("PRAGMA busy_timeout=0")
        return out

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._w.in_transaction:
                self._w.execute("ROLLBACK")

    def _run_batch(self, batch: list[tuple[Any, asyncio.Future]],
                   until: float | None) -> list[tuple[bool, Any]]:
        """The batch's statements in the open transaction (``_commit`` ends it), until the
        ``perf_counter`` deadline ``until`` (at least one)."""
        c = self._w
        out: list[tuple[bool, Any]] = []
        for fn, _ in batch:
            if until is not None and out and perf_counter() > until:
                break
            if getattr(fn, "single", False):  # one statement: atomic without a savepoint
                try:
                    out.append((True, fn(c)))
                except sqlite3.OperationalError:
                    raise
                except Exception as e:
                    out.append((False, e))
                continue
            c.execute("SAVEPOINT op")
            try:
                out.append((True, fn(c)))
                c.execute("RELEASE op")
            except sqlite3.OperationalError:
                raise  # disk full, I/O error: the whole batch fails, nothing is acknowledged
            except Exception as e:  # a step's own refusal or bug: only this op rolls back
                c.execute("ROLLBACK TO op")
                c.execute("RELEASE op")
                out.append((False, e))
        return out

    def _commit(self) -> None:
        """COMMIT (one fsync for the batch); every ``PURGE_EVERY`` commits the purge of
        expired kv (counters, locks, marks) is queued as a write of its own."""
        self._w.execute("COMMIT")
        self.commits += 1
        if self.commits % PURGE_EVERY == 0:
            self._purge_due = True
