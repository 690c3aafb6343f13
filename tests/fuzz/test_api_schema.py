"""schemathesis against the live ``/api/openapi.json`` of `memberbot serve`, every request
signed as a store system signs it: every endpoint, ``FUZZ_API`` cases each (2,200 in all by
default). No 5xx, no traceback in a reply or the server's log, replies as documented, and a
refused request (4xx) changes nothing in the store."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.serving import Served

from .conftest import RANDOM
from .invariants import CLASS_NAME, Ledger

pytestmark = pytest.mark.fuzz

SECRET = "fuzz-api-secret"
CASES = int(os.environ.get("FUZZ_API", "550"))
SEEN = {"cases": 0, "operations": set()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):  # see conftest.fast_tmp
        cwd = Path(tempfile.mkdtemp(prefix="memberbot-api-fuzz-", dir=shm))
    else:
        cwd = tmp_path_factory.mktemp("api-fuzz")
    srv = Served(cwd, {"MEMBERBOT_API_SECRET": SECRET})
    try:
        yield srv.start()
    finally:
        srv.stop()
        if str(cwd).startswith("/dev/shm/"):
            shutil.rmtree(cwd, ignore_errors=True)


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(server.base + "/api/openapi.json")


@pytest.fixture(scope="module")
def session():
    with requests.Session() as s:
        yield s


@pytest.fixture(scope="module")
def ledger(server):
    db = Ledger(server.cwd / "data" / "memberbot.db")
    yield db
    db.close()


def signed(case, base: str) -> requests.PreparedRequest:
    """The request schemathesis made, with its exact body bytes signed."""
    kw = case.as_transport_kwargs(base_url=base)
    headers = dict(kw.get("headers") or {})
    if "json" in kw:
        body = json.dumps(kw["json"], ensure_ascii=False).encode()
        headers["Content-Type"] = "application/json"
    else:
        data = kw.get("data")
        body = data.encode() if isinstance(data, str) else (data or b"")
    req = requests.Request(kw["method"], kw["url"], params=kw.get("params"), data=body,
                           headers=headers, cookies=kw.get("cookies")).prepare()
    ts = str(int(time.time()))
    path = urlsplit(req.url).path
    msg = b"\n".join((ts.encode(), req.method.encode(), path.encode(), body))
    req.headers["X-Memberbot-Timestamp"] = ts
    req.headers["X-Memberbot-Signature"] = hmac.new(SECRET.encode(), msg,
                                                    hashlib.sha256).hexdigest()
    return req


OPERATIONS = ["POST /api/orders", "POST /api/orders/{order_id}/refund",
              "POST /api/coupons/redeem", "GET /api/members/{member_code}"]


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_api_operation_fuzzed_with_signed_requests(label, api_schema, server, session,
                                                         ledger):
    ops = {op.ok().label: op.ok() for op in api_schema.get_all_operations()}
    assert set(ops) == set(OPERATIONS)  # a new endpoint must join the list

    @settings(max_examples=CASES, deadline=None, database=None, derandomize=not RANDOM,
              suppress_health_check=list(HealthCheck))
    @given(case=ops[label].as_strategy())
    def fuzz(case):
        before = ledger.state()
        resp = session.send(signed(case, server.base), timeout=10)
        SEEN["cases"] += 1
        SEEN["operations"].add(label)
        what = (case.method, case.formatted_path, case.body, resp.status_code,
                resp.text[:300])
        assert resp.status_code < 500, what
        assert not CLASS_NAME.search(resp.text), what
        if resp.status_code >= 400:
            assert ledger.state() == before, what
        # positive_data_acceptance is left out: schema-valid bodies are refused by the
        # programme's rules (422: not enough points) and by checks a schema cannot say (400:
        # paid_at in the future; 100.0 is no amount in fen), as documented
        case.validate_response(resp, excluded_checks=[positive_data_acceptance])

    fuzz()


def test_the_api_fuzz_covered_every_operation_and_enough_cases(server, api_schema):
    assert SEEN["operations"] == set(OPERATIONS) and SEEN["cases"] >= 4 * CASES * 0.9, SEEN
    log = server.log_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
