"""``memberbot serve --workers N``: N processes accept on one port (SO_REUSEPORT).

The parent checks what every worker would otherwise each find wrong (the store URL, the
database, the rules, the port) once, so an operator reads one ``error:`` line and the command
exits 1; then it starts the workers and watches them. A worker that fails to start stops the
others (exit 1); a worker that dies once it served is restarted with a log line (its scheduler
lock, if it led, moves to another worker meanwhile), after a growing pause when it keeps dying
soon after its start, so a crash loop never spins. Exactly once across processes is the
store's: every change is one idempotent update under a version check, and SQLite, with its
one writer, is refused here.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing import Process
from multiprocessing.connection import wait
from typing import Any
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
    pool = _Workers(lambda: run_one(port), workers)
    pool.start_all()
    click.echo(f"memberbot: {workers} workers on http://{host}:{port} (pids "
               f"{', '.join(str(p.pid) for p in pool.procs.values())}; parent {os.getpid()})",
               err=True)
    signal.signal(signal.SIGTERM, lambda *_: pool.stop())
    try:
        rc = pool.watch()
    except KeyboardInterrupt:
        pool.stop()
        rc = 0
    finally:
        pool.join()
        with contextlib.suppress(OSError):
            reserved.close()
    sys.exit(rc)


# -- watching the workers -------------------------------------------------------------------
MIN_UPTIME = 10.0  # a worker that dies sooner than this after its start is crash-looping
MAX_DELAY = 30.0

_ready: Any = None  # in a worker: the event it sets once it serves


def ready() -> None:
    """Called by a worker once it listens: from then on its death is a crash to restart,
    not a failure to start."""
    if _ready is not None:
        _ready.set()


def _worker_main(run: Callable[[], None], event: Any) -> None:
    global _ready
    _ready = event
    run()


def restart_delay(quick_deaths: int) -> float:
    """Seconds before restarting a worker after ``quick_deaths`` deaths in a row, each within
    MIN_UPTIME of its start: at once after one that had been running a while, then 1, 2,
    4 … up to MAX_DELAY, so a worker that cannot stay up never makes the parent spin."""
    if quick_deaths <= 0:
        return 0.0
    return min(MAX_DELAY, 2.0 ** (quick_deaths - 1))


class _Workers:
    """N worker slots: each runs one process at a time, restarted when it dies."""

    def __init__(self, run: Callable[[], None], n: int) -> None:
        self.run = run
        self.n = n
        self.procs: dict[int, Process] = {}
        self.events: dict[int, Any] = {}
        self.started: dict[int, float] = {}
        self.served: set[int] = set()  # slots whose worker has served at least once
        self.quick: dict[int, int] = dict.fromkeys(range(n), 0)
        self.due: dict[int, float] = {}  # slot -> when to restart it
        self.stopping = False

    def start_all(self) -> None:
        for slot in range(self.n):
            self._start(slot)

    def _start(self, slot: int) -> None:
        event = multiprocessing.Event()
        p = Process(target=_worker_main, args=(self.run, event), daemon=False)
        p.start()
        self.procs[slot], self.events[slot] = p, event
        self.started[slot] = time.monotonic()

    def stop(self) -> None:
        self.stopping = True
        for p in self.procs.values():
            if p.is_alive():
                p.terminate()

    def join(self) -> None:
        for p in self.procs.values():
            p.join(10)

    def watch(self) -> int:
        """Until stopped: restart each worker that dies. Returns the exit code."""
        while not self.stopping:
            now = time.monotonic()
            for slot, when in sorted(self.due.items()):
                if when <= now:
                    del self.due[slot]
                    self._start(slot)
                    click.echo(f"memberbot: worker {self.procs[slot].pid} started", err=True)
            live = {p.sentinel: slot for slot, p in self.procs.items() if slot not in self.due}
            timeout = max(0.0, min(self.due.values()) - now) if self.due else None
            for sentinel in wait(list(live), timeout):
                if self.stopping:
                    break
                slot = live[sentinel]
                p = self.procs[slot]
                p.join()
                if self.events[slot].is_set():
                    self.served.add(slot)
                if slot not in self.served and p.exitcode and p.exitcode > 0:
                    # it never served and reported its own error line: stop all
                    self.stop()
                    return 1
                up = time.monotonic() - self.started[slot]
                self.quick[slot] = self.quick[slot] + 1 if up < MIN_UPTIME else 0
                delay = restart_delay(self.quick[slot])
                self.due[slot] = time.monotonic() + delay
                click.echo(f"memberbot: worker {p.pid} exited ({_how(p.exitcode)}) after "
                           f"{up:.0f} s; restarting it "
                           + (f"in {delay:.0f} s" if delay else "now"), err=True)
        return 0


def _how(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
