"""schemathesis against the live ``/api/openapi.json`` of `memberbot serve`, every request
signed as a store system signs it: every endpoint, ``FUZZ_API`` cases each (550: 2,750 in all
today), every tenth also sent unsigned and with a forged signature (401). No 5xx, no
traceback in a reply or the server's log, replies as documented, and a refused request (4xx)
changes nothing in the store."""

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
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from bot.schema import openapi
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


# every operation of the document /api/openapi.json serves (checked against the live one)
OPERATIONS = sorted(f"{method.upper()} {path}" for path, ops in openapi()["paths"].items()
                    for method in ops)


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_api_operation_fuzzed_with_signed_requests(label, api_schema, server, session,
                                                         ledger):
    ops = {op.ok().label: op.ok() for op in api_schema.get_all_operations()}
    assert set(ops) == set(OPERATIONS)

    @settings(max_examples=CASES, deadline=None, database=None, derandomize=not RANDOM,
              suppress_health_check=list(HealthCheck))
    @given(case=ops[label].as_strategy())
    def fuzz(case):
        before = ledger.state()
        req = signed(case, server.base)
        if SEEN["cases"] % 10 == 0:  # the same request unsigned, or signed with another secret
            bare = req.copy()
            del bare.headers["X-Memberbot-Signature"]
            forged = req.copy()
            forged.headers["X-Memberbot-Signature"] = "0" * 64
            for r in (session.send(bare, timeout=10), session.send(forged, timeout=10)):
                assert r.status_code == 401, (case.method, case.formatted_path, r.text[:200])
            assert ledger.state() == before
        resp = session.send(req, timeout=10)
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
        # ignored_auth is left out: it takes the signature this test computed for schemathesis'
        # own, so a well-signed request that succeeds looks like "auth ignored"; the unsigned
        # and forged copies above check the signature instead
        case.validate_response(resp, excluded_checks=[positive_data_acceptance, ignored_auth])

    fuzz()


def test_the_api_fuzz_covered_every_operation_and_enough_cases(server, api_schema):
    assert SEEN["operations"] == set(OPERATIONS), SEEN
    assert SEEN["cases"] >= len(OPERATIONS) * CASES * 0.9, SEEN
    log = server.log_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
