"""The SQLite writer: statements on the event loop, the COMMIT on its thread, and what keeps
the loop free (another process's lock, a job's burst) and the writer alive (a failed batch)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import pytest

import storage.sqlite_writer as writer
from storage import StoreUnavailable, open_store


@pytest.fixture
async def store(tmp_path: Path):
    s = open_store(f"sqlite:///{tmp_path}/w.db", os.urandom(32))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_a_write_waits_for_another_process_lock_off_the_event_loop(store):
    other = sqlite3.connect(store.path, check_same_thread=False, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process (a `memberbot jobs` run) writes
    held = threading.Event()
    threading.Timer(0.6, lambda: (other.execute("COMMIT"), held.set())).start()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not held.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    t = asyncio.create_task(ticker())
    assert await store.kv_set("k", "v")  # committed once the lock is free
    await t
    assert held.is_set() and await store.kv_get("k") == "v"
    assert ticks >= 5  # the loop kept serving while the write waited for the lock
    assert store._w.execute("PRAGMA busy_timeout").fetchone()[0] == 0  # the loop never waits
    other.close()


async def test_a_batch_that_fails_unexpectedly_fails_alone_and_the_writer_lives_on(
        store, monkeypatch):
    real = store._run_batch
    calls = []

    def broken(batch, until):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("a bug in the batch")
        return real(batch, until)

    monkeypatch.setattr(store, "_run_batch", broken)
    with pytest.raises(StoreUnavailable):
        await store.kv_set("a", "1")
    assert await store.kv_set("b", "2")  # the next write is served
    assert await store.kv_get("a") is None and await store.kv_get("b") == "2"
    assert not store._w.in_transaction


async def test_a_burst_is_cut_into_slices_each_committed_in_order(store, monkeypatch):
    monkeypatch.setattr(writer, "BATCH_SLICE", 0.0)  # every slice takes one write
    before = store.commits
    n = 40
    done = await asyncio.gather(*(store.incr_window("counter", 60) for _ in range(n)))
    assert sorted(done) == list(range(1, n + 1))
    assert done == list(range(1, n + 1))  # in the order they were queued
    assert store.commits - before == n


async def test_expired_kv_is_purged_by_a_write_of_its_own(store, monkeypatch):
    monkeypatch.setattr(writer, "PURGE_EVERY", 1)
    await store.kv_set("old", "x", ttl=0.01)
    await asyncio.sleep(0.05)
    await store.kv_set("new", "y")  # its commit queues the purge after acknowledging it
    for _ in range(50):
        row = store._r.execute("SELECT COUNT(*) FROM kv WHERE key='old'").fetchone()
        if row[0] == 0:
            break
        await asyncio.sleep(0.01)
    assert row[0] == 0
    assert await store.kv_get("new") == "y"


async def test_index_queries_use_the_partial_indexes_and_old_files_are_upgraded(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)  # a file made before the partial indexes
    old.executescript("""
        CREATE TABLE idx (name TEXT NOT NULL, member_id TEXT NOT NULL, num INTEGER, tag TEXT);
        CREATE INDEX idx_num ON idx (name, num, member_id);
        CREATE INDEX idx_tag ON idx (name, tag, member_id);
        INSERT INTO idx VALUES ('expiry', 'm1', 20261201, NULL), ('tier', 'm1', NULL, 'gold');
    """)
    old.close()
    s = open_store(f"sqlite:///{path}", os.urandom(32))
    await s.open()
    try:
        names = {r[0] for r in s._r.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"idx_by_num", "idx_by_tag"} <= names and not names & {"idx_num", "idx_tag"}
        assert await s.range("expiry", 20261130, 20261202) == [("m1", 20261201)]
        assert await s.tagged("tier", "gold") == ["m1"]
        assert await s.tag_counts("tier") == {"gold": 1}

        def plan(sql: str, *args: object) -> str:
            return " ".join(r[-1] for r in s._r.execute("EXPLAIN QUERY PLAN " + sql, args))

        assert "idx_by_num" in plan("SELECT member_id, num FROM idx WHERE name=? AND num "
                                    "BETWEEN ? AND ? AND member_id > ? ORDER BY member_id "
                                    "LIMIT ?", "expiry", 1, 2, "", 10)
        assert "idx_by_tag" in plan("SELECT member_id FROM idx WHERE name=? AND tag=? AND "
                                    "member_id > ? ORDER BY member_id LIMIT ?", "tier", "gold",
                                    "", 10)
        assert "idx_by_tag" in plan("SELECT tag, COUNT(*) FROM idx WHERE name=? AND tag IS NOT "
                                    "NULL GROUP BY tag", "tier")
    finally:
        await s.close()
