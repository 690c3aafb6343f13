"""``memberbot backup FILE`` and ``memberbot restore FILE``.

Two kinds of backup:

- **SQLite file** (the default for a SQLite store): SQLite's online backup API copies the
  database in one consistent snapshot while the server keeps writing.
- **JSONL logical dump** (``--format jsonl``; the only kind for Redis and PostgreSQL, which
  also have their native tools): one line per member with its aggregate, its ledger, its
  idempotency keys and its outbox rows, read so that the four agree (the member's version is
  the same before and after the reads), then the coupon stock and the campaign budgets used.
  It restores into any backend.

A restore goes into an empty store only: a store with members is refused, never merged.
Each member is restored in one atomic store update (aggregate, ledger, indexes and outbox
together), then its idempotency keys, unique claims and outbox states.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from storage import Store, StoreError

from . import keys
from .rules import indexes
from .rules.config import Rules
from .rules.models import Change, Entry, Member
from .rules.timeutil import local_day

FORMAT = "memberbot-backup"
VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
PAGE = 500
READ_TRIES = 20
RESTORE_BATCH = 64


class BackupError(Exception):
    """A backup or restore that cannot go on; one line for the operator."""


class Progress:
    def start(self, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


def is_sqlite_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def private_file(path: Path) -> IO[str]:
    """A new file readable by its owner only: a backup holds personal data."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


async def member_ids(store: Store) -> AsyncIterator[list[str]]:
    after = ""
    while True:
        ids = await store.member_ids(after, PAGE)
        if not ids:
            return
        yield ids
        after = ids[-1]


async def read_member(store: Store, mid: str,
                      outbox: dict[str, list[dict]]) -> dict[str, Any] | None:
    """One member's aggregate, ledger and idempotency keys as of one version: read between
    two reads of the aggregate that agree (every update bumps the version), so the ledger
    sums to the balance even while the member is being written to."""
    for _ in range(READ_TRIES):
        m = await store.get(mid)
        if m is None:
            return None
        rows = await store.ledger(member_id=mid, limit=10**9)
        idem = await store.idem_all(mid)
        again = await store.get(mid)
        if again is not None and again.version == m.version:
            return {"type": "member", "member": m.to_dict(),
                    "ledger": [{k: v for k, v in asdict(r).items() if k not in ("id",
                                                                               "member_id")}
                               for r in rows],
                    "idem": idem, "outbox": outbox.get(mid, [])}
    raise BackupError(f"member {mid} kept changing during {READ_TRIES} reads; run the "
                      "backup again")


async def dump(store: Store, rules: Rules, out: IO[str], now: datetime,
               progress: Progress | None = None) -> int:
    """Write the JSONL dump of ``store`` to ``out``; returns the number of members."""
    progress = progress or Progress()
    progress.start(await store.count_members())
    outbox: dict[str, list[dict]] = {}
    for r in await store.outbox(limit=10**9):
        outbox.setdefault(r.member_id, []).append(
            {"kind": r.kind, "period": r.period, "status": r.status, "data": r.data})
    write = out.write
    write(json.dumps({"type": "header", "format": FORMAT, "version": VERSION,
                      "store": store.kind, "at": now.isoformat()}) + "\n")
    n = 0
    async for ids in member_ids(store):
        for mid in ids:
            rec = await read_member(store, mid, outbox)
            if rec is not None:
                write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
        progress.advance(len(ids))
    for key in rules.coupons:
        remaining = await store.stock(key)
        if remaining is not None:
            write(json.dumps({"type": "stock", "template": key, "remaining": remaining}) + "\n")
    for c in rules.campaigns:  # what each campaign's budget has given so far
        if c.budget:
            write(json.dumps({"type": "budget", "name": c.key,
                              "used": await store.budget_used(c.key)}) + "\n")
    for key in await kept_kv(store):
        value = await store.kv_get(key)
        if value is not None:
            write(json.dumps({"type": "kv", "key": key, "value": value}, ensure_ascii=False)
                  + "\n")
    write(json.dumps({"type": "end", "members": n}) + "\n")
    return n


async def kept_kv(store: Store) -> list[str]:
    """The small state a backup keeps besides members: the /admin accounts and their audit
    trail (token caches, locks and counters are short-lived and left out)."""
    raw = await store.kv_get(keys.admin_accounts())
    names = json.loads(raw) if raw else []
    return [keys.admin_accounts(), keys.admin_audit(), *map(keys.admin_account, names)]


