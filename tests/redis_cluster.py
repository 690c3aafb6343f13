"""A real Redis Cluster for tests: three masters from ``redis-server`` on free loopback ports
(``--cluster-enabled yes``, joined by ``redis-cli --cluster create``), stopped after."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(n: int) -> list[int]:
    """Ports whose cluster bus port (+10000) is free too; ``CLUSTER_PORTS=7100-7199`` limits
    them to a range."""
    lo, _, hi = os.environ.get("CLUSTER_PORTS", "").partition("-")
    candidates: list[int] = []
    if lo and hi:
        candidates = list(range(int(lo), int(hi) + 1))
    else:
        for _ in range(200):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port < 55000:
                candidates.append(port)
    out = [p for p in candidates if _free(p) and _free(p + 10000)]
    if len(out) < n:
        pytest.fail("no free ports for a Redis Cluster", pytrace=False)
    return out[:n]


@contextlib.contextmanager
def redis_cluster(masters: int = 3, *, create: bool = True) -> Iterator[str]:
    """``with redis_cluster() as url``: ``redis+cluster://127.0.0.1:p1,…`` of a fresh cluster."""
    server = shutil.which("redis-server")
    cli = shutil.which("redis-cli")
    if not server or not cli:
        pytest.fail("the Redis Cluster tests need Debian's redis-server and redis-cli",
                    pytrace=False)
    ports = free_cluster_ports(masters)
    work = tempfile.mkdtemp(prefix="memberbot-cluster-")
    procs = []
    try:
        for port in ports:
            procs.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"{work}/nodes-{port}.conf", "--dir", work,
                 "--save", "", "--appendonly", "no", "--protected-mode", "no",
                 "--logfile", f"{work}/{port}.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            for _ in range(100):
                if subprocess.run([cli, "-p", str(port), "ping"], capture_output=True,
                                  text=True).stdout.strip() == "PONG":
                    break
                time.sleep(0.05)
        if create:
            subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                            "--cluster-replicas", "0", "--cluster-yes"], check=True,
                           capture_output=True, timeout=60)
            for _ in range(200):
                info = subprocess.run([cli, "-p", str(ports[0]), "cluster", "info"],
                                      capture_output=True, text=True).stdout
                if "cluster_state:ok" in info:
                    break
                time.sleep(0.05)
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
