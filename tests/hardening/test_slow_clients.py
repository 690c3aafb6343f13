"""`memberbot serve` against slow and vanishing clients, over a real socket (issue 15, items 1
and 7): header and body deadlines, a cap on bodies being received, a client that goes away is
one quiet line and no 500, malformed HTTP logs no traceback and names no software."""

from __future__ import annotations

import re
import socket
import time

import pytest

from tests.serving import Served

DEADLINE = 2  # MEMBERBOT_READ_TIMEOUT for this server
CAP = 3  # MEMBERBOT_MAX_PENDING_BODIES
PATHS = ("/api/orders", "/admin/login", "/wechat")


class Server(Served):
    def connect(self, timeout: float = 15) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def get(self, path: str, timeout: float = 5) -> str:  # type: ignore[override]
        return super().get(path, timeout)[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve"), {
        "MEMBERBOT_READ_TIMEOUT": str(DEADLINE), "MEMBERBOT_MAX_PENDING_BODIES": str(CAP),
        "MEMBERBOT_ADMIN_PASSWORD": "pw"})
    try:
        yield srv.start()
    finally:
        srv.stop()


def recv_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def partial_body(path: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
            f"Content-Length: 100000\r\n\r\n").encode() + b"<xml>" * 10


def test_slow_headers_are_cut_off_at_the_read_deadline(server):
    with server.connect() as s:
        s.sendall(b"POST /api/orders HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        t0 = time.monotonic()
        assert recv_all(s) == b""  # closed by the server, not by our 15 s timeout
        assert time.monotonic() - t0 < 12


@pytest.mark.parametrize("path", PATHS)
def test_a_slow_body_gets_408_at_the_read_deadline(server, path):
    with server.connect() as s:
        s.sendall(partial_body(path))
        reply = recv_all(s).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 408"), reply
    assert "did not arrive within" in reply


def test_bodies_being_received_are_capped(server):
    slow = [server.connect() for _ in range(CAP)]
    try:
        for s in slow:
            s.sendall(partial_body("/wechat"))
        time.sleep(0.3)  # they are being received now
        with server.connect() as s:
            s.sendall(partial_body("/api/orders"))
            reply = recv_all(s).decode(errors="replace")
        assert reply.startswith("HTTP/1.1 503"), reply
    finally:
        for s in slow:
            s.close()


def test_a_client_going_away_is_one_quiet_line_not_a_500(server):
    for path in PATHS:
        with server.connect() as s:
            s.sendall(partial_body(path))
            time.sleep(0.2)
    time.sleep(0.5)
    metrics = server.get("/metrics")
    assert 'status="500"' not in metrics
    assert 'status="499"' in metrics
    log = server.log_text()
    assert log.count("went away") >= len(PATHS)
    assert "Traceback" not in log and "ERROR" not in log


def test_an_over_long_request_line_logs_no_traceback_and_names_no_software(server):
    with server.connect() as s:
        s.sendall(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = recv_all(s).decode(errors="replace")
    assert re.match(r"HTTP/1\.[01] 4\d\d ", reply), reply[:200]
    head = reply.split("\r\n\r\n")[0]
    assert "aiohttp" not in head and "Python" not in head, head
    with server.connect() as s:
        s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        recv_all(s)
    time.sleep(0.3)
    log = server.log_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
