"""``memberbot serve --workers N``: N processes accept on one port (SO_REUSEPORT).

The parent checks what every worker would otherwise each find wrong (the store URL, the
database, the rules, the port) once, so an operator reads one ``error:`` line and the command
exits 1; then it starts the workers and watches them. A worker that fails to start stops the
others (exit 1); a worker killed later leaves the others serving (the scheduler lock moves to
one of them). Exactly once across processes is the store's: every change is one idempotent
update under a version check, and SQLite, with its one writer, is refused here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable
from multiprocessing import Process
from multiprocessing.connection import wait
from urllib.parse import urlparse

import click

from storage import StoreError, open_store

from .operator import fail
from .rules.config import RulesError
from .settings import Settings, SettingsError, rules_for


async def _check_store(settings: Settings) -> None:
    store = open_store(settings.store_url, settings.data_key)
    await store.open()  # creates or migrates the schema once, before the workers race to
    await store.close()


def _reserve(host: str, port: int) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket: a busy port is found here, and ``--port 0``
    becomes one port that every worker shares."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        s.close()
        fail(f"cannot listen on {host}:{port} ({e.strerror}): choose another --port")
    return s


def serve_workers(settings: Settings, host: str, port: int, workers: int,
                  run_one: Callable[[int], None]) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        fail("--workers needs SO_REUSEPORT, which this system lacks")
    if urlparse(settings.store_url).scheme == "sqlite":
        fail(f"--workers {workers} needs a store that several processes share: SQLite has one "
              "writer; set MEMBERBOT_STORE to postgresql://… or redis://…, or run one process")
    try:
        rules_for(settings)
        asyncio.run(_check_store(settings))
    except (StoreError, RulesError, SettingsError) as e:
        fail(str(e))
    reserved = _reserve(host, port)
    port = reserved.getsockname()[1]
    procs = [Process(target=run_one, args=(port,), daemon=False) for _ in range(workers)]
    for p in procs:
        p.start()
    click.echo(f"memberbot: {workers} workers on http://{host}:{port} (pids "
               f"{', '.join(str(p.pid) for p in procs)}; parent {os.getpid()})", err=True)

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive():
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    rc = 0
    alive = {p.sentinel: p for p in procs}
    try:
        while alive:
            for sentinel in wait(list(alive)):
                p = alive.pop(sentinel)
                if stopping:
                    continue
                if p.exitcode and p.exitcode > 0:  # it reported its own error line: stop all
                    rc = 1
                    stop()
                elif alive:
                    click.echo(f"memberbot: worker {p.pid} exited ({p.exitcode}); "
                               f"{len(alive)} left", err=True)
    except KeyboardInterrupt:
        stop()
        for p in procs:
            p.join(10)
    finally:
        with contextlib.suppress(OSError):
            reserved.close()
    sys.exit(rc)
