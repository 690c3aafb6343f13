"""`memberbot serve` as a child process on a free loopback port, for tests that need the real
server: deadlines, fuzzing over HTTP, kill -9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """One server process; its combined output goes to ``log``."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None, *,
                 port: int | None = None, scheduler: bool = False, workers: int = 1) -> None:
        self.cwd, self.port = cwd, port or free_port()
        self.log = cwd / f"serve-{self.port}.log"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("MEMBERBOT_", "WECHAT_", "WECOM_"))}
        self.env.update(MEMBERBOT_LOG="INFO", **(env or {}))
        self.scheduler = scheduler
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        return [sys.executable, "-m", "bot", "serve", "--workers", str(self.workers),
                *([] if self.scheduler else ["--no-scheduler"])]

    def start(self, wait: float = 20.0) -> Served:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen([*self.args(), "--port", str(self.port)],
                                         cwd=self.cwd, env=self.env, stdout=out, stderr=out)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=1):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"serve exited: {self.log_text()[-2000:]}") from None
                time.sleep(0.1)
        raise RuntimeError(f"serve did not answer within {wait} s: {self.log_text()[-2000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
