"""kill -9 of `memberbot serve` in the middle of a load of check-ins and orders: after a
restart every acknowledged change is there exactly once, and sending everything again adds
nothing twice (SQLite, Redis, PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter

import aiohttp
import pytest

from storage import open_store
from tests.serving import Served

from .load import DATA_KEY, ENV, Load

pytestmark = pytest.mark.faults


async def ledger_counts(url: str) -> tuple[Counter, Counter]:
    """(check-ins per openid, order rows per order id) as the store has them."""
    store = open_store(url, DATA_KEY)
    async with store:
        checkins: Counter = Counter()
        orders: Counter = Counter()
        owner: dict[str, str] = {}
        for row in await store.ledger(kinds=["checkin", "order"], limit=100_000):
            if row.member_id not in owner:
                m = await store.get(row.member_id)
                owner[row.member_id] = m.openid
            if row.kind == "checkin":
                checkins[owner[row.member_id]] += 1
            else:
                orders[row.ref.split("order:", 1)[-1]] += 1
        return checkins, orders


async def test_kill_9_mid_load_loses_no_acknowledged_change_and_doubles_none(store_url,
                                                                             tmp_path):
    srv = Served(tmp_path, {**ENV, "MEMBERBOT_STORE": store_url})
    srv.start()
    load = Load(srv.base, members=20, orders_each=6)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            await load.follow_all(http)
            burst = asyncio.ensure_future(load.burst(http))
            for _ in range(2000):  # kill once about a third is acknowledged
                if len(load.acked_orders) + len(load.acked_checkins) >= 45 or burst.done():
                    break
                await asyncio.sleep(0.005)
            srv.kill9()
            await burst
        assert not burst.exception()
        acked_c, acked_o = set(load.acked_checkins), set(load.acked_orders)
        assert acked_o and len(acked_o) < len(load.sent_orders), "the kill came too late"

        srv.start()  # the same store, a new process
        checkins, orders = await ledger_counts(store_url)
        assert all(checkins[o] == 1 for o in acked_c), checkins
        assert all(orders[o] == 1 for o in acked_o), orders
        assert max(checkins.values(), default=1) == 1 and max(orders.values(), default=1) == 1

        again = Load(srv.base, members=20, orders_each=6)  # everything sent again
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await again.burst(http, msg_base=7_000_000)
        assert len(again.acked_orders) == 20 * 6 and len(again.acked_checkins) == 20
        checkins, orders = await ledger_counts(store_url)
        assert set(checkins.values()) == {1} and len(checkins) == 20
        assert set(orders.values()) == {1} and len(orders) == 20 * 6
    finally:
        srv.stop()
    log = srv.log_text()
    assert "Traceback" not in log, log[-3000:]



async def test_kill_9_of_one_of_two_workers_mid_load_loses_and_doubles_nothing(shared_url,
                                                                             tmp_path):
    srv = Served(tmp_path, {**ENV, "MEMBERBOT_STORE": shared_url}, workers=2)
    srv.start()
    load = Load(srv.base, members=20, orders_each=6)
    fresh = aiohttp.TCPConnector(force_close=True)  # new connections spread over the workers
    try:
        async with aiohttp.ClientSession(connector=fresh,
                                         timeout=aiohttp.ClientTimeout(total=20)) as http:
            pids: set[int] = set()
            for _ in range(200):
                async with http.get(srv.base + "/healthz") as r:
                    pids.add((await r.json())["pid"])
                if len(pids) == 2:
                    break
            assert len(pids) == 2, pids
            await load.follow_all(http)
            burst = asyncio.ensure_future(load.burst(http))
            for _ in range(2000):
                if len(load.acked_orders) + len(load.acked_checkins) >= 45 or burst.done():
                    break
                await asyncio.sleep(0.005)
            assert not burst.done(), "the kill came too late"
            os.kill(min(pids), signal.SIGKILL)
            await burst
            acked_c, acked_o = set(load.acked_checkins), set(load.acked_orders)
            checkins, orders = await ledger_counts(shared_url)
            assert all(checkins[o] == 1 for o in acked_c) and all(orders[o] == 1 for o in acked_o)
            assert set(checkins.values()) <= {1} and set(orders.values()) <= {1}
            again = Load(srv.base, members=20, orders_each=6)  # the survivor takes it all
            await again.burst(http, msg_base=7_000_000)
        assert len(again.acked_orders) == 20 * 6 and len(again.acked_checkins) == 20
        checkins, orders = await ledger_counts(shared_url)
        assert set(checkins.values()) == {1} and len(checkins) == 20
        assert set(orders.values()) == {1} and len(orders) == 20 * 6
    finally:
        srv.stop()
    assert "Traceback" not in srv.log_text(), srv.log_text()[-3000:]
