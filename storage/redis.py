"""Redis backend: one member's keys under one hash tag; an update is one read and one Lua commit.

Key layout (``<id>`` is the member id):

- ``{m:<id>}:agg``     hash: ``v`` version, ``d`` encoded aggregate, ``x`` its index dict (json)
- ``{m:<id>}:idem``    hash: idempotency key -> json result
- ``{m:<id>}:ledger``  list of ``"<row id>:<row json>"``, that member's ledger rows
- ``ledger``           list of every ledger row (json); a row's id is its 1-based position, so
                       this list is never trimmed
- ``members``          zset of member ids, all scored 0 so ZRANGEBYLEX walks them in id order
- ``idx:<name>``       zset member -> integer value; ``idx:<name>:<value>`` set of the members
                       with that text value; ``idxv:<name>`` hash value -> member count
- ``uq:<kind>``        hash value -> member id (phones as keyed hashes, never in clear)
- ``outbox``           hash row id -> row json; ``outbox:<status>`` set of row ids
- ``stock``            hash template -> remaining; ``stock:take:<template>`` and
                       ``stock:ret:<template>`` sets of the keys that took / gave back a unit
- ``kv:<key>``         strings, expiry by PX

The commit script also writes global keys (ledger, indexes, outbox, stock, members) that it
does not declare in KEYS, so today it needs standalone Redis or Sentinel. The member's own keys
already share one slot: Cluster needs only the global writes moved out of the script.
Durability is Redis's own: run it with ``appendonly yes``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import time
from collections.abc import Callable
from itertools import islice
from typing import Any
from urllib.parse import urlparse

import redis.asyncio as aioredis
import redis.exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

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
from .budgets import RedisBudgets
from .codec import Codec, dumps, loads
from .redis_lua import (
    CLAIM,
    COMMIT,
    INCR_WINDOW,
    KV_CAD,
    KV_CAS,
    OUTBOX_CAS,
    RELEASE,
    STOCK_RETURN,
    STOCK_TAKE,
)
from .shared import Batcher, MemberTurns
from .shared import index_terms as _terms

MAX_TRIES = 50
LEDGER_CHUNK = 2000


TRANSIENT = (rx.ConnectionError, rx.TimeoutError, rx.OutOfMemoryError, rx.ReadOnlyError)


def _why(e: BaseException) -> str:
    """The root cause in a few words: 'Connection refused' rather than redis-py's sentence."""
    for _ in range(10):  # a bounded walk: exception chains can loop
        if (e.__cause__ or e.__context__) is None:
            break
        e = e.__cause__ or e.__context__
    text = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
    return " ".join(text.split()) or type(e).__name__


