"""The SQLite backend's tables: members, idempotency results, uniques, job indexes, ledger,
outbox, coupon stock, campaign budgets and small shared state (kv).

Run at every open, so it is also the upgrade: ``idx_by_num`` and ``idx_by_tag`` hold only the
rows of their kind (a number's row has no tag), so a member's index row costs two B-tree
entries, not three; they replaced the full ``idx_num`` and ``idx_tag`` (dropped here once, after
the partial ones are built)."""

from __future__ import annotations

from .budgets import SQLITE_SCHEMA

SCHEMA = """
CREATE TABLE IF NOT EXISTS members (id TEXT PRIMARY KEY, version INTEGER NOT NULL,
    data BLOB NOT NULL, idx BLOB);
CREATE TABLE IF NOT EXISTS idem (member_id TEXT NOT NULL, key TEXT NOT NULL, result BLOB,
    at INTEGER NOT NULL, PRIMARY KEY (member_id, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uniques (kind TEXT NOT NULL, value TEXT NOT NULL,
    member_id TEXT NOT NULL, PRIMARY KEY (kind, value)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx (name TEXT NOT NULL, member_id TEXT NOT NULL, num INTEGER,
    tag TEXT);
CREATE INDEX IF NOT EXISTS idx_by_num ON idx (name, num, member_id) WHERE num IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_by_tag ON idx (name, tag, member_id) WHERE tag IS NOT NULL;
DROP INDEX IF EXISTS idx_num;
DROP INDEX IF EXISTS idx_tag;
CREATE INDEX IF NOT EXISTS idx_member ON idx (member_id, name);
CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, member_id TEXT NOT NULL,
    kind TEXT NOT NULL, at INTEGER NOT NULL, points INTEGER NOT NULL, amount_fen INTEGER NOT NULL,
    ref TEXT NOT NULL, data BLOB);
CREATE INDEX IF NOT EXISTS ledger_member ON ledger (member_id, id);
CREATE INDEX IF NOT EXISTS ledger_at ON ledger (at);
CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, member_id TEXT NOT NULL,
    kind TEXT NOT NULL, period TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL, data BLOB) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_status ON outbox (status, kind);
CREATE TABLE IF NOT EXISTS stock (template TEXT PRIMARY KEY, remaining INTEGER NOT NULL,
    total INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS stock_log (template TEXT NOT NULL, key TEXT NOT NULL,
    dir TEXT NOT NULL, PRIMARY KEY (template, key, dir)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL);
""" + SQLITE_SCHEMA
