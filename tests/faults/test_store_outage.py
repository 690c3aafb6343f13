"""The store gone for 10 s under load (a Redis server of the test's own, stopped and started
again; PostgreSQL cut off by a loopback proxy): members read 系统繁忙, the API answers 503,
no traceback anywhere, and service is back by itself within 5 s of the store's return."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from urllib.parse import urlparse

import aiohttp
import pytest

from tests.pg import pg_database
from tests.serving import Served, free_port

from .load import BUSY, ENV, Load

pytestmark = pytest.mark.faults

OUTAGE = 10.0
BACK_WITHIN = 5.0


class OwnRedis:
    """A redis-server on a free port with an fsynced AOF, so a restart keeps the data."""

    def __init__(self, tmp_path) -> None:
        self.port, self.dir = free_port(), tmp_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Proxy:
    """A loopback TCP proxy to PostgreSQL that can cut every connection and refuse new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()
        await asyncio.sleep(0)  # let the aborted transports close

    async def _serve(self, reader, writer) -> None:
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, uw}

        async def pipe(r, w) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.transport.abort()

        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))


async def hit(load: Load, http: aiohttp.ClientSession, i: int, n: int) -> tuple[str, str]:
    """One check-in and one order; what each answered: ok, busy or something else."""
    before = len(load.replies)
    await load.checkin(http, i % load.members, 9_000_000 + n)
    await load.order(http, i % load.members, 1000 + n)
    (cs, ct), (os_, ot) = load.replies[before:before + 2]
    checkin = "ok" if cs == 200 and "签到" in ct else "busy" if cs == 200 and BUSY in ct \
        else f"{cs} {ct[:80]}"
    order = "ok" if os_ == 200 else "busy" if os_ == 503 and "store_unavailable" in ot \
        else f"{os_} {ot[:80]}"
    return checkin, order


@pytest.mark.parametrize("kind", ["redis", "postgresql"])
async def test_the_store_gone_for_10_s_is_busy_then_back_by_itself(kind, tmp_path):
    with contextlib.ExitStack() as stack:
        if kind == "redis":
            redis = OwnRedis(tmp_path)
            redis.start()
            stack.callback(redis.stop)
            url = redis.url
        else:
            real = urlparse(stack.enter_context(pg_database("outage_")))
            proxy = Proxy((real.hostname, real.port or 5432))
            await proxy.start()
            url = real._replace(netloc=f"{real.username}@127.0.0.1:{proxy.port}").geturl()
        srv = Served(tmp_path, {**ENV, "MEMBERBOT_STORE": url})
        await asyncio.to_thread(srv.start)  # the proxy runs on this loop meanwhile
        stack.callback(srv.stop)
        load = Load(srv.base, members=20)
        n = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            await load.follow_all(http)
            assert await hit(load, http, 0, n) == ("ok", "ok")
            if kind == "redis":
                redis.stop()
            else:
                await proxy.stop()
            down_until = time.monotonic() + OUTAGE
            seen = set()
            while time.monotonic() < down_until:  # load through the outage
                n += 1
                seen.add(await hit(load, http, n, n))
                await asyncio.sleep(0.2)
            assert seen == {("busy", "busy")}, seen
            if kind == "redis":
                redis.start()
            else:
                await proxy.start()
            back = time.monotonic()
            while True:
                n += 1
                if await hit(load, http, n, n) == ("ok", "ok"):
                    break
                assert time.monotonic() - back < BACK_WITHIN, "not back within 5 s"
                await asyncio.sleep(0.1)
        await asyncio.to_thread(srv.stop)
        if kind == "postgresql":
            await proxy.stop()
        log = srv.log_text()
        assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
        assert "store unavailable" in log or "busy" in log
