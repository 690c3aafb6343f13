"""Redis Cluster and Sentinel only: writes of one update in one slot, global structures
repaired from the member after a crash between the commit and the publish."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from bot.rules.models import Entry
from storage import StoreError, open_store
from storage import redis_cluster as rc
from tests.contract.test_store_raw import bump
from tests.redis_cluster import free_cluster_ports, redis_cluster


async def opened(url: str):
    s = open_store(url, b"k" * 32)
    await s.open()
    return s


async def test_every_write_of_an_update_lands_in_the_member_slot(cluster_url, monkeypatch):
    s = await opened(cluster_url)
    try:
        await s.client.flushdb()
        seen: list[tuple[str, ...]] = []
        real = s._commit

        async def spy(keys, args):
            seen.append(tuple(keys))
            return await real(keys, args)

        def spy_submit(keys, args):  # the read, sent without waiting
            seen.append(tuple(keys))
            return real.submit(keys, args)

        spy.submit = spy_submit
        s._commit = spy
        await s.update("m1", bump("m1", indexes={"tier": "gold", "last": 5},
                                  outbox=[{"kind": "k", "period": "p"}]), key="a")
        slots = {await s.client.cluster_keyslot(k) for ks in seen for k in ks}
        assert slots == {await s.client.cluster_keyslot("{m:m1}")}
    finally:
        await s.close()


async def test_a_crash_between_commit_and_publish_loses_nothing(cluster_url, monkeypatch):
    dead = await opened(cluster_url)
    await dead.client.flushdb()

    async def crash(*a, **kw):  # the process dies right after the member commit
        raise SystemExit("killed")

    dead._publish_one = crash
    entry = Entry("credit", 1000, points=7, ref="r1")
    with pytest.raises(SystemExit):
        await dead.update("m1", bump("m1", entries=[entry], indexes={"exp": 42, "tier": "gold"},
                                     outbox=[{"kind": "dormant", "period": "2026-11"}]),
                          key="k1")
    await dead.close()

    s = await opened(cluster_url)
    try:
        # the commit is acknowledged by the member; every global query repairs from it
        assert await s.seen("m1", "k1") == (True, {"n": 1})
        assert await s.range("exp", 40, 50) == [("m1", 42)]
        assert await s.tagged("tier", "gold") == ["m1"]
        assert await s.tag_counts("tier") == {"gold": 1}
        assert await s.member_ids() == ["m1"] and await s.count_members() == 1
        # the global ledger shows rows up to the oldest mark: the dead writer's, until it is
        # older than a live writer could be (then it is dropped once republished)
        assert [r.ref for r in await s.ledger()] == []
        assert [r.ref for r in await s.ledger(member_id="m1")] == ["r1"]
        monkeypatch.setattr(rc, "SETTLE_AFTER", -1.0)
        assert [r.ref for r in await s.ledger()] == ["r1"]
        assert await s.client.zcard(f"{rc.shard_of('m1')}:intent") == 0
        assert [r.id for r in await s.outbox(status="pending")] == ["m1|dormant|2026-11"]
        # a later update moves the index: the stale bucket is gone, nothing doubled
        await s.update("m1", bump("m1", indexes={"exp": 99, "tier": "silver"}), key="k2")
        assert await s.range("exp", 0, 100) == [("m1", 99)]
        assert await s.tag_counts("tier") == {"silver": 1}
        assert len(await s.ledger()) == 2
    finally:
        await s.close()


async def test_publishes_out_of_order_keep_the_newest_index(cluster_url):
    s = await opened(cluster_url)
    try:
        await s.client.flushdb()
        held: list = []
        real = s._publish_one

        async def hold(*a, **kw):  # the first writer's publish arrives last
            if not held:
                held.append((a, kw))
                return None
            return await real(*a, **kw)

        s._publish_one = hold
        await s.update("m1", bump("m1", indexes={"exp": 1}), key="a")
        await s.update("m1", bump("m1", indexes={"exp": 2}), key="b")
        await real(*held[0][0], **held[0][1])
        assert await s.range("exp", 0, 10) == [("m1", 2)]
    finally:
        await s.close()


async def test_many_processes_on_one_member_lose_nothing(cluster_url):
    s = await opened(cluster_url)
    await s.client.flushdb()
    code = (
        "import asyncio, sys\n"
        "from storage import open_store\n"
        "from tests.contract.test_store_raw import bump\n"
        "async def main(i):\n"
        "    s = open_store(sys.argv[1], b'k' * 32)\n"
        "    await s.open()\n"
        "    await asyncio.gather(*(s.update('m1', bump('m1', indexes={'n': j}), "
        "key=f'{i}-{j}') for j in range(20)), s.update('m1', bump('m1'), key='once'))\n"
        "    await s.close()\n"
        "asyncio.run(main(sys.argv[2]))\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    try:
        procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", code, cluster_url,
                                                      str(i), env=env) for i in range(3)]
        assert [await asyncio.wait_for(p.wait(), 60) for p in procs] == [0, 0, 0]
        m = await s.get("m1")
        assert (m.checkin_total, m.version) == (61, 61)
        assert len(await s.ledger()) == 61
        assert [mid for mid, _ in await s.range("n", 0, 100)] == ["m1"]
    finally:
        await s.close()


def _serve_error(url: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMBERBOT_", "WECHAT_"))}
    env.update(MEMBERBOT_STORE=url,
               MEMBERBOT_DATA_KEY="eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=")
    p = subprocess.run([sys.executable, "-m", "bot", "serve", "--workers", "2", "--port", "0"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, p.stderr
    return errors[0]


def test_a_cluster_with_a_missing_slot_is_one_line():
    with redis_cluster() as url:
        for node in url.split("://")[1].split(","):  # slot 0 is served by no node
            subprocess.run(["redis-cli", "-p", node.rsplit(":", 1)[1], "cluster", "delslots",
                            "0"], capture_output=True)
        time.sleep(0.2)
        line = _serve_error(url)
    assert "slot" in line and "Redis Cluster" in line


def test_an_unreachable_cluster_is_one_line():
    port = free_cluster_ports(1)[0]
    line = _serve_error(f"redis+cluster://127.0.0.1:{port}")
    assert "cannot use the Redis Cluster" in line


async def test_sentinel_finds_the_master():
    server = shutil.which("redis-server")
    master, sentinel = free_cluster_ports(2)
    work = tempfile.mkdtemp(prefix="memberbot-sentinel-")
    conf = f"{work}/sentinel.conf"
    with open(conf, "w") as f:
        f.write(f"port {sentinel}\nbind 127.0.0.1\ndir {work}\n"
                f"sentinel monitor mb 127.0.0.1 {master} 1\n")
    procs = [subprocess.Popen([server, "--port", str(master), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL),
             subprocess.Popen([server, conf, "--sentinel"], stdout=subprocess.DEVNULL)]
    try:
        url = f"redis+sentinel://127.0.0.1:{sentinel}/mb/0"
        s = None
        for _ in range(100):
            try:
                s = await opened(url)
                break
            except StoreError:
                await asyncio.sleep(0.1)
        assert s is not None
        try:
            await s.update("m1", bump("m1"), key="a")
            await s.update("m1", bump("m1"), key="a")
            assert (await s.get("m1")).checkin_total == 1
            assert (await s.ping())["ok"] is True
        finally:
            await s.close()
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)


async def test_a_reader_paging_by_id_never_passes_a_row_yet_to_be_published(cluster_url):
    s = await opened(cluster_url)
    try:
        await s.client.flushdb()
        await s.update("m0", bump("m0"), key="before")
        first = [r.id for r in await s.ledger()]
        intent, prior = await s._raise_intent("m9")  # an update of m9 is under way
        await s.update("m1", bump("m1"), key="after")  # committed and published after it
        assert await s.ledger(after_id=first[-1]) == []
        assert [r.ref for r in await s.ledger(member_id="m1")] == ["m1"]
        await s._settle_own("m9", intent, prior)  # m9's update ends
        assert [r.ref for r in await s.ledger(after_id=first[-1])] == ["m1"]
    finally:
        await s.close()


async def test_an_update_follows_its_member_to_another_node(cluster_url):
    """Scripts go straight to the node the client believes serves the slot; when the slot
    has moved (MOVED), the script did not run there and is sent again where it now lives."""
    import redis.asyncio as aioredis

    s = await opened(cluster_url)
    try:
        await s.client.flushdb()
        await s.update("m1", bump("m1"), key="a")
        slot = await s.client.cluster_keyslot("{m:m1}")
        src = s.client.get_node_from_key("{m:m1}:agg")
        dst = next(n for n in s.client.get_nodes() if n.name != src.name)
        a = aioredis.Redis(host=src.host, port=src.port)
        b = aioredis.Redis(host=dst.host, port=dst.port)
        try:
            src_id, dst_id = await a.execute_command("CLUSTER MYID"), await b.execute_command(
                "CLUSTER MYID")
            await b.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
            await a.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
            keys = await a.execute_command("CLUSTER GETKEYSINSLOT", slot, 100)
            await a.execute_command("MIGRATE", dst.host, dst.port, "", 0, 5000, "KEYS", *keys)
            for c in (a, b):
                await c.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        finally:
            await a.aclose()
            await b.aclose()
        # the store still routes the slot to src: MOVED, then the script runs on dst
        assert await s.update("m1", bump("m1"), key="b") == {"n": 2}
        assert (await s.get("m1")).checkin_total == 2
        assert [r.ref for r in await s.ledger(member_id="m1")] == ["m1", "m1"]
        assert s.client.get_node_from_key("{m:m1}:agg").name == dst.name  # map learnt
    finally:
        await s.close()


async def test_a_publish_of_the_changed_terms_leaves_what_a_full_publish_leaves(cluster_url):
    """A publish on top of the version before applies only the terms that changed; the
    shard ends as a full comparison (a repair, a publish out of order) would leave it."""
    s = await opened(cluster_url)
    try:
        await s.client.flushdb()
        seen: list[str] = []
        real = s._publish

        async def spy(keys, args):
            seen.append(args[7])
            return await real(keys, args)

        def spy_submit(keys, args):  # an update's own publish, not waited for
            seen.append(args[7])
            return real.submit(keys, args)

        spy.submit = spy_submit
        s._publish = spy
        steps = [{"exp": 1, "tier": "a", "tags": ["x", "y"]},
                 {"exp": 2, "tier": "b", "tags": ["y", "z"]},
                 {"exp": None, "tier": "b", "tags": None, "birthday": 1225},
                 {"exp": 3, "tier": None, "tags": ["x"], "birthday": 1225}]
        for i, idx in enumerate(steps):
            await s.update("m1", bump("m1", indexes=idx), key=f"k{i}")
            await s.update("m2", bump("m2", indexes=idx), key=f"k{i}")
        assert all(seen[2:]) and not any(seen[:2])  # the first commits publish in full

        async def state() -> list:
            return [await s.range("exp", 0, 10), await s.range("birthday", 0, 9999),
                    await s.tag_counts("tier"), await s.tag_counts("tags"),
                    await s.tagged("tags", "x"), await s.tagged("tags", "y")]

        assert await state() == [[("m1", 3), ("m2", 3)], [("m1", 1225), ("m2", 1225)], {},
                                 {"x": 2}, ["m1", "m2"], []]
        before = await state()
        for mid in ("m1", "m2"):  # forget what was published: a repair compares in full
            g = rc.shard_of(mid)
            await s.client.hdel(f"{g}:ver", mid)
            await s._repair(mid)
        assert await state() == before
    finally:
        await s.close()
