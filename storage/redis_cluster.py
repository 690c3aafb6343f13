"""Redis Cluster (``redis+cluster://h1:p1,h2:p2``) and Sentinel (``redis+sentinel://…``).

Cluster layout: every write of one update lands in the member's slot ``{m:<id>}``:

- ``{m:<id>}:agg`` / ``:idem`` as on standalone Redis; ``{m:<id>}:ledger`` list of
  ``"<id>:<row json>"`` (the id is the slot's server time, see ``redis_cluster_lua.COMMIT``);
  ``{m:<id>}:outbox`` hash row id -> row json (the truth about a push); ``{m:<id>}:sret`` the
  coupon units its updates gave back.

What is global lives in ``SHARDS`` shards ``{g<k>}`` (``k`` from the member id), each its own
slot: ``:members`` zset, ``:idx:<name>`` zset / ``:idx:<name>:<tag>`` sets / ``:idxv:<name>``
counts, ``:ledger`` zset of rows (lexicographic, by id), ``:outbox[:<status>]`` sets of row ids,
``:x`` / ``:ver`` / ``:obn`` what was published per member and row, and ``:intent``.

No transaction spans two slots. An update (1) raises the member's *intent* in its shard, (2)
commits in the member's slot, (3) publishes to its shard — index terms only if newer than
those published, ledger rows and outbox ids idempotently — and clears its own intent. A crash
between (2) and (3) leaves the intent; every query of global structures first republishes the
members with an intent from their committed state (a member, never a job, is the truth), and
drops intents older than ``SETTLE_AFTER`` once published. So no acknowledged change is lost
and no job misses a due member. Coupon stock is ``{st:<template>}``; uniques and kv are
single-key and work as on standalone Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import random
import time
from binascii import crc_hqx
from collections import defaultdict
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
import redis.exceptions as rx
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel

from bot.rules.models import Change

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
)
from .codec import Codec, dumps, loads
from .redis import FastConnection, RedisStore, _why, outbox_id
from .redis_cluster_lua import (
    CLAIM_NEW,
    COMMIT,
    INTENT,
    OUTBOX_CAS,
    PUBLISH,
    SETTLE,
    STOCK_RETURN,
    STOCK_TAKE,
)
from .redis_lua import CLAIM, INCR_WINDOW, KV_CAD, KV_CAS, RELEASE
from .shared import Batcher
from .shared import index_terms as _terms

SHARDS = 16
MAX_TRIES = 50
SETTLE_AFTER = 10.0  # seconds: longer than any live writer spends between commit and publish
LEDGER_CHUNK = 2000
CLUSTER_TRANSIENT = (rx.ConnectionError, rx.TimeoutError, rx.ClusterDownError,
                     rx.ClusterError, rx.SlotNotCoveredError, MasterNotFoundError,
                     rx.ReadOnlyError, rx.TryAgainError)


def parse_nodes(url: str) -> tuple[str | None, str | None, list[tuple[str, int]], list[str]]:
    """``scheme://[user:password@]h1:p1,h2:p2[/rest…]`` -> user, password, nodes, path parts."""
    rest = url.split("://", 1)[1]
    creds, _, hosts = rest.rpartition("@")
    hosts, _, path = hosts.partition("/")
    user, _, password = creds.partition(":") if creds else ("", "", "")
    nodes = []
    for hp in filter(None, hosts.split(",")):
        host, _, port = hp.rpartition(":")
        if not host or not port.isdigit():
            raise StoreError(f"bad node {hp!r} in the store URL: write host:port")
        nodes.append((host, int(port)))
    if not nodes:
        raise StoreError("the store URL names no node: write host:port[,host:port…]")
    return (unquote(user) or None, unquote(password) or None, nodes,
            [p for p in path.split("/") if p])


def shard_of(member_id: str) -> str:
    return f"{{g{crc_hqx(member_id.encode(), 0) % SHARDS}}}"


def _term(value: Any) -> dict[str, Any]:
    """One index value as the publish script reads it: ``{"n": "123"}``, ``{"t": [...]}``
    or ``{}`` (not in the index)."""
    n, tags = _terms(value)
    if n is not None:
        return {"n": str(n)}
    return {"t": sorted(tags)} if tags else {}


def _terms_json(idx: dict[str, Any]) -> str:
    """Index values as the publish script reads them: ``{name: {"n": "123"} | {"t": [...]}}``."""
    out = {name: t for name, value in idx.items() if (t := _term(value))}
    return dumps(out).decode() if out else "{}"


