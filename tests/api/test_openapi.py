"""/api/openapi.json matches what the handlers accept: every documented field is accepted,
undocumented and malformed ones are refused naming the field."""

from __future__ import annotations

import re

import pytest

from bot.schema import EVENT, ORDER, REDEEM, REFUND

# A valid value for every documented field. A field added to the document without a value
# here fails test_every_documented_field_has_a_test_value, so this table cannot fall behind.
VALID = {
    "order_id": "DOC-1", "member_code": None, "openid": "o-doc", "unionid": "u-doc",
    "phone": "13900139000", "amount_fen": 12000, "paid_at": "2026-11-25T09:00:00+08:00",
    "store_id": "SH-001", "coupon_code": None, "points_used": 500, "refund_id": "RF-DOC",
    "code": None, "event_id": "EV-DOC", "task": "share", "at": "2026-11-25T09:00:00+08:00",
}
WRONG_TYPE = {"integer": "12", "string": 12}
BAD_VALUE = {"member_code": "12345", "openid": "o doc", "unionid": "u/doc", "phone": "phone",
             "amount_fen": -1, "paid_at": "25/11/2026", "store_id": "SH 001",
             "coupon_code": "SHORT", "points_used": -5, "refund_id": "RF DOC", "code": "X",
             "order_id": "DOC 1", "event_id": "EV DOC", "task": "Share!", "at": "25/11/2026"}


@pytest.fixture
async def doc(api):
    resp = await api.client.get("/api/openapi.json")  # public: it is documentation
    assert resp.status == 200
    return await resp.json()


@pytest.fixture
async def member(ctx, register, clock, api):
    m = await register("o-doc", unionid="u-doc")
    await ctx.store.claim("phone", "13900139000", m["member_id"])
    await api.order(order_id="SEED", member_code=m["member_code"], amount_fen=60000,
                    paid_at=clock.now.isoformat(), store_id="S")  # 600 points to spend
    return m


def resolve(doc, ref):
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


def operations(doc):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody")
            schema = resolve(doc, body["content"]["application/json"]["schema"]["$ref"]) \
                if body else None
            yield path, method.upper(), op, schema


def base_body(schema, values):
    body = {k: values[k] for k in schema["required"]}
    if "oneOf" in schema and not any(k in body for alt in schema["oneOf"]
                                     for k in alt["required"]):
        body["member_code"] = values["member_code"]
    return body


def concrete(path, values):
    return path.replace("{order_id}", "SEED").replace("{member_code}", values["member_code"])


async def test_the_document_lists_exactly_the_routes_served(doc, client):
    served = {(r.method, r.resource.canonical) for r in client.app.router.routes()
              if r.resource.canonical.startswith("/api/") and r.method != "HEAD"}
    documented = {(m, p) for p, m, _, _ in operations(doc)}
    assert served - {("GET", "/api/openapi.json")} == documented
    assert doc["openapi"].startswith("3.")
    assert "HMAC-SHA256" in doc["components"]["securitySchemes"]["signature"]["description"]


async def test_every_documented_field_has_a_test_value(doc):
    fields = {k for _, _, _, s in operations(doc) if s for k in s["properties"]}
    assert fields == set(VALID)


async def test_every_documented_field_is_accepted(doc, api, member):
    values = {**VALID, "member_code": member["member_code"], "code": member["coupon"]["code"],
              "coupon_code": member["coupon"]["code"]}
    for path, method, _, schema in operations(doc):
        if schema is None:
            continue
        for name in schema["properties"]:
            body = base_body(schema, values)
            if name in ("openid", "unionid", "phone"):
                body.pop("member_code", None)
            body[name] = values[name]
            if "order_id" in body and path == "/api/orders":
                body["order_id"] = f"DOC-{name}"
            if path == "/api/events":
                body["event_id"] = f"EV-{name}"
            if path == "/api/coupons/redeem":
                body["order_id"] = f"DOCR-{name}"
            s, b = await api.call(method, concrete(path, values), body)
            assert s != 400, (path, name, b)
            assert s in (200, 409, 422), (path, name, b)


async def test_undocumented_and_malformed_fields_are_refused(doc, api, member):
    values = {**VALID, "member_code": member["member_code"], "code": member["coupon"]["code"],
              "coupon_code": member["coupon"]["code"]}
    for path, method, _, schema in operations(doc):
        if schema is None:
            continue
        url = concrete(path, values)
        body = base_body(schema, values)
        s, b = await api.call(method, url, {**body, "undocumented": 1})
        assert (s, b["field"]) == (400, "undocumented"), path
        for name, prop in schema["properties"].items():
            kind = prop["type"] if isinstance(prop["type"], str) else prop["type"][0]
            for bad in (WRONG_TYPE[kind], BAD_VALUE[name]):
                s, b = await api.call(method, url, {**body, name: bad})
                assert (s, b.get("field")) == (400, name), (path, name, bad, b)
            if "pattern" in prop:
                assert not re.fullmatch(prop["pattern"], str(BAD_VALUE[name]))
        for name in schema["required"]:
            s, b = await api.call(method, url, {k: v for k, v in body.items() if k != name})
            assert (s, b["field"]) == (400, name), (path, name)
            s, b = await api.call(method, url, {**body, name: None})
            assert (s, b["field"]) == (400, name), (path, name)


async def test_optional_fields_may_be_null_as_documented(doc, api, member, clock):
    order = resolve(doc, "#/components/schemas/Order")
    assert order["properties"]["points_used"]["type"] == ["integer", "null"]
    s, b = await api.order(order_id="NULLS", member_code=member["member_code"], amount_fen=100,
                           paid_at=clock.now.isoformat(), store_id="S", points_used=None,
                           coupon_code=None)
    assert (s, b["points_earned"]) == (200, 1)


async def test_the_documented_examples_are_valid_values(ctx):
    for f in (*ORDER.fields, *REFUND.fields, *REDEEM.fields, *EVENT.fields):
        if f.example is not None:
            f.check(f.example, ctx.rules.tz)
