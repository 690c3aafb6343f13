"""Every error of the store API: stable code, Chinese + English message, the right status."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from bot.web import create_app
from storage import StoreUnavailable
from tests.conftest import make_settings

from .support import Api, order_body

CJK = re.compile(r"[\u4e00-\u9fff]")


def assert_error(status, body, want_status, code, field=...):
    assert (status, body["code"]) == (want_status, code), body
    zh, sep, en = body["message"].partition(" / ")
    assert sep and CJK.search(zh) and re.search(r"[a-z]", en), body["message"]
    if field is not ...:
        assert body.get("field") == field


ENDPOINTS = [("POST", "/api/orders"), ("POST", "/api/orders/X1/refund"),
             ("POST", "/api/coupons/redeem"), ("GET", "/api/members/123456789012")]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_without_a_configured_secret_every_call_is_refused(aiohttp_client, tmp_path,
                                                                 clock, method, path):
    client = await aiohttp_client(create_app(make_settings(tmp_path, api_secret=None),
                                             clock=clock))
    for secret in ("", "test-api-secret"):  # whatever the client signs with
        status, body = await Api(client, clock, secret or "x").call(method, path, {})
        assert_error(status, body, 401, "api_disabled")


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_signature_is_checked_before_anything_else(api, method, path):
    body = b"{}" if method == "POST" else b""
    h = api.headers(method, path, body)
    s, b = await api.call(method, path, raw=body, headers={})
    assert_error(s, b, 401, "signature_missing")
    s, b = await api.call(method, path, raw=body, headers={**h, "X-Memberbot-Signature": "00"})
    assert_error(s, b, 401, "bad_signature")
    s, b = await api.call(method, path, raw=body, secret="another-secret")
    assert_error(s, b, 401, "bad_signature")
    s, b = await api.call(method, path, raw=body, headers={
        **h, "X-Memberbot-Timestamp": "soon"})
    assert_error(s, b, 401, "timestamp_invalid")


async def test_the_timestamp_window_is_300_seconds_both_ways(api, register):
    m = await register("o-t")
    path = f"/api/members/{m['member_code']}"
    for skew in (-300, 300):
        assert (await api.get(path, skew=skew))[0] == 200
    for skew in (-301, 301):
        s, b = await api.get(path, skew=skew)
        assert_error(s, b, 401, "timestamp_invalid")


async def test_the_signature_covers_method_path_and_body(api, register, clock):
    m = await register("o-s")
    body = json.dumps(order_body("S1", m["member_code"], 100, clock.now)).encode()
    h = api.headers("POST", "/api/orders", body)
    tampered = body.replace(b'"amount_fen": 100', b'"amount_fen": 900')
    for path, raw in (("/api/orders", tampered), ("/api/coupons/redeem", body)):
        resp = await api.client.post(path, data=raw, headers=h)
        assert_error(resp.status, await resp.json(), 401, "bad_signature")
    resp = await api.client.put("/api/orders", data=body, headers=h)
    assert resp.status == 405
    assert (await api.client.post("/api/orders", data=body, headers=h)).status == 200


@pytest.mark.parametrize(("raw", "field"), [
    (b"{not json", None), (b"[1, 2]", None), (b"", None),
    (b'{"order_id": "A", "member_code": "123456789012", "amount_fen": "100", '
     b'"paid_at": "2026-11-25T09:00:00+08:00", "store_id": "S"}', "amount_fen"),
    (b'{"order_id": "A", "member_code": "123456789012", "amount_fen": 1.5, '
     b'"paid_at": "2026-11-25T09:00:00+08:00", "store_id": "S"}', "amount_fen"),
    (b'{"order_id": "A", "member_code": "123456789012", "amount_fen": -1, '
     b'"paid_at": "2026-11-25T09:00:00+08:00", "store_id": "S"}', "amount_fen"),
    (b'{"order_id": "A", "member_code": "123456789012", "amount_fen": true, '
     b'"paid_at": "2026-11-25T09:00:00+08:00", "store_id": "S"}', "amount_fen"),
    (b'{"order_id": "A", "member_code": "123456789012", "amount_fen": 100, '
     b'"paid_at": "yesterday", "store_id": "S"}', "paid_at"),
    (b'{"order_id": "A", "member_code": "123456789012", "amount_fen": 100, '
     b'"paid_at": "2027-01-01T00:00:00+08:00", "store_id": "S"}', "paid_at"),
    (b'{"order_id": "A", "member_code": "123456789012", "amount_fen": 100, '
     b'"paid_at": "2026-11-25T09:00:00+08:00"}', "store_id"),
    (b'{"order_id": "A", "amount_fen": 100, '
     b'"paid_at": "2026-11-25T09:00:00+08:00", "store_id": "S"}', "member_code"),
    (b'{"order_id": "A", "member_code": "123456789012", "openid": "o", "amount_fen": 100, '
     b'"paid_at": "2026-11-25T09:00:00+08:00", "store_id": "S"}', "openid"),
    (b'{"order_id": "A", "member_code": "123456789012", "amount_fen": 100, "tip": 1, '
     b'"paid_at": "2026-11-25T09:00:00+08:00", "store_id": "S"}', "tip"),
    (b'{"order_id": "A/B", "member_code": "123456789012", "amount_fen": 100, '
     b'"paid_at": "2026-11-25T09:00:00+08:00", "store_id": "S"}', "order_id"),
])
async def test_a_malformed_order_is_400_naming_the_field(api, raw, field):
    s, b = await api.post("/api/orders", raw=raw)
    assert_error(s, b, 400, "bad_request", field)
    if field:
        assert field in b["message"]


async def test_a_body_over_64_kib_is_413_and_json(api):
    s, b = await api.post("/api/orders", raw=b'{"order_id": "' + b"x" * 70_000 + b'"}')
    assert_error(s, b, 413, "body_too_large")


async def test_malformed_path_parameters_are_400(api):
    s, b = await api.get("/api/members/12345")
    assert_error(s, b, 400, "bad_request", "member_code")
    s, b = await api.post("/api/orders/bad%20id/refund", {"refund_id": "R"})
    assert_error(s, b, 400, "bad_request", "order_id")


async def test_unknown_member_order_and_coupon_are_404(api, register, clock):
    s, b = await api.order(**order_body("N1", "999999999999", 100, clock.now))
    assert_error(s, b, 404, "member_not_found")
    s, b = await api.order(order_id="N2", openid="nobody", amount_fen=100,
                           paid_at=clock.now.isoformat(), store_id="S")
    assert_error(s, b, 404, "member_not_found")
    s, b = await api.get("/api/members/999999999999")
    assert_error(s, b, 404, "member_not_found")
    s, b = await api.post("/api/orders/N9/refund", {"refund_id": "R9"})
    assert_error(s, b, 404, "order_not_found")
    s, b = await api.post("/api/coupons/redeem", {"code": "ABCDEFGHJKMN", "order_id": "N3",
                                                  "amount_fen": 10000})
    assert_error(s, b, 404, "coupon_not_found")


async def test_conflicts_are_409(api, register, clock):
    a, b_ = await register("o-c1"), await register("o-c2")
    body = order_body("K1", a["member_code"], 1000, clock.now)
    assert (await api.order(**body))[0] == 200
    s, b = await api.order(**{**body, "amount_fen": 2000})
    assert_error(s, b, 409, "order_conflict")
    s, b = await api.order(**{**body, "member_code": b_["member_code"]})
    assert_error(s, b, 409, "order_conflict")
    assert (await api.post("/api/orders/K1/refund", {"refund_id": "KR", "amount_fen": 100}))[0] \
        == 200
    s, b = await api.post("/api/orders/K1/refund", {"refund_id": "KR", "amount_fen": 200})
    assert_error(s, b, 409, "refund_conflict")
    await api.order(**order_body("K2", b_["member_code"], 1000, clock.now))
    s, b = await api.post("/api/orders/K2/refund", {"refund_id": "KR"})
    assert_error(s, b, 409, "refund_conflict")
    code = a["coupon"]["code"]
    assert (await api.post("/api/coupons/redeem", {"code": code, "order_id": "K3",
                                                   "amount_fen": 6000}))[0] == 200
    s, b = await api.post("/api/coupons/redeem", {"code": code, "order_id": "K4",
                                                  "amount_fen": 6000})
    assert_error(s, b, 409, "coupon_used")


async def test_rule_refusals_are_422_and_change_nothing(api, ctx, register, clock):
    m = await register("o-r")
    mc, code = m["member_code"], m["coupon"]["code"]
    rows = len(await ctx.store.ledger(member_id=m["member_id"]))
    cases = [
        (order_body("R1", mc, 4000, clock.now, coupon_code=code), "coupon_threshold"),
        (order_body("R2", mc, 10000, clock.now, points_used=499), "points_below_min"),
        (order_body("R3", mc, 10000, clock.now, points_used=500), "insufficient_points"),
    ]
    for body, code_ in cases:
        s, b = await api.order(**body)
        assert_error(s, b, 422, code_)
    s, b = await api.post("/api/coupons/redeem", {"code": code, "order_id": "R4",
                                                  "amount_fen": 4999})
    assert_error(s, b, 422, "coupon_threshold")
    other = await register("o-r2")
    s, b = await api.post("/api/coupons/redeem", {"code": code, "order_id": "R5",
                                                  "amount_fen": 9000,
                                                  "member_code": other["member_code"]})
    assert_error(s, b, 422, "coupon_owner")
    assert len(await ctx.store.ledger(member_id=m["member_id"])) == rows
    clock.advance(days=8)  # the welcome coupon is valid for 7 days
    s, b = await api.order(**order_body("R6", mc, 10000, clock.now, coupon_code=code))
    assert_error(s, b, 422, "coupon_expired")


async def test_a_store_outage_is_503_and_writes_nothing(api, ctx, register, clock,
                                                        monkeypatch):
    m = await register("o-down")
    before = await ctx.store.ledger()

    async def down(*a, **kw):
        raise StoreUnavailable("disk full")

    monkeypatch.setattr(ctx.store, "update", down)
    s, b = await api.order(**order_body("D1", m["member_code"], 100,
                                        clock.now - timedelta(minutes=1)))
    assert_error(s, b, 503, "store_unavailable")
    monkeypatch.setattr(ctx.store, "lookup", down)
    s, b = await api.get(f"/api/members/{m['member_code']}")
    assert_error(s, b, 503, "store_unavailable")
    assert await ctx.store.ledger() == before


async def test_unknown_paths_and_methods_under_api_answer_json(api):
    s, b = await api.call("GET", "/api/nope")
    assert_error(s, b, 404, "not_found")
    s, b = await api.call("GET", "/api/orders")
    assert_error(s, b, 405, "method_not_allowed")


async def test_non_ascii_signature_or_timestamp_is_401_not_500(api):
    body = b"{}"
    h = api.headers("POST", "/api/orders", body)
    s, b = await api.call("POST", "/api/orders", raw=body,
                          headers={**h, "X-Memberbot-Signature": "é" * 64})
    assert_error(s, b, 401, "bad_signature")
    s, b = await api.call("POST", "/api/orders", raw=body,
                          headers={**h, "X-Memberbot-Timestamp": "²"})
    assert_error(s, b, 401, "timestamp_invalid")