def _terms_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The terms that changed from ``old`` to ``new``: ``{name: [old, new]}``."""
    return dumps({name: [_term(old.get(name)), _term(new.get(name))]
                  for name in old.keys() | new.keys()
                  if old.get(name) != new.get(name)}).decode()


def _unheard(fut: asyncio.Future) -> None:
    """A publish nobody waits for: if it failed, the member's mark stays and the next query
    republishes the member."""
    if not fut.cancelled():
        fut.exception()


def _cluster_guarded(fn: Any) -> Any:
    @functools.wraps(fn)
    async def wrapper(self: RedisClusterStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(self, *args, **kwargs)
        except CLUSTER_TRANSIENT as e:
            raise StoreUnavailable(f"Redis at {self.where} is unavailable ({_why(e)})") from e
    return wrapper


def _ledger_row(raw: bytes | str) -> LedgerRow:
    rid, _, body = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
    d = loads(body)
    return LedgerRow(int(rid), d["member_id"], d["kind"], d["at"], d["points"],
                     d["amount_fen"], d["ref"], d["data"] or {})


MAX_NODE_CONNECTIONS = 1000  # per node and process (Redis serves 10,000 clients)


class RedisClusterStore(RedisStore):
    kind = "redis-cluster"
    claims_at_commit = False  # taken before the commit, in their own slots (see _update)

    def __init__(self, url: str, codec: Codec) -> None:
        super().__init__(url, codec)
        self.user, password, self.nodes, _ = parse_nodes(url)
        self.where = url.replace(f":{password}@", "@") if password else url
        self.password = password
        # script calls waiting at one moment share one flush; one flush at a time, as it
        # uses one connection per node
        self._scripts = Batcher(lambda batch: self._run_scripts(batch), inflight=1)
        self._direct: dict[str, Any] = {}  # node name -> the flusher's connection to it

    # -- life cycle ---------------------------------------------------------------------
    async def open(self) -> None:
        try:
            self.client = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in self.nodes],
                username=self.user, password=self.password, require_full_coverage=True,
                socket_connect_timeout=5, socket_timeout=5,
                # redis-py's cluster client refuses a caller past its pool (default 100 per
                # node) rather than letting it wait: allow a burst's worth of connections
                max_connections=MAX_NODE_CONNECTIONS)
            if FastConnection is not None:  # hiredis packs the commands, as on one Redis
                self.client.connection_kwargs["connection_class"] = FastConnection
                for node in self.client.startup_nodes:
                    node.connection_class = FastConnection
            await self.client.initialize()
            infos = await self.client.cluster_info(target_nodes=RedisCluster.PRIMARIES)
            for node, info in (infos.items() if "cluster_state" not in infos
                               else [(self.where, infos)]):
                if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok",
                                                                     0)) < 16384:
                    raise StoreError(
                        f"the Redis Cluster at {self.where} does not serve every slot (node "
                        f"{node}: state {info.get('cluster_state')}, "
                        f"{info.get('cluster_slots_ok')} of 16384 slots ok): fix it "
                        "(redis-cli --cluster fix) before starting memberbot")
            scripts = (COMMIT, INTENT, PUBLISH, SETTLE, OUTBOX_CAS, STOCK_TAKE, STOCK_RETURN,
                       CLAIM, RELEASE, KV_CAS, KV_CAD, INCR_WINDOW, CLAIM_NEW)
            (self._commit, self._intent, self._publish, self._settle, self._ob_cas,
             self._take, self._return, self._claim, self._release, self._kv_cas,
             self._kv_cad, self._incr, self._claim_new) = (
                self.client.register_script(s) for s in scripts)
            self._commit, self._intent, self._publish = (
                self._batched_script(s) for s in (self._commit, self._intent, self._publish))
            for s in scripts:  # on every primary, so updates run EVALSHA straight away
                await self.client.script_load(s)
        except StoreError:
            await self.close()
            raise
        except (rx.RedisClusterException, rx.RedisError, OSError, ValueError) as e:
            await self.close()
            why = _why(e)
            hint = ("fix the cluster so every slot is served (redis-cli --cluster check)"
                    if "slot" in why.lower() or "cover" in why.lower()
                    else "start the cluster or fix MEMBERBOT_STORE")
            raise StoreError(f"cannot use the Redis Cluster at {self.where} ({why}): "
                             f"{hint}") from e

    async def close(self) -> None:
        await self._scripts.drain()  # let the script calls already sent come back
        direct, self._direct = self._direct, {}
        for conn in direct.values():
            with contextlib.suppress(Exception):
                await conn.disconnect()
        await super().close()

    async def ping(self) -> dict[str, Any]:
        try:
            await self.client.ping()
            return {"kind": self.kind, "ok": True, "url": self.where}
        except (*CLUSTER_TRANSIENT, rx.RedisError, OSError, AttributeError) as e:
            return {"kind": self.kind, "ok": False, "url": self.where, "error": _why(e)}

    # -- members ------------------------------------------------------------------------
    @staticmethod
    def _mkeys(member_id: str) -> tuple[str, ...]:
        tag = f"{{m:{member_id}}}"
        return (f"{tag}:agg", f"{tag}:idem", f"{tag}:ledger", f"{tag}:outbox", f"{tag}:sret")

    async def _raise_intent(self, member_id: str) -> tuple[str, bool]:
        """Mark the member before its commit: (this writer's score, whether another writer's
        mark was there, whose unpublished state this writer must then republish)."""
        g = shard_of(member_id)
        score, prior = await self._intent((f"{g}:intent",), (member_id,))
        return score.decode(), bool(prior)

    async def _settle_own(self, member_id: str, intent: str, prior: bool) -> None:
        if prior:
            await self._repair(member_id, intent)
        else:
            await self._publish_one(member_id, 0, None, [], [], intent)

    # -- batching: script calls waiting at the same moment share one cluster pipeline ------
    def _batched_script(self, script: Any) -> Any:
        def submit(keys: Any = (), args: Any = ()) -> asyncio.Future:
            return self._scripts.submit((script, tuple(keys), tuple(args)))

        async def call(keys: Any = (), args: Any = ()) -> Any:
            return await submit(keys, args)

        call.sha = script.sha  # type: ignore[attr-defined]
        call.submit = submit  # type: ignore[attr-defined]
        return call

    async def _send(self, batch: list[Any]) -> list[Any]:
        """One plain pipeline per primary, straight to the node that serves each script's
        slot (the cluster pipeline's routing costs more than the scripts): a reply is the
        script's result or its error; a connection that fails fails its node's scripts."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, (_, keys, _) in enumerate(batch):
            groups[self.client.get_node_from_key(keys[0]).name].append(i)
        results: list[Any] = [None] * len(batch)
        sent: list[tuple[str, Any, list[int]]] = []
        try:
            # every node's commands are sent before any reply is read: the nodes work at
            # once, and no task is needed per node
            for name, idxs in groups.items():
                conn = self._direct.get(name)
                if conn is None:  # the flusher's own connection to that node, used in turn
                    node = self.client.get_node(node_name=name)
                    conn = self._direct[name] = (FastConnection or aioredis.Connection)(
                        host=node.host, port=node.port, username=self.user,
                        password=self.password, socket_connect_timeout=5, socket_timeout=5)
                sent.append((name, conn, idxs))
                await conn.send_packed_command(conn.pack_commands(
                    ("EVALSHA", batch[i][0].sha, len(batch[i][1]), *batch[i][1], *batch[i][2])
                    for i in idxs), check_health=False)
            for _, conn, idxs in sent:
                for i in idxs:
                    try:
                        results[i] = await conn.read_response()
                    except rx.ResponseError as e:  # this script's own error
                        results[i] = e
        except BaseException:  # replies are unaccounted for: those connections start afresh
            for name, conn, _ in sent:
                self._direct.pop(name, None)
                with contextlib.suppress(Exception):
                    await conn.disconnect()
            raise
        return results

    async def _run_scripts(self, batch: list[tuple[Any, tuple, tuple]]) -> list[Any]:
        results = await self._send(batch)
        for n, ((script, keys, args), r) in enumerate(zip(batch, results, strict=True)):
            # a node restarted (load and redo) or a slot moved (the cluster client follows
            # it and learns the new map): the script did not run, redo it
            if isinstance(r, rx.NoScriptError | rx.AskError | rx.TryAgainError):
                try:
                    results[n] = await script(keys, args)
                except Exception as e:
                    results[n] = e
        return results

    async def _update(self, member_id: str, step: Step, key: str | None) -> Any:
        # Claims and stock takes live in other slots: they are taken before the commit and
        # given back if no commit of this update follows (a crash in between leaves them held
        # by the event's key, so its retry finds them; see docs).
        held: list[tuple[str, str, str]] = []  # ("C", kind, value) | ("T", template, key)
        try:
            return await self._update_once(member_id, step, key, held)
        except BaseException:
            for what, a, b in held:
                if what == "C":
                    await self._release((f"uq:{a}",), (b, member_id))
                else:
                    await self._give_back(a, b)
            raise

    async def _preconditions(self, member_id: str, change: Change,
                             held: list[tuple[str, str, str]]) -> None:
        for kind, value in change.claims:
            v = self._uval(kind, value)
            new, owner = await self._claim_new((f"uq:{kind}",), (v, member_id))
            if owner.decode() != member_id:
                raise UniqueTaken(kind, value, owner.decode())
            if new:
                held.append(("C", kind, v))
        for template, skey in change.stock_takes:
            got = await self._take(self._stock_keys(template), (skey,))
            if not got:
                raise OutOfStock(template)
            if got == 2:
                held.append(("T", template, skey))

    async def _update_once(self, member_id: str, step: Step, key: str | None,
                           held: list[tuple[str, str, str]]) -> Any:
        keys = self._mkeys(member_id)
        slot = crc_hqx(f"m:{member_id}".encode(), 0) % 16384
        # the read and the mark go to two slots at once: the mark costs no extra round trip
        read = self._commit.submit(keys[:1], (-1, "", "", "", int(key is not None), key or "",
                                              "", "[]", slot))
        mark = self._intent.submit((f"{shard_of(member_id)}:intent",), (member_id,))
        try:
            res = await read
        finally:
            score, prior = await mark  # raised before the commit, whatever the read says
        intent, prior = score.decode(), bool(prior)
        committed = False
        try:
            for attempt in range(MAX_TRIES):
                if res[0] == 1:
                    held.clear()  # the key's own commit holds what was taken for it
                    await self._settle_own(member_id, intent, prior)
                    return loads(res[1])
                if attempt:
                    self.conflicts += 1
                    await asyncio.sleep(random.random() * min(0.05, 0.0005 * 2 ** attempt))
                v, d, x = res[1:]
                version = int(v) if v else 0
                change = step(None if d is None else self.codec.decode(d, version))
                args, terms, diff = self._cluster_args(member_id, key, version, x, change,
                                                       slot)
                await self._preconditions(member_id, change, held)
                res = await self._commit(keys[:1], args)
                if res[0] == 0:
                    self.commits += 1
                    committed = True
                    held.clear()
                    for template, skey in change.stock_returns:
                        await self._give_back(template, skey)
                    if change.stock_returns:
                        await self.client.hdel(keys[4], *(f"{t}|{k}" for t, k in
                                                          change.stock_returns))
                    if prior:  # another writer's mark was there: publish the whole member
                        await self._repair(member_id, intent)
                    else:
                        obs = [[outbox_id(member_id, o["kind"], o["period"]), 0,
                                o.get("status", "pending")] for o in change.outbox]
                        # sent with the next flush, not waited for: the commit is the
                        # acknowledgement, and the mark stays until the publish lands (a
                        # query republishes a marked member first)
                        await self._publish_one(member_id, version + 1 if terms else 0, terms,
                                                [r.decode() for r in res[1:]], obs, intent,
                                                diff, wait=False)
                    return change.result
            await self._settle_own(member_id, intent, prior)
            if res[0] == 1:
                held.clear()
                return loads(res[1])
            raise ConflictError(f"member {member_id}: {MAX_TRIES} concurrent writers in a row, "
                                "update not committed")
        except BaseException:
            # a refused step or a lost precondition: nothing committed, clear the mark (after
            # a commit the mark stays until the member is published, by us or a repairer)
            if not committed:
                with contextlib.suppress(Exception):
                    await self._settle_own(member_id, intent, prior)
            raise

    def _cluster_args(self, member_id: str, key: str | None, version: int, x: bytes | None,
                      change: Change, slot: int) -> tuple[list[Any], str | None, str]:
        """The commit's arguments, the index terms to publish (None: nothing changed) and
        those that changed from the version read."""
        new = change.member
        args: list[Any] = [version, "", "", "", 0 if key is None else 1, key or "",
                           dumps(change.result)]
        terms, diff = None, ""
        if new is not None:
            new.version = version + 1
            old_idx = loads(x) or {}
            new_idx = change.indexes if change.indexes is not None else old_idx
            args[1:4] = version + 1, self.codec.encode(new), dumps(new_idx)
            if new_idx != old_idx or version == 0:
                terms = _terms_json(new_idx)
                diff = _terms_diff(old_idx, new_idx) if version else ""
        ops = [["L", dumps({"member_id": member_id, "kind": e.kind, "at": e.at,
                            "points": e.points, "amount_fen": e.amount_fen, "ref": e.ref,
                            "data": e.data or None}).decode(), ""] for e in change.entries]
        now = int(time.time())
        for ob in change.outbox:
            status = ob.get("status", "pending")
            ops.append(["O", outbox_id(member_id, ob["kind"], ob["period"]),
                        dumps({"member_id": member_id, "kind": ob["kind"],
                               "period": ob["period"], "status": status, "created_at": now,
                               "updated_at": now, "n": 0,
                               "data": ob.get("data", {})}).decode()])
        ops += [["R", t, k] for t, k in change.stock_returns]
        args += [dumps(ops), slot]
        return args, terms, diff

    async def _publish_one(self, member_id: str, version: int, terms: str | None,
                           rows: list[str], obs: list[list[Any]], intent: str,
                           diff: str = "", *, wait: bool = True) -> None:
        g = shard_of(member_id)
        args = (g, member_id, version, terms or "", intent, dumps(rows), dumps(obs), diff)
        if wait:
            await self._publish((f"{g}:intent",), args)
        else:
            self._publish.submit((f"{g}:intent",), args).add_done_callback(_unheard)

    async def _repair(self, member_id: str, intent: str = "") -> None:
        """Publish a member's committed state again (idempotent): after a crash between its
        commit and its publish, or for a writer whose update turned out to be done already."""
        agg, _, mled, mob, sret = self._mkeys(member_id)
        async with self.client.pipeline() as p:
            p.hmget(agg, "v", "x")
            p.lrange(mled, 0, -1)
            p.hgetall(mob)
            p.hkeys(sret)
            (v, x), rows, obs, rets = await p.execute()
        for r in rets:
            template, _, skey = r.decode().partition("|")
            await self._give_back(template, skey)
        if rets:
            await self.client.hdel(sret, *rets)
        ob = [[rid.decode(), (d := loads(raw)).get("n", 0), d["status"]]
              for rid, raw in obs.items()]
        terms = _terms_json(loads(x) or {}) if v is not None else None
        await self._publish_one(member_id, int(v) if v else 0, terms,
                                [r.decode() for r in rows], ob, intent)

    async def _repair_all(self) -> None:
        """Before any query of global structures: republish members left with an intent."""
        shards = [f"{{g{k}}}" for k in range(SHARDS)]
        async with self.client.pipeline() as p:
            for g in shards:
                p.zrange(f"{g}:intent", 0, -1, withscores=True)
            found = await p.execute()
        settle_before = int((time.time() - SETTLE_AFTER) * 1e6)
        for g, pairs in zip(shards, found, strict=True):
            for mid, score in pairs:
                mid = mid.decode()
                await self._repair(mid)
                await self._settle((f"{g}:intent",), (mid, f"{int(score)}", settle_before))

    async def count_members(self) -> int:
        await self._repair_all()
        async with self.client.pipeline() as p:
            for k in range(SHARDS):
                p.zcard(f"{{g{k}}}:members")
            return sum(await p.execute())

    async def member_ids(self, after: str = "", limit: int = 1000) -> list[str]:
        await self._repair_all()
        lo = f"({after}" if after else "-"
        async with self.client.pipeline() as p:
            for k in range(SHARDS):
                p.zrangebylex(f"{{g{k}}}:members", lo, "+", start=0, num=limit)
            found = await p.execute()
        return list(heapq.merge(*([r.decode() for r in rows] for rows in found)))[:limit]

    # -- indexes ------------------------------------------------------------------------
    async def _each_shard(self, fn: Any) -> list[Any]:
        async with self.client.pipeline() as p:
            for k in range(SHARDS):
                fn(p, f"{{g{k}}}")
            return await p.execute()

    async def range(self, index: str, lo: int, hi: int, *, after: str = "",
                    limit: int | None = None) -> list[tuple[str, int]]:
        await self._repair_all()
        found = await self._each_shard(lambda p, g: p.zrangebyscore(
            f"{g}:idx:{index}", lo, hi, withscores=True))
        out = sorted((m.decode(), int(s)) for rows in found for m, s in rows
                     if m.decode() > after)
        return out if limit is None else out[:max(limit, 0)]

    async def tagged(self, index: str, value: str, *, after: str = "",
                     limit: int | None = None) -> list[str]:
        await self._repair_all()
        found = await self._each_shard(lambda p, g: p.smembers(f"{g}:idx:{index}:{value}"))
        ids = sorted(m for rows in found for m in (r.decode() for r in rows) if m > after)
        return ids if limit is None else ids[:max(limit, 0)]

    async def tag_counts(self, index: str) -> dict[str, int]:
        await self._repair_all()
        out: dict[str, int] = defaultdict(int)
        for rows in await self._each_shard(lambda p, g: p.hgetall(f"{g}:idxv:{index}")):
            for k, n in rows.items():
                out[k.decode()] += int(n)
        return {k: n for k, n in out.items() if n > 0}

    # -- stock --------------------------------------------------------------------------
    @staticmethod
    def _stock_keys(template: str) -> tuple[str, str, str]:
        tag = f"{{st:{template}}}"
        return f"{tag}:n", f"{tag}:take", f"{tag}:ret"

    async def _give_back(self, template: str, key: str) -> None:
        await self._return(self._stock_keys(template), (key,))

    async def stock_init(self, template: str, total: int) -> None:
        await self.client.set(self._stock_keys(template)[0], total, nx=True)

    async def stock_set(self, template: str, remaining: int) -> None:
        await self.client.set(self._stock_keys(template)[0], remaining)

    async def stock_take(self, template: str, key: str) -> bool:
        return await self._take(self._stock_keys(template), (key,)) > 0

    async def stock_return(self, template: str, key: str) -> None:
        await self._give_back(template, key)

    async def stock(self, template: str) -> int | None:
        n = await self.client.get(self._stock_keys(template)[0])
        return None if n is None else int(n)

    # -- ledger and outbox --------------------------------------------------------------
    async def ledger(self, *, member_id: str | None = None, since: int | None = None,
                     until: int | None = None, kinds: list[str] | None = None,
                     after_id: int = 0, limit: int = 10000,
                     newest_first: bool = False) -> list[LedgerRow]:
        def wanted(r: LedgerRow) -> bool:
            return (r.id > after_id and (since is None or r.at >= since)
                    and (until is None or r.at < until) and (not kinds or r.kind in kinds))

        limit = max(limit, 0)
        if member_id is not None:
            rows = await self.client.lrange(self._mkeys(member_id)[2], 0, -1)
            found = [r for r in map(_ledger_row, rows) if wanted(r)]
            return (found[::-1] if newest_first else found)[:limit]
        if newest_first:  # the shards merged in id order, then read from the end
            every = await self.ledger(since=since, until=until, kinds=kinds,
                                      after_id=after_id, limit=2**62)
            return every[::-1][:limit]
        await self._repair_all()
        # A row's id is drawn at its commit, and published after it: a member marked now may
        # still publish a row with an id above any mark's time but below rows already
        # visible. Rows are shown up to the oldest mark (after the repair, marks of updates
        # still running or of a writer that died within SETTLE_AFTER), so a reader paging by
        # id never passes a row that is yet to appear.
        marks = [s for rows in await self._each_shard(
            lambda p, g: p.zrange(f"{g}:intent", 0, 0, withscores=True)) for _, s in rows]
        horizon = int(min(marks)) * 10**8 if marks else None
        # a k-way merge of the shards' rows in id order, each shard read in chunks
        chunk = limit if since is None and until is None and not kinds else LEDGER_CHUNK
        chunk = max(chunk, 1)
        start = f"({after_id:024d};" if after_id else "-"
        cursors = {k: start for k in range(SHARDS)}
        buffers: dict[int, list[bytes]] = {}
        out: list[LedgerRow] = []
        heap: list[tuple[bytes, int]] = []

        async def refill(ks: list[int]) -> None:
            found = {}
            async with self.client.pipeline() as p:
                for k in ks:
                    p.zrangebylex(f"{{g{k}}}:ledger", cursors[k], "+", start=0, num=chunk)
                for k, rows in zip(ks, await p.execute(), strict=True):
                    found[k] = rows
            for k, rows in found.items():
                if len(rows) < chunk:
                    cursors.pop(k)
                else:
                    cursors[k] = b"(" + rows[-1]
                buffers[k] = rows[::-1]
                if rows:
                    heapq.heappush(heap, (buffers[k].pop(), k))

        await refill(list(cursors))
        while heap and len(out) < limit:
            raw, k = heapq.heappop(heap)
            row = _ledger_row(raw)
            if horizon is not None and row.id >= horizon:
                break
            if wanted(row):
                out.append(row)
            if buffers[k]:
                heapq.heappush(heap, (buffers[k].pop(), k))
            elif k in cursors:
                await refill([k])
        return out

    async def outbox(self, *, status: str | None = None, kind: str | None = None,
                     limit: int = 10000) -> list[OutboxRow]:
        await self._repair_all()
        name = "outbox" if status is None else f"outbox:{status}"
        found = await self._each_shard(lambda p, g: p.smembers(f"{g}:{name}"))
        ids = [r.decode() for rows in found for r in rows]
        async with self.client.pipeline() as p:
            for rid in ids:
                p.hget(self._mkeys(rid.split("|", 1)[0])[3], rid)
            raws = await p.execute() if ids else []
        rows = [OutboxRow(rid, d["member_id"], d["kind"], d["period"], d["status"],
                          d["created_at"], d["data"] or {})
                for rid, d in ((rid, loads(raw)) for rid, raw in zip(ids, raws, strict=True)
                               if raw is not None)
                if status in (None, d["status"]) and kind in (None, d["kind"])]
        rows.sort(key=lambda r: (r.created_at, r.id))
        return rows[:max(limit, 0)]

    async def outbox_set(self, row_id: str, status: str, data: dict[str, Any] | None = None,
                         *, expect: str | None = None) -> bool:
        member_id = row_id.split("|", 1)[0]
        mob = self._mkeys(member_id)[3]
        intent, prior = await self._raise_intent(member_id)
        for _ in range(MAX_TRIES):
            raw = await self.client.hget(mob, row_id)
            if raw is None or (expect is not None and loads(raw)["status"] != expect):
                await self._settle_own(member_id, intent, prior)
                return False
            row = loads(raw)
            n = row.get("n", 0) + 1
            new = {**row, "status": status, "updated_at": int(time.time()), "n": n,
                   "data": {**(row["data"] or {}), **(data or {})}}
            if await self._ob_cas((mob,), (row_id, raw, dumps(new))):
                if prior:
                    await self._repair(member_id, intent)
                else:
                    await self._publish_one(member_id, 0, None, [], [[row_id, n, status]],
                                            intent)
                return True
        await self._settle_own(member_id, intent, prior)
        raise ConflictError(f"outbox row {row_id}: too many concurrent writers")


class RedisSentinelStore(RedisStore):
    """A standalone Redis found through Sentinel: ``redis+sentinel://[:password@]h1:p1,h2:p2/
    <service>[/<db>]``; after a failover the client follows the new master."""

    kind = "redis"

    def __init__(self, url: str, codec: Codec) -> None:
        super().__init__(url, codec)
        self.user, self.password, self.nodes, path = parse_nodes(url)
        if not path:
            raise StoreError(f"the Sentinel URL {url!r} names no service: write "
                             "redis+sentinel://host:port[,host:port]/<service>[/<db>]")
        self.service = path[0]
        self.db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
        self.where = url.replace(f":{self.password}@", "@") if self.password else url
        self._sentinel: Sentinel | None = None

    async def close(self) -> None:
        await super().close()
        if self._sentinel is not None:
            sentinel, self._sentinel = self._sentinel, None
            for client in sentinel.sentinels:
                await client.aclose()

    def _connect(self) -> aioredis.Redis:
        opts = self.client_options()
        self._sentinel = sentinel = Sentinel(self.nodes, socket_connect_timeout=5,
                                             socket_timeout=5)
        return sentinel.master_for(self.service, db=self.db, username=self.user,
                                   password=self.password, **opts)


# Cluster failures (a slot moving, a node down) are "busy, retry" too, like an outage.
for _name in Store.__abstractmethods__ - {"open", "close", "ping"}:
    setattr(RedisClusterStore, _name, _cluster_guarded(getattr(RedisClusterStore, _name)))
