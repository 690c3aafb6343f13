"""The raw storage contract, with hand-written steps, on every backend (see conftest.py)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from bot.rules.models import Change, Entry, Member
from storage import Store, StoreError, StoreUnavailable, open_store

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def bump(mid: str, *, result: Any = None, entries: list[Entry] | None = None,
         outbox: list[dict[str, Any]] | None = None, indexes: dict[str, Any] | None = None,
         stock_returns: list[tuple[str, str]] | None = None, calls: list[str] | None = None,
         **fields: Any):
    """A check-in-like step: create the member if needed, count one, set ``fields``."""

    def step(m: Member | None) -> Change:
        if calls is not None:
            calls.append(mid)
        m = m or Member(mid, member_code=f"C-{mid}")
        m.checkin_total += 1
        for k, v in fields.items():
            setattr(m, k, v)
        return Change(m, {"n": m.checkin_total} if result is None else result,
                      list(entries or [Entry("credit", 1000, points=1, ref=mid)]),
                      list(outbox or []), indexes, list(stock_returns or []))

    return step


def boom(m: Member | None) -> Change:
    raise ValueError("the rule says no")


# -- idempotency and concurrency ----------------------------------------------------------
async def test_same_key_twice_runs_step_once(store: Store):
    calls: list[str] = []
    first = await store.update("m1", bump("m1", calls=calls), key="k1")
    again = await store.update("m1", bump("m1", calls=calls), key="k1")
    assert first == again == {"n": 1}
    assert calls == ["m1"]
    assert await store.seen("m1", "k1") == (True, {"n": 1})
    assert await store.seen("m1", "k2") == (False, None)
    assert await store.seen("m2", "k1") == (False, None)  # keys are per member
    assert (await store.get("m1")).checkin_total == 1
    assert len(await store.ledger(member_id="m1")) == 1


async def test_keyless_updates_always_run(store: Store):
    await store.update("m1", bump("m1"))
    assert await store.update("m1", bump("m1")) == {"n": 2}
    assert (await store.get("m1")).version == 2


async def test_concurrent_same_key_has_one_effect(store: Store):
    results = await asyncio.gather(*(store.update("m1", bump("m1"), key="once")
                                     for _ in range(30)))
    assert results == [{"n": 1}] * 30
    m = await store.get("m1")
    assert (m.checkin_total, m.version) == (1, 1)
    assert len(await store.ledger(member_id="m1")) == 1


async def test_concurrent_distinct_keys_lose_no_update(store: Store):
    await store.update("m1", bump("m1"), key="create")
    results = await asyncio.gather(*(store.update("m1", bump("m1"), key=f"k{i}")
                                     for i in range(30)))
    assert sorted(r["n"] for r in results) == list(range(2, 32))
    m = await store.get("m1")
    assert (m.checkin_total, m.version) == (31, 31)
    assert len(await store.ledger(member_id="m1")) == 31
    seen = [await store.seen("m1", f"k{i}") for i in range(30)]
    assert sorted(r["n"] for ok, r in seen if ok) == list(range(2, 32))


async def test_a_burst_larger_than_any_connection_pool_waits_instead_of_failing(store: Store):
    # 300 callers at once (more than redis-py's default pool of 100 connections): each waits
    # for its turn; none is refused as "store unavailable"
    ids = [f"b{i}" for i in range(300)]
    results = await asyncio.gather(*(store.update(i, bump(i), key="k") for i in ids),
                                   *(store.kv_get(f"burst:{i}") for i in ids))
    assert results[:300] == [{"n": 1}] * 300 and results[300:] == [None] * 300
    assert [(await store.get(i)).checkin_total for i in ids[:5]] == [1] * 5


async def test_raising_step_writes_nothing(store: Store):
    await store.update("m1", bump("m1", indexes={"expiry": 20260101}), key="create")
    before = await store.get("m1")
    ledger_before = await store.ledger()
    with pytest.raises(ValueError, match="the rule says no"):
        await store.update("m1", boom, key="k-boom")
    with pytest.raises(ValueError):
        await store.update("m-new", boom, key="k-boom")
    assert await store.get("m1") == before
    assert await store.get("m-new") is None
    assert await store.ledger() == ledger_before
    assert await store.seen("m1", "k-boom") == (False, None)
    assert await store.outbox() == []
    assert await store.count_members() == 1
    # The key was not burnt: a later step with it runs.
    assert await store.update("m1", bump("m1"), key="k-boom") == {"n": 2}


async def test_member_none_still_records_ledger_outbox_and_key(store: Store):
    def note(m: Member | None) -> Change:
        return Change(None, "noted", [Entry("note", 5, ref="x")],
                      [{"kind": "welcome", "period": "p1"}])

    assert await store.update("ghost", note, key="n1") == "noted"
    assert await store.update("ghost", note, key="n1") == "noted"
    assert await store.get("ghost") is None
    assert await store.count_members() == 0
    assert [r.kind for r in await store.ledger(member_id="ghost")] == ["note"]
    assert [r.id for r in await store.outbox()] == ["ghost|welcome|p1"]
    assert await store.seen("ghost", "n1") == (True, "noted")


# -- indexes --------------------------------------------------------------------------------
async def test_indexes_range_tagged_and_counts_follow_changes(store: Store):
    for mid, exp, tier, tags in [("m3", 20260105, "gold", ["vip", "tea"]),
                                 ("m1", 20260110, "normal", ["tea"]),
                                 ("m2", 20260101, "gold", None),
                                 ("m4", None, "normal", ["vip"])]:
        await store.update(mid, bump(mid, indexes={"expiry": exp, "tier": tier, "tags": tags,
                                                   "followed": True}))
    assert await store.range("expiry", 20260101, 20260110) == [
        ("m1", 20260110), ("m2", 20260101), ("m3", 20260105)]
    assert await store.range("expiry", 20260102, 20260109) == [("m3", 20260105)]
    assert await store.range("expiry", 20260101, 20260110, after="m1", limit=1) == [
        ("m2", 20260101)]
    assert await store.range("followed", 1, 1) == [("m1", 1), ("m2", 1), ("m3", 1), ("m4", 1)]
    assert await store.tagged("tier", "gold") == ["m2", "m3"]
    assert await store.tagged("tags", "vip") == ["m3", "m4"]
    assert await store.tagged("tags", "tea", after="m1") == ["m3"]
    assert await store.tagged("tags", "tea", limit=1) == ["m1"]
    assert await store.tag_counts("tier") == {"gold": 2, "normal": 2}
    assert await store.tag_counts("tags") == {"vip": 2, "tea": 2}

    await store.update("m3", bump("m3", indexes={"expiry": None, "tier": "normal",
                                                 "tags": ["tea"], "followed": False}))
    await store.update("m4", bump("m4", indexes={"expiry": 20260102, "tier": "normal",
                                                 "tags": None, "followed": True}))
    await store.update("m1", bump("m1"))  # indexes=None keeps the old entries
    assert await store.range("expiry", 0, 99999999) == [
        ("m1", 20260110), ("m2", 20260101), ("m4", 20260102)]
    assert await store.range("followed", 0, 0) == [("m3", 0)]
    assert await store.tagged("tier", "gold") == ["m2"]
    assert await store.tagged("tags", "vip") == []
    assert await store.tagged("tags", "tea") == ["m1", "m3"]
    assert await store.tag_counts("tier") == {"gold": 1, "normal": 3}
    assert await store.tag_counts("tags") == {"tea": 2}
    assert await store.tag_counts("nothing") == {}
    assert await store.range("nothing", 0, 1) == []


# -- uniques and personal data --------------------------------------------------------------
async def test_uniques_claim_lookup_release(store: Store, raw):
    assert await store.claim("openid", "o-1", "m1") == "m1"
    assert await store.claim("openid", "o-1", "m2") == "m1"
    assert await store.claim("member_code", "o-1", "m2") == "m2"  # kinds are separate
    assert await store.lookup("openid", "o-1") == "m1"
    assert await store.lookup("openid", "o-2") is None
    await store.release("openid", "o-1", "m2")  # not the owner: no effect
    assert await store.lookup("openid", "o-1") == "m1"
    await store.release("openid", "o-1", "m1")
    assert await store.lookup("openid", "o-1") is None
    assert await store.claim("openid", "o-1", "m2") == "m2"

    phone = "13800138000"
    assert await store.claim("phone", phone, "m1") == "m1"
    assert await store.claim("phone", phone, "m2") == "m1"
    assert await store.lookup("phone", phone) == "m1"
    data = await raw()
    assert store.codec.lookup_hash(phone).encode() in data
    assert phone.encode() not in data
    await store.release("phone", phone, "m1")
    assert await store.lookup("phone", phone) is None


async def test_personal_fields_are_sealed_at_rest(store: Store, raw):
    phone, birthday = "13912345678", "1990-05-17"
    await store.update("m1", bump("m1", phone=phone, birthday=birthday, nickname="Lin"),
                       key="profile")
    m = await store.get("m1")
    assert (m.phone, m.birthday, m.nickname) == (phone, birthday, "Lin")
    data = await raw()
    assert b"C-m1" in data and b"Lin" in data  # the aggregate is there...
    assert phone.encode() not in data  # ...but not its personal fields in clear
    assert birthday.encode() not in data


# -- stock ------------------------------------------------------------------------------------
async def test_stock_take_is_bounded_and_idempotent(store: Store):
    assert await store.stock("T") is None
    assert await store.stock_take("T", "none") is False  # an unknown template has no stock
    await store.stock_init("T", 10)
    taken = await asyncio.gather(*(store.stock_take("T", f"k{i}") for i in range(50)))
    assert taken.count(True) == 10
    assert await store.stock("T") == 0
    winner = f"k{taken.index(True)}"
    assert await store.stock_take("T", winner) is True  # the same key counts once
    assert await store.stock("T") == 0
    await store.stock_return("T", winner)
    await store.stock_return("T", winner)  # at most once per key
    await store.stock_return("T", "never-taken")
    assert await store.stock("T") == 1
    await store.stock_init("T", 100)  # never resets
    assert await store.stock("T") == 1
    await store.stock_set("T", 7)
    assert await store.stock("T") == 7
    await store.stock_set("U", 2)
    assert await store.stock("U") == 2


async def test_stock_returns_ride_with_the_update(store: Store):
    await store.stock_init("T", 1)
    assert await store.stock_take("T", "c1") is True
    assert await store.stock("T") == 0
    back = [("T", "c1"), ("T", "c1"), ("T", "c2")]
    await store.update("m1", bump("m1", stock_returns=back), key="refund-1")
    await store.update("m1", bump("m1", stock_returns=back), key="refund-2")
    assert await store.stock("T") == 1


# -- outbox -----------------------------------------------------------------------------------
async def test_outbox_insert_if_absent_and_compare_and_set(store: Store):
    ob = [{"kind": "birthday", "period": "2026", "data": {"a": 1}}]
    await store.update("m1", bump("m1", outbox=ob), key="p1")
    again = [{"kind": "birthday", "period": "2026", "data": {"a": 2}}]
    await store.update("m1", bump("m1", outbox=again), key="p2")  # same id: ignored
    await store.update("m2", bump("m2", outbox=[{"kind": "dormant", "period": "2026-01",
                                                 "status": "skipped"}]), key="p1")
    rows = await store.outbox()
    assert [(r.id, r.status, r.data) for r in rows] == [
        ("m1|birthday|2026", "pending", {"a": 1}), ("m2|dormant|2026-01", "skipped", {})]
    assert [r.id for r in await store.outbox(status="pending")] == ["m1|birthday|2026"]
    assert [r.id for r in await store.outbox(kind="dormant")] == ["m2|dormant|2026-01"]
    assert await store.outbox(status="pending", kind="dormant") == []
    assert len(await store.outbox(limit=1)) == 1
    row = rows[0]
    assert (row.member_id, row.kind, row.period) == ("m1", "birthday", "2026")

    rid = "m1|birthday|2026"
    assert await store.outbox_set(rid, "sending", expect="pending") is True
    assert await store.outbox_set(rid, "sending", expect="pending") is False
    assert await store.outbox_set(rid, "sent", {"msgid": "x"}, expect="sending") is True
    assert await store.outbox_set("m9|x|y", "sent") is False
    assert await store.outbox(status="pending") == []
    [sent] = await store.outbox(status="sent")
    assert (sent.id, sent.data) == (rid, {"a": 1, "msgid": "x"})
    assert await store.outbox_set(rid, "failed", {"a": 3}) is True  # no expect: any status
    [failed] = await store.outbox(status="failed")
    assert failed.data == {"a": 3, "msgid": "x"}
    assert await store.outbox(status="sent") == []


async def test_outbox_set_races_have_one_winner(store: Store):
    await store.update("m1", bump("m1", outbox=[{"kind": "k", "period": "p"}]))
    won = await asyncio.gather(*(store.outbox_set("m1|k|p", "sending", {"by": i},
                                                  expect="pending") for i in range(20)))
    assert won.count(True) == 1
    [row] = await store.outbox(status="sending")
    assert row.data == {"by": won.index(True)}


# -- kv -----------------------------------------------------------------------------------------
async def test_kv_only_new_expect_and_delete(store: Store):
    assert await store.kv_get("a") is None
    assert await store.kv_set("a", "1") is True
    assert await store.kv_get("a") == "1"
    assert await store.kv_set("a", "2", only_new=True) is False
    assert await store.kv_set("a", "2", expect="0") is False
    assert await store.kv_set("a", "2", expect="1") is True
    assert await store.kv_get("a") == "2"
    assert await store.kv_set("a", "3", only_new=True, expect="2") is False  # never both
    assert await store.kv_set("b", "1", expect="1") is False  # absent never matches
    assert await store.kv_set("b", "1", only_new=True) is True
    assert await store.kv_delete("a", expect="1") is False
    assert await store.kv_get("a") == "2"
    assert await store.kv_delete("a", expect="2") is True
    assert await store.kv_get("a") is None
    assert await store.kv_delete("a") is False
    assert await store.kv_delete("b") is True


async def test_kv_ttl_expires(store: Store):
    # ttls long enough that a loaded machine cannot outrun them between two calls
    assert await store.kv_set("lock", "me", ttl=1.0, only_new=True) is True
    assert await store.kv_set("lock", "you", ttl=1.0, only_new=True) is False
    assert await store.kv_set("lock", "me", ttl=0.3, expect="me") is True  # renew
    await asyncio.sleep(0.45)
    assert await store.kv_get("lock") is None
    assert await store.kv_set("lock", "you", ttl=10, only_new=True) is True
    assert await store.kv_get("lock") == "you"


async def test_incr_window_counts_until_it_expires(store: Store):
    assert [await store.incr_window("rate", 1.0) for _ in range(3)] == [1, 2, 3]
    await asyncio.sleep(1.15)
    assert await store.incr_window("rate", 1.0) == 1
    assert await store.incr_window("other", 10) == 1


# -- ledger and scans -------------------------------------------------------------------------
async def test_ledger_filters_and_pages(store: Store):
    plan = [("m1", "credit", 100), ("m2", "credit", 150), ("m1", "spend", 200),
            ("m2", "order", 250), ("m1", "credit", 300)]
    for i, (mid, kind, at) in enumerate(plan):
        entry = Entry(kind, at, points=i, amount_fen=10 * i, ref=f"r{i}", data={"i": i})
        await store.update(mid, bump(mid, entries=[entry]), key=f"e{i}")
    rows = await store.ledger()
    assert [(r.member_id, r.kind, r.at, r.points, r.amount_fen, r.ref, r.data)
            for r in rows] == [(mid, kind, at, i, 10 * i, f"r{i}", {"i": i})
                               for i, (mid, kind, at) in enumerate(plan)]
    ids = [r.id for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [r.ref for r in await store.ledger(member_id="m1")] == ["r0", "r2", "r4"]
    assert [r.ref for r in await store.ledger(since=150, until=300)] == ["r1", "r2", "r3"]
    assert [r.ref for r in await store.ledger(kinds=["spend", "order"])] == ["r2", "r3"]
    assert [r.ref for r in await store.ledger(member_id="m1", kinds=["credit"],
                                              since=101)] == ["r4"]
    assert [r.ref for r in await store.ledger(after_id=ids[1])] == ["r2", "r3", "r4"]
    assert [r.ref for r in await store.ledger(member_id="m1", after_id=ids[2])] == ["r4"]
    assert [r.ref for r in await store.ledger(kinds=["credit"], limit=2)] == ["r0", "r1"]
    assert await store.ledger(member_id="nobody") == []

    paged, after = [], 0
    while page := await store.ledger(after_id=after, limit=2):
        paged += page
        after = page[-1].id
    assert paged == rows
    assert [r.data for r in await store.ledger(kinds=["note"])] == []


async def test_ledger_reads_newest_first_with_a_limit(store: Store):
    for i, mid in enumerate(["m1", "m2", "m1", "m1", "m2", "m1"]):
        await store.update(mid, bump(mid, entries=[Entry("credit", 100 + i, ref=f"r{i}")]),
                           key=f"e{i}")
    newest = await store.ledger(member_id="m1", newest_first=True, limit=3)
    assert [r.ref for r in newest] == ["r5", "r3", "r2"]
    assert [r.ref for r in await store.ledger(member_id="m1", newest_first=True)] == \
        ["r5", "r3", "r2", "r0"]
    every = await store.ledger(newest_first=True)
    assert [r.ref for r in every] == [f"r{i}" for i in range(5, -1, -1)]
    assert [r.ref for r in await store.ledger(newest_first=True, limit=2)] == ["r5", "r4"]
    assert [r.ref for r in await store.ledger(newest_first=True, after_id=every[3].id)] == \
        ["r5", "r4", "r3"]
    assert [r.ref for r in await store.ledger(newest_first=True, since=102, until=105)] == \
        ["r4", "r3", "r2"]
    assert await store.ledger(member_id="nobody", newest_first=True) == []


async def test_member_ids_and_count(store: Store):
    assert await store.count_members() == 0
    assert await store.member_ids() == []
    for mid in ("m03", "m01", "m10", "m02"):
        await store.update(mid, bump(mid))
    await store.update("m03", bump("m03"))
    assert await store.count_members() == 4
    assert await store.member_ids() == ["m01", "m02", "m03", "m10"]
    assert await store.member_ids(after="m02") == ["m03", "m10"]
    assert await store.member_ids(after="m01", limit=2) == ["m02", "m03"]
    assert await store.member_ids(after="m10") == []


async def test_ping(store: Store):
    health = await store.ping()
    assert health["kind"] == store.kind and health["ok"] is True


# -- opening --------------------------------------------------------------------------------------
async def test_open_store_unknown_scheme_is_one_line():
    with pytest.raises(StoreError) as e:
        open_store("mongodb://localhost/x", os.urandom(32))
    assert "\n" not in str(e.value) and "mongodb" in str(e.value)


async def test_open_unreachable_redis_is_one_line():
    s = open_store("redis://127.0.0.1:1/0", os.urandom(32))
    with pytest.raises(StoreError) as e:
        await s.open()
    msg = str(e.value)
    assert "\n" not in msg and "redis://127.0.0.1:1/0" in msg and "MEMBERBOT_STORE" in msg
    await s.close()


async def test_bad_data_key_is_refused():
    with pytest.raises(StoreError, match="32 bytes"):
        open_store("sqlite:///x.db", os.urandom(16))


# -- Redis only: several processes on one server ------------------------------------------------
async def open_redis(key: bytes = b"k" * 32, *, flush: bool = False) -> Store:
    s = open_store(REDIS_URL, key)
    try:
        await s.open()
    except StoreError as e:
        pytest.fail(f"needs a Redis server at {REDIS_URL}: {e}", pytrace=False)
    if flush:
        await s.client.flushdb()
    return s


async def test_redis_version_conflict_reruns_the_step_on_fresh_state():
    a, b = await open_redis(flush=True), await open_redis()
    try:
        await a.update("m1", bump("m1"), key="create")
        real, raced, calls = a._commit, [], []

        def racing(b_key: str, b_result: Any = None):
            async def commit(keys, args):  # another process commits between A's two trips
                if args[0] != -1 and not raced:
                    raced.append(b_key)
                    await b.update("m1", bump("m1", result=b_result), key=b_key)
                return await real(keys, args)
            return commit

        a._commit = racing("b1")
        assert await a.update("m1", bump("m1", calls=calls), key="a1") == {"n": 3}
        assert calls == ["m1", "m1"] and a.conflicts == 1  # the step ran again on fresh state
        # B commits A's very key in between: A answers B's result and applies nothing itself.
        raced.clear()
        a._commit = racing("k", "by b")
        assert await a.update("m1", bump("m1"), key="k") == "by b"
        assert await a.seen("m1", "k") == (True, "by b")
        m = await a.get("m1")
        assert (m.checkin_total, m.version) == (4, 4)
        assert len(await a.ledger(member_id="m1")) == 4
    finally:
        await a.close()
        await b.close()


async def test_redis_many_processes_on_one_member_lose_nothing():
    stores = [await open_redis(flush=i == 0) for i in range(4)]
    try:
        await asyncio.gather(*(s.update("m1", bump("m1"), key=f"{i}-{j}")
                               for i, s in enumerate(stores) for j in range(15)),
                             *(s.update("m1", bump("m1"), key="once") for s in stores))
        m = await stores[0].get("m1")
        assert (m.checkin_total, m.version) == (61, 61)
        assert len(await stores[0].ledger()) == 61
    finally:
        for s in stores:
            await s.close()


async def test_redis_outage_during_update_is_store_unavailable():
    s = await open_redis(os.urandom(32), flush=True)
    try:
        await s.update("m1", bump("m1"), key="k1")
        pool = s.client.connection_pool
        port = pool.connection_kwargs["port"]
        pool.connection_kwargs["port"] = 1  # the server "goes away"
        await pool.disconnect()
        pool.reset()
        with pytest.raises(StoreUnavailable) as e:
            await s.update("m1", bump("m1"), key="k2")
        assert "\n" not in str(e.value) and "Connection refused" in str(e.value)
        with pytest.raises(StoreUnavailable):
            await s.kv_get("a")
        assert (await s.ping())["ok"] is False
        pool.connection_kwargs["port"] = port  # ... and comes back
        await pool.disconnect()
        pool.reset()
        assert (await s.ping())["ok"] is True
        assert await s.seen("m1", "k2") == (False, None)
        assert await s.update("m1", bump("m1"), key="k2") == {"n": 2}
    finally:
        await s.close()


async def test_every_backend_declares_its_kind_its_conflicts_and_hashes_phones(store: Store):
    assert store.kind in ("sqlite", "redis", "postgresql", "redis-cluster")
    assert isinstance(store.conflicts, int) and store.conflicts >= 0
    assert store._uval("phone", "13800000000") not in ("", "13800000000")
    assert store._uval("openid", "o-1") == "o-1"


def test_a_backend_that_does_not_declare_its_kind_is_refused():
    from storage.sqlite import SQLiteStore

    with pytest.raises(TypeError, match="must declare its kind"):
        type("Nameless", (Store,), {name: getattr(SQLiteStore, name)
                                     for name in Store.__abstractmethods__})