def _guarded(fn: Any) -> Any:
    @functools.wraps(fn)
    async def wrapper(self: RedisStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(self, *args, **kwargs)
        except TRANSIENT as e:
            raise StoreUnavailable(f"Redis at {self.where} is unavailable ({_why(e)})") from e
    return wrapper


def _idx_ops(old: dict[str, Any], new: dict[str, Any], out: list[Any]) -> None:
    for name in old.keys() | new.keys():
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        (na, ta), (nb, tb) = _terms(a), _terms(b)
        if nb is not None:
            out += ("Z", name, nb, "")
        elif na is not None:
            out += ("z", name, "", "")
        for t in ta - tb:
            out += ("s", name, t, "")
        for t in tb - ta:
            out += ("S", name, t, "")


def _ledger_row(rid: int, raw: bytes) -> LedgerRow:
    d = loads(raw)
    return LedgerRow(rid, d["member_id"], d["kind"], d["at"], d["points"], d["amount_fen"],
                     d["ref"], d["data"] or {})


try:
    import hiredis

    class FastConnection(aioredis.Connection):
        """Packs commands with hiredis (C) instead of redis-py's Python packer, which is
        the largest client-side cost of an update (its commit has over a dozen arguments)."""

        def pack_command(self, *args: Any) -> list[bytes]:
            if isinstance(args[0], str) and " " in args[0]:  # 'CLIENT SETINFO' and the like
                args = (*args[0].split(), *args[1:])
            return [hiredis.pack_command(args)]
except (ImportError, AttributeError):  # hiredis without pack_command: the default packer
    FastConnection = None  # type: ignore[assignment,misc]


MAX_CONNECTIONS = 64  # per process; updates waiting together share a pipeline


class RedisStore(RedisBudgets, Store):
    kind = "redis"

    def __init__(self, url: str, codec: Codec) -> None:
        self.url = url
        self.codec = codec
        p = urlparse(url)  # messages name the server, never its password
        self.where = (p._replace(netloc=p.netloc.rpartition("@")[2]).geturl()
                      if "@" in p.netloc else url)
        self.client: aioredis.Redis | None = None
        self._turns = MemberTurns()
        self._commits = Batcher(lambda batch: self._run_commits(batch), inflight=1)
        self.commits = 0
        self.conflicts = 0

    # -- life cycle ---------------------------------------------------------------------
    async def open(self) -> None:
        try:
            self.client = self._connect()
            await self.client.ping()
            scripts = (COMMIT, CLAIM, RELEASE, STOCK_TAKE, STOCK_RETURN, OUTBOX_CAS,
                       KV_CAS, KV_CAD, INCR_WINDOW)
            (self._commit, self._claim, self._release, self._take, self._return,
             self._ob_cas, self._kv_cas, self._kv_cad, self._incr) = (
                self.client.register_script(s) for s in scripts)
            async with self.client.pipeline(transaction=False) as p:
                for s in scripts:  # loaded once here, so updates run EVALSHA straight away
                    p.script_load(s)
                await p.execute()
        except (rx.RedisError, OSError, ValueError) as e:
            await self.close()
            raise StoreError(f"cannot reach Redis at {self.where} ({_why(e)}): start Redis or "
                             "fix MEMBERBOT_STORE") from e

    # Few, quick retries and timeouts: a restarted Redis is found again, a dead or hung one
    # fails fast with StoreUnavailable instead of holding callers.
    @staticmethod
    def client_options() -> dict[str, Any]:
        return dict(socket_connect_timeout=5, socket_timeout=5, health_check_interval=30,
                    retry=Retry(ExponentialWithJitterBackoff(cap=0.1, base=0.01), 2))

    def _connect(self) -> aioredis.Redis:
        extra = {"connection_class": FastConnection} if urlparse(self.url).scheme == (
            "redis") and FastConnection is not None else {}
        # A burst larger than the pool waits for a free connection (up to the socket timeout)
        # instead of failing: redis-py's default pool refuses the 101st caller at once.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=MAX_CONNECTIONS, timeout=5, **self.client_options(),
            **extra)
        client = aioredis.Redis(connection_pool=pool)
        client.auto_close_connection_pool = True  # closed with the client
        return client

    async def close(self) -> None:
        await self._commits.drain()  # let commits already sent come back
        if self.client is not None:
            client, self.client = self.client, None
            await client.aclose()

    async def ping(self) -> dict[str, Any]:
        try:
            await self.client.ping()
            return {"kind": self.kind, "ok": True, "url": self.where}
        except (rx.RedisError, OSError, AttributeError) as e:
            return {"kind": self.kind, "ok": False, "url": self.where, "error": _why(e)}

    # -- members ------------------------------------------------------------------------
    @staticmethod
    def _keys(member_id: str) -> tuple[str, str, str]:
        tag = f"{{m:{member_id}}}"
        return f"{tag}:agg", f"{tag}:idem", f"{tag}:ledger"

    async def get(self, member_id: str) -> Member | None:
        v, d = await self.client.hmget(self._keys(member_id)[0], "v", "d")
        return None if d is None else self.codec.decode(d, int(v))

    async def seen(self, member_id: str, key: str) -> tuple[bool, Any]:
        raw = await self.client.hget(self._keys(member_id)[1], key)
        return (False, None) if raw is None else (True, loads(raw))

    async def update(self, member_id: str, step: Step, *, key: str | None = None) -> Any:
        async with self._turns.turn(member_id):
            return await self._update(member_id, step, key)

    async def _update(self, member_id: str, step: Step, key: str | None) -> Any:
        keys = self._keys(member_id)
        res = await self._batched(keys, (-1, "", "", "", member_id, int(key is not None),
                                        key or "", ""))
        for attempt in range(MAX_TRIES):
            if res[0] == 1:  # the key was committed (maybe meanwhile): its result is the answer
                return loads(res[1])
            if attempt:
                self.conflicts += 1
                await asyncio.sleep(random.random() * min(0.05, 0.0005 * 2 ** attempt))
            v, d, x = res[1:]  # a conflict hands back the fresh state: no extra read
            version = int(v) if v else 0
            change = step(None if d is None else self.codec.decode(d, version))
            res = await self._batched(keys, self._commit_args(member_id, key, version, x,
                                                               change))
            if res[0] == 0:
                self.commits += 1
                return change.result
            if res[0] == 3:  # a precondition failed: nothing was written
                raise UniqueTaken(res[1].decode(), res[2].decode(), res[3].decode())
            if res[0] == 4:
                raise OutOfStock(res[1].decode())
        if res[0] == 1:
            return loads(res[1])
        raise ConflictError(f"member {member_id}: {MAX_TRIES} concurrent writers in a row, "
                            "update not committed")

    async def _batched(self, keys: tuple[str, ...], args: Any) -> Any:
        """Run the commit script; calls waiting at the same moment share one pipeline (one
        round trip, like SQLite's group commit). Each script call stays atomic by itself."""
        return await self._commits.call((keys, args))

    async def _run_commits(self, batch: list[tuple[Any, Any]]) -> list[Any]:
        if len(batch) == 1:
            return [await self._commit(*batch[0])]
        pipe = self.client.pipeline(transaction=False)
        for keys, args in batch:
            pipe.evalsha(self._commit.sha, len(keys), *keys, *args)
        results = await pipe.execute(raise_on_error=False)
        for n, ((keys, args), r) in enumerate(zip(batch, results, strict=True)):
            if isinstance(r, rx.NoScriptError):  # Redis restarted: load and redo
                try:
                    results[n] = await self._commit(keys, args)
                except Exception as e:
                    results[n] = e
        return results

    def _commit_args(self, member_id: str, key: str | None, version: int, x: bytes | None,
                     change: Change) -> list[Any]:
        new = change.member
        args: list[Any] = [version, "", "", "", member_id, 0 if key is None else 1, key or "",
                           dumps(change.result)]
        ops: list[Any] = []  # flat: op, a, b, c, op, a, ...
        if new is not None:
            new.version = version + 1
            old_idx = loads(x) or {}
            new_idx = change.indexes if change.indexes is not None else old_idx
            args[1:4] = version + 1, self.codec.encode(new), dumps(new_idx)
            _idx_ops(old_idx, new_idx, ops)
        for e in change.entries:
            ops += ("L", dumps({"member_id": member_id, "kind": e.kind, "at": e.at,
                                 "points": e.points, "amount_fen": e.amount_fen, "ref": e.ref,
                                 "data": e.data or None}).decode(), "", "")
        if change.outbox:
            now = int(time.time())
            for ob in change.outbox:
                status = ob.get("status", "pending")
                ops += ("O", outbox_id(member_id, ob["kind"], ob["period"]), status,
                        dumps({"member_id": member_id, "kind": ob["kind"],
                               "period": ob["period"], "status": status, "created_at": now,
                               "updated_at": now, "data": ob.get("data", {})}).decode())
        for template, skey in change.stock_returns:
            ops += ("R", template, skey, "")
        for kind, value in change.claims:
            ops += ("C", kind, self._uval(kind, value), "")
        for template, skey in change.stock_takes:
            ops += ("T", template, skey, "")
        args.append(dumps([ops[i:i + 4] for i in range(0, len(ops), 4)]))
        return args

    async def idem_all(self, member_id: str) -> dict[str, Any]:
        raw = await self.client.hgetall(self._keys(member_id)[1])
        return {k.decode(): loads(v) for k, v in raw.items()}

    async def count_members(self) -> int:
        return await self.client.zcard("members")

    async def member_ids(self, after: str = "", limit: int = 1000) -> list[str]:
        lo = f"({after}" if after else "-"
        rows = await self.client.zrangebylex("members", lo, "+", start=0, num=limit)
        return [r.decode() for r in rows]

    # -- uniques ------------------------------------------------------------------------


    async def claim(self, kind: str, value: str, member_id: str) -> str:
        owner = await self._claim((f"uq:{kind}",), (self._uval(kind, value), member_id))
        return owner.decode()

    async def lookup(self, kind: str, value: str) -> str | None:
        for v in self._uvals(kind, value):
            owner = await self.client.hget(f"uq:{kind}", v)
            if owner is not None:
                return owner.decode()
        return None

    async def release(self, kind: str, value: str, member_id: str) -> None:
        await self._release((f"uq:{kind}",), (self._uval(kind, value), member_id))

    # -- indexes ------------------------------------------------------------------------
    # Sorted sets order by value, the contract by member id: sort the (usually small) range here.
    async def range(self, index: str, lo: int, hi: int, *, after: str = "",
                    limit: int | None = None) -> list[tuple[str, int]]:
        rows = await self.client.zrangebyscore(f"idx:{index}", lo, hi, withscores=True)
        out = sorted((m, int(s)) for m, s in ((m.decode(), s) for m, s in rows) if m > after)
        return out if limit is None else out[:max(limit, 0)]

    async def tagged(self, index: str, value: str, *, after: str = "",
                     limit: int | None = None) -> list[str]:
        ids = sorted(m for m in (r.decode() for r in
                                 await self.client.smembers(f"idx:{index}:{value}")) if m > after)
        return ids if limit is None else ids[:max(limit, 0)]

    async def tag_counts(self, index: str) -> dict[str, int]:
        rows = await self.client.hgetall(f"idxv:{index}")
        return {k.decode(): int(n) for k, n in rows.items() if int(n) > 0}

    # -- stock --------------------------------------------------------------------------
    async def stock_init(self, template: str, total: int) -> None:
        await self.client.hsetnx("stock", template, total)

    async def stock_set(self, template: str, remaining: int) -> None:
        await self.client.hset("stock", template, remaining)

    async def stock_take(self, template: str, key: str) -> bool:
        return bool(await self._take((), (template, key)))

    async def stock_return(self, template: str, key: str) -> None:
        await self._return((), (template, key))

    async def stock(self, template: str) -> int | None:
        n = await self.client.hget("stock", template)
        return None if n is None else int(n)

    # -- ledger and outbox --------------------------------------------------------------
    async def ledger(self, *, member_id: str | None = None, since: int | None = None,
                     until: int | None = None, kinds: list[str] | None = None,
                     after_id: int = 0, limit: int = 10000,
                     newest_first: bool = False) -> list[LedgerRow]:
        def wanted(r: LedgerRow) -> bool:
            return ((since is None or r.at >= since) and (until is None or r.at < until)
                    and (not kinds or r.kind in kinds))

        limit = max(limit, 0)
        if member_id is not None:
            pairs = (i.split(b":", 1) for i in await self.client.lrange(self._keys(member_id)[2],
                                                                         0, -1))
            found = [_ledger_row(int(i), raw) for i, raw in pairs if int(i) > after_id]
            return list(islice(filter(wanted, reversed(found) if newest_first else found),
                               limit))
        if newest_first:
            return await self._ledger_newest(wanted, after_id, limit)
        # The global list is read in chunks from the position after after_id (id = index + 1).
        chunk = limit if since is None and until is None and not kinds else LEDGER_CHUNK
        out: list[LedgerRow] = []
        start = max(after_id, 0)
        while len(out) < limit:
            batch = await self.client.lrange("ledger", start, start + chunk - 1)
            rows = (_ledger_row(i, raw) for i, raw in enumerate(batch, start + 1))
            out += islice(filter(wanted, rows), limit - len(out))
            if len(batch) < chunk:
                break
            start += chunk
        return out

    async def _ledger_newest(self, wanted: Callable[[LedgerRow], bool], after_id: int,
                             limit: int) -> list[LedgerRow]:
        """The global ledger from its end, in chunks, down to ``after_id``."""
        out: list[LedgerRow] = []
        end = await self.client.llen("ledger")  # ids 1..end
        while len(out) < limit and end > after_id:
            start = max(end - LEDGER_CHUNK, after_id)
            batch = await self.client.lrange("ledger", start, end - 1)
            rows = (_ledger_row(i, raw) for i, raw in zip(range(start + len(batch), start, -1),
                                                          reversed(batch), strict=True))
            out += islice(filter(wanted, rows), limit - len(out))
            end = start
        return out

    async def outbox(self, *, status: str | None = None, kind: str | None = None,
                     limit: int = 10000) -> list[OutboxRow]:
        if status is None:
            items = (await self.client.hgetall("outbox")).items()
        else:
            ids = list(await self.client.smembers(f"outbox:{status}"))
            items = zip(ids, await self.client.hmget("outbox", ids) if ids else [], strict=True)
        rows = [OutboxRow(rid.decode(), d["member_id"], d["kind"], d["period"], d["status"],
                          d["created_at"], d["data"] or {})
                for rid, d in ((rid, loads(raw)) for rid, raw in items if raw is not None)
                if status in (None, d["status"]) and kind in (None, d["kind"])]
        rows.sort(key=lambda r: (r.created_at, r.id))
        return rows[:max(limit, 0)]

    async def outbox_set(self, row_id: str, status: str, data: dict[str, Any] | None = None,
                         *, expect: str | None = None) -> bool:
        # Read, merge in Python (Lua's cjson would mangle big integers and empty lists), then
        # compare-and-set on the whole row; a concurrent change makes us read again.
        for _ in range(MAX_TRIES):
            raw = await self.client.hget("outbox", row_id)
            if raw is None:
                return False
            row = loads(raw)
            if expect is not None and row["status"] != expect:
                return False
            new = {**row, "status": status, "updated_at": int(time.time()),
                   "data": {**(row["data"] or {}), **(data or {})}}
            if await self._ob_cas((), (row_id, raw, dumps(new), row["status"], status)):
                return True
        raise ConflictError(f"outbox row {row_id}: too many concurrent writers")

    # -- kv -----------------------------------------------------------------------------
    async def kv_get(self, key: str) -> str | None:
        raw = await self.client.get(f"kv:{key}")
        return None if raw is None else raw.decode()

    async def kv_set(self, key: str, value: str, *, ttl: float | None = None,
                     only_new: bool = False, expect: str | None = None) -> bool:
        px = None if ttl is None else max(1, int(ttl * 1000))
        if expect is None:
            return bool(await self.client.set(f"kv:{key}", value, px=px, nx=only_new))
        if only_new:  # "absent" and "holds expect" cannot both hold, as in SQLite
            return False
        return bool(await self._kv_cas((f"kv:{key}",), (expect, value, px or "")))

    async def kv_delete(self, key: str, *, expect: str | None = None) -> bool:
        if expect is None:
            return await self.client.delete(f"kv:{key}") == 1
        return bool(await self._kv_cad((f"kv:{key}",), (expect,)))

    async def incr_window(self, key: str, ttl: float) -> int:
        return int(await self._incr((f"kv:{key}",), (max(1, int(ttl * 1000)),)))


# Every contract call answers a Redis outage with one StoreUnavailable line ("busy, retry").
for _name in Store.__abstractmethods__ - {"open", "close", "ping"}:
    setattr(RedisStore, _name, _guarded(getattr(RedisStore, _name)))