def records(lines: Iterable[str], source: str) -> Iterable[dict[str, Any]]:
    """The records of a dump, checked: header first, end last, every line JSON."""
    it = iter(lines)
    seen_end = False
    for n, line in enumerate(it, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise BackupError(f"{source}:{n}: not a JSON line") from e
        if n == 1 and (rec.get("type") != "header" or rec.get("format") != FORMAT):
            raise BackupError(f"{source}: not a memberbot backup (no header line)")
        if n == 1 and rec.get("version") != VERSION:
            raise BackupError(f"{source}: backup format version {rec.get('version')} is not "
                              f"{VERSION}: restore it with the memberbot that wrote it")
        if rec.get("type") == "end":
            seen_end = True
        yield rec
    if not seen_end:
        raise BackupError(f"{source}: the backup is cut short (no end line): it is incomplete")


def claims(m: Member) -> list[tuple[str, str]]:
    """Every unique value the member owns, from the aggregate."""
    out = [("member_code", m.member_code), ("invite_code", m.invite_code),
           ("openid", m.openid), ("unionid", m.unionid),
           ("external_userid", m.external_userid), ("phone", m.phone)]
    out += [("coupon_code", c.code) for c in m.coupons]
    for oid, o in m.orders.items():
        out.append(("order", oid))
        out += [("refund", rid) for rid in o.refunds]
    return [(k, v) for k, v in out if v]


async def restore_member(store: Store, rules: Rules, rec: dict[str, Any],
                         now: datetime) -> None:
    m = Member.from_dict(rec["member"])
    entries = [Entry(r["kind"], r["at"], r.get("points", 0), r.get("amount_fen", 0),
                     r.get("ref", ""), r.get("data") or {}) for r in rec["ledger"]]
    idem: dict[str, Any] = rec.get("idem") or {}
    keys = list(idem)
    first = keys[0] if keys else None
    rows = rec.get("outbox") or []
    idx = indexes.derive(m, local_day(now, rules.tz), rules)

    def step(cur: Member | None) -> Change:
        if cur is not None:
            raise BackupError(f"member {m.id} exists already")
        return Change(m, idem.get(first) if first else None, entries,
                      [{"kind": r["kind"], "period": r["period"], "data": r["data"]}
                       for r in rows], idx)

    await store.update(m.id, step, key=first)
    for k in keys[1:]:
        await store.update(m.id, lambda _m, res=idem[k]: Change(None, res), key=k)
    for kind, value in claims(m):
        owner = await store.claim(kind, value, m.id)
        if owner != m.id:
            raise BackupError(f"{kind} {value if kind != 'phone' else '(phone)'} belongs to "
                              f"two members in the backup")
    from storage.base import outbox_id

    for r in rows:
        if r["status"] != "pending":
            await store.outbox_set(outbox_id(m.id, r["kind"], r["period"]), r["status"],
                                   r["data"])


async def restore(store: Store, rules: Rules, lines: Callable[[], Iterable[str]], source: str,
                  now: datetime, progress: Progress | None = None) -> int:
    """Restore a JSONL dump into an empty ``store``; returns the number of members.
    ``lines()`` gives the dump's lines; it is read twice: checked whole before anything is
    written (a cut-short or foreign file changes nothing), then restored."""
    progress = progress or Progress()
    total = sum(r.get("type") == "member" for r in records(lines(), source))
    progress.start(total)
    if await store.count_members():
        raise BackupError(f"the {store.kind} store is not empty "
                          f"({await store.count_members()} members): restore goes into an "
                          "empty store only; point MEMBERBOT_STORE at a new one")
    n = 0
    expected = None
    batch: list[dict[str, Any]] = []

    async def flush() -> None:
        # members are independent: restore a batch at once (the store groups the commits)
        await asyncio.gather(*(restore_member(store, rules, r, now) for r in batch))
        progress.advance(len(batch))
        batch.clear()

    for rec in records(lines(), source):
        t = rec.get("type")
        if t == "member":
            batch.append(rec)
            n += 1
            if len(batch) >= RESTORE_BATCH:
                await flush()
            continue
        await flush()
        if t == "stock":
            await store.stock_set(rec["template"], int(rec["remaining"]))
        elif t == "budget":  # into an empty store: one grant of exactly what was used
            used = int(rec["used"])
            await store.budget_take(str(rec["name"]), keys.BUDGET_RESTORED, used, used,
                                    keys.BUDGET_RESTORED)
        elif t == "kv":
            await store.kv_set(str(rec["key"]), str(rec["value"]))
        elif t == "end":
            expected = rec.get("members")
    await flush()
    if expected is not None and expected != n:
        raise BackupError(f"{source}: {n} members restored, the backup says {expected}")
    return n


def restore_sqlite_file(store: Any, source: Path) -> None:
    """A SQLite backup file into an empty SQLite store, with the online backup API."""
    import sqlite3

    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(store.path, timeout=30)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


__all__ = ["BackupError", "StoreError", "dump", "restore", "restore_sqlite_file"]


def register(main: Any) -> None:
    import click

    from .operator import fail, load_settings
    from .rules.config import RulesError
    from .settings import SettingsError, rules_for

    def bar(label: str):
        from .jobs.cli import Bar

        return Bar(label)

    @main.command("backup")
    @click.argument("file", type=click.Path(path_type=Path))
    @click.option("--format", "fmt", type=click.Choice(["sqlite", "jsonl"]),
                  help="sqlite: a copy of the database by SQLite's online backup API (SQLite "
                       "stores only; the default there); jsonl: a logical dump any backend "
                       "restores (the default for Redis and PostgreSQL)")
    def backup_cmd(file: Path, fmt: str | None) -> None:
        """Write a consistent backup of the store to FILE while it keeps serving."""
        from storage import open_store

        settings = load_settings()
        if file.exists():
            fail(f"{file} exists: choose a new file name (a backup never overwrites)")

        async def go() -> str:
            rules = rules_for(settings)
            store = open_store(settings.store_url, settings.data_key)
            await store.open()
            try:
                kind = fmt or ("sqlite" if store.kind == "sqlite" else "jsonl")
                if kind == "sqlite":
                    if store.kind != "sqlite":
                        raise BackupError(f"--format sqlite backs up a SQLite store; this is "
                                          f"{store.kind}: use --format jsonl or its native "
                                          "tools")
                    pages = await asyncio.to_thread(store.online_backup, str(file))
                    os.chmod(file, 0o600)
                    return (f"backup: {file} (SQLite online backup, {pages} pages, "
                            f"{await store.count_members()} members)")
                with private_file(file) as out, bar("backup") as b:
                    n = await dump(store, rules, out, datetime.now(rules.tz), b)
                return f"backup: {file} (JSONL, {n} members)"
            finally:
                await store.close()

        try:
            click.echo(asyncio.run(go()))
        except (BackupError, StoreError, RulesError, SettingsError) as e:
            file.unlink(missing_ok=True)
            fail(str(e))
        except OSError as e:
            file.unlink(missing_ok=True)
            fail(f"cannot write {file} ({e.strerror})")

    @main.command("restore")
    @click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
    def restore_cmd(file: Path) -> None:
        """Restore FILE (a backup) into the configured store, which must be empty."""
        from storage import open_store

        settings = load_settings()

        async def go() -> str:
            rules = rules_for(settings)
            store = open_store(settings.store_url, settings.data_key)
            await store.open()
            try:
                if is_sqlite_file(file):
                    if store.kind != "sqlite":
                        raise BackupError(f"{file} is a SQLite backup: it restores into a "
                                          f"SQLite store only (this is {store.kind})")
                    if await store.count_members():
                        raise BackupError(f"the sqlite store is not empty "
                                          f"({await store.count_members()} members): restore "
                                          "goes into an empty store only")
                else:
                    def lines() -> Iterable[str]:
                        with open(file, encoding="utf-8") as f:
                            yield from f

                    with bar("restore") as b:
                        n = await restore(store, rules, lines, str(file),
                                          datetime.now(rules.tz), b)
                    return f"restored {n} members from {file} into the {store.kind} store"
            finally:
                await store.close()
            await asyncio.to_thread(restore_sqlite_file, store, file)
            store = open_store(settings.store_url, settings.data_key)
            await store.open()
            try:
                return (f"restored {await store.count_members()} members from {file} into "
                        "the sqlite store")
            finally:
                await store.close()

        try:
            click.echo(asyncio.run(go()))
        except (BackupError, StoreError, RulesError, SettingsError) as e:
            fail(str(e))
