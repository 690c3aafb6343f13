"""`memberbot serve --workers N`: processes sharing one port on Redis, Redis Cluster and
PostgreSQL.

Exactly once across processes (retried callbacks, check-ins, orders), one scheduler leader
whose lock moves when it is killed, and one `error:` line for what the operator must fix.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import aiohttp
import pytest

from storage import open_store
from tests.api.support import sign as api_sign
from tests.e2e.wechat_client import WeChat, event_xml, text_xml
from tests.pg import pg_database
from tests.redis_cluster import redis_cluster
from tests.test_serve import free_port

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
DATA_KEY = b"w" * 32
TOKEN = "workertoken"
SECRET = "worker-api-secret"


def env_for(store_url: str, tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMBERBOT_", "WECHAT_", "WECOM_"))}
    env.update(MEMBERBOT_STORE=store_url, MEMBERBOT_DATA_DIR=str(tmp_path / "data"),
               MEMBERBOT_DATA_KEY=base64.b64encode(DATA_KEY).decode(), WECHAT_TOKEN=TOKEN,
               MEMBERBOT_API_SECRET=SECRET, WECHAT_API_BASE="http://127.0.0.1:9",
               WECOM_API_BASE="http://127.0.0.1:9")
    return env


def one_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, p.stderr
    return errors[0]


@pytest.mark.parametrize("store, expect", [
    ("sqlite:///m.db", "needs a store that several processes share"),
    ("redis://127.0.0.1:1/0", "cannot reach Redis"),
    ("postgresql://postgres@127.0.0.1:1/x", "cannot reach PostgreSQL"),
    ("postgresql://postgres@127.0.0.1:5432/memberbot_no_such_db", "no such PostgreSQL database"),
    ("mysql://x/y", "unknown store URL scheme"),
])
def test_bad_store_with_workers_is_one_line_and_exit_1(tmp_path, store, expect):
    p = subprocess.run([sys.executable, "-m", "bot", "serve", "--workers", "2", "--port", "0"],
                       cwd=tmp_path, env=env_for(store, tmp_path), capture_output=True,
                       text=True, timeout=60)
    assert expect in one_error(p)


def _shared(kind: str) -> Iterator[str]:
    if kind == "redis-cluster":
        with redis_cluster() as url:
            yield url
    elif kind == "redis":
        async def flush() -> None:
            s = open_store(REDIS_URL, DATA_KEY)
            await s.open()
            await s.client.flushdb()
            await s.close()

        asyncio.run(flush())
        yield REDIS_URL
    else:
        with pg_database("workers") as url:
            yield url


@pytest.fixture(params=["redis", "redis-cluster", "postgresql"])
def shared_store(request) -> Iterator[str]:
    yield from _shared(request.param)


@pytest.fixture(params=["redis", "postgresql"])
def leader_store(request) -> Iterator[str]:
    yield from _shared(request.param)


class Server:
    def __init__(self, store_url: str, tmp_path, *, scheduler: bool) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "bot", "serve", "--workers", "2", "--port", str(self.port)]
        self.p = subprocess.Popen(args + ([] if scheduler else ["--no-scheduler"]),
                                  cwd=tmp_path, env=env_for(store_url, tmp_path),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.base = f"http://127.0.0.1:{self.port}"

    async def health(self, session: aiohttp.ClientSession) -> dict:
        async with session.get(self.base + "/healthz") as r:
            return await r.json()

    async def pids(self, session: aiohttp.ClientSession, want: int = 2) -> set[int]:
        """The worker pids that answer; waits until ``want`` of them do."""
        seen: set[int] = set()
        for _ in range(300):
            try:
                seen.add((await self.health(session))["pid"])
            except aiohttp.ClientError:
                assert self.p.poll() is None, self.p.stderr.read()
                await asyncio.sleep(0.1)
            if len(seen) >= want:
                break
        return seen

    def stop(self) -> str:
        self.p.terminate()
        _, err = self.p.communicate(timeout=30)
        return err


def fresh_connections() -> aiohttp.ClientSession:
    # a new connection per request: the kernel spreads them over the workers
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def test_two_processes_apply_each_event_once(shared_store, tmp_path):
    server = Server(shared_store, tmp_path, scheduler=False)
    members = [f"o-w{i}" for i in range(12)]
    try:
        async with fresh_connections() as http:
            assert len(await server.pids(http)) == 2
            wx = WeChat(http, TOKEN, base=server.base)
            t0 = int(time.time())
            # every callback is posted three times at once (WeChat's retries), spread over both
            follows = [wx.post(event_xml(o, "subscribe", create_time=t0), o)
                       for o in members for _ in range(3)]
            assert all(r.status == 200 for r in await asyncio.gather(*follows))
            checkins = [wx.post(text_xml(o, "签到", msg_id=10**15 + i), o)
                        for i, o in enumerate(members) for _ in range(3)]
            replies = await asyncio.gather(*checkins)
            assert all(r.status == 200 for r in replies)

            s = open_store(shared_store, DATA_KEY)
            await s.open()
            try:
                codes = {o: (await s.get(await s.lookup("openid", o))).member_code
                         for o in members}

                paid_at = datetime.now().astimezone().isoformat()  # one body for the resends

                async def order(o: str) -> int:
                    body = json.dumps({"order_id": f"ord-{o}", "member_code": codes[o],
                                       "amount_fen": 10_000, "store_id": "SH-1",
                                       "paid_at": paid_at})
                    ts = str(int(time.time()))
                    h = {"X-Memberbot-Timestamp": ts, "Content-Type": "application/json",
                         "X-Memberbot-Signature": api_sign(SECRET, ts, "POST", "/api/orders",
                                                           body.encode())}
                    async with http.post(server.base + "/api/orders", data=body,
                                         headers=h) as r:
                        return r.status

                statuses = await asyncio.gather(*(order(o) for o in members for _ in range(3)))
                assert set(statuses) <= {200, 201}, statuses
                assert await s.count_members() == len(members)
                for o in members:
                    mid = await s.lookup("openid", o)
                    m = await s.get(mid)
                    rows = await s.ledger(member_id=mid)
                    assert m.checkin_total == 1
                    assert sum(1 for r in rows if r.kind == "checkin") == 1
                    assert sum(r.points for r in rows if r.ref.startswith("checkin:")) == 5
                    assert list(m.orders) == [f"ord-{o}"]
                    assert sum(1 for r in rows if r.kind == "order") == 1
                    assert len([c for c in m.coupons if c.template == "welcome"]) <= 1
            finally:
                await s.close()
    finally:
        err = server.stop()
    assert "Traceback" not in err, err


async def test_scheduler_lead_moves_when_the_leader_is_killed(leader_store, tmp_path):
    server = Server(leader_store, tmp_path, scheduler=True)
    try:
        async with fresh_connections() as http:
            pids = await server.pids(http)
            assert len(pids) == 2
            leader = None
            for _ in range(100):
                leader = (await server.health(http))["scheduler_leader"]
                if leader:
                    break
                await asyncio.sleep(0.1)
            assert leader and leader["pid"] in pids
            os.kill(leader["pid"], signal.SIGKILL)
            killed_at = time.monotonic()
            moved = None
            while time.monotonic() - killed_at < 35:  # the lock's 20 s + a 5 s heartbeat
                h = await server.health(http)
                assert h["pid"] != leader["pid"]  # the dead worker no longer takes connections
                # the lead moves to the other worker or to the one started in the dead one's
                # place
                if h["scheduler_leader"] and h["scheduler_leader"]["pid"] != leader["pid"]:
                    moved = time.monotonic() - killed_at
                    break
                await asyncio.sleep(0.5)
            assert moved is not None, "the scheduler lead did not move to the other worker"
    finally:
        err = server.stop()
    assert "Traceback" not in err, err


async def test_a_worker_that_dies_is_restarted(tmp_path):
    async def flush() -> None:
        s = open_store(REDIS_URL, DATA_KEY)
        await s.open()
        await s.client.flushdb()
        await s.close()

    await flush()
    server = Server(REDIS_URL, tmp_path, scheduler=False)
    try:
        async with fresh_connections() as http:
            pids = await server.pids(http)
            assert len(pids) == 2
            victim = min(pids)
            os.kill(victim, signal.SIGKILL)
            seen: set[int] = set()
            for _ in range(600):  # until the new worker answers (generous: a loaded machine)
                try:
                    seen.add((await server.health(http))["pid"])
                except aiohttp.ClientError:
                    pass
                if seen - pids:
                    break
                await asyncio.sleep(0.1)
            assert seen - pids, "no worker was started in the dead one's place"
            assert victim not in seen - {victim} and len(seen - pids) == 1
    finally:
        err = server.stop()
    assert f"worker {victim} exited (killed by SIGKILL)" in err and "restarting it" in err
    assert "Traceback" not in err, err


def test_restart_delay_grows_while_a_worker_keeps_dying_soon_after_its_start():
    from bot.workers import MAX_DELAY, restart_delay

    assert [restart_delay(n) for n in range(7)] == [0, 1, 2, 4, 8, 16, 30] == [
        0, 1, 2, 4, 8, 16, MAX_DELAY]
    assert restart_delay(100) == MAX_DELAY


CRASHING = """
import os, sys, time
from bot import workers
from bot.operator import load_settings

def crash(port):
    workers.ready()  # it served, then dies at once, every time
    time.sleep(0.05)
    os._exit(3)

workers.serve_workers(load_settings(), "127.0.0.1", 0, 1, crash)
"""


def test_a_crash_loop_backs_off_instead_of_spinning(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", CRASHING], cwd=os.getcwd(),
                         env={**env_for(REDIS_URL, tmp_path), "PYTHONPATH": os.getcwd()},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = p.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "restarting it in 4 s" in line:
                break
    finally:
        p.terminate()
        p.communicate(timeout=30)
    exits = [x for x in lines if "exited (exit code 3)" in x]
    assert [x.rsplit("restarting it ", 1)[1].strip() for x in exits] == [
        "in 1 s", "in 2 s", "in 4 s"], lines
