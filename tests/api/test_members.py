"""GET /api/members/{code}: tier, balance, valid coupons, RFM segment and operator tags."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import pytest

from bot.members import Members
from bot.rules.models import Refusal
from bot.schema import order_hash
from storage import StoreError, open_store
from tests.conftest import REDIS_URL

from .support import order_body


async def test_member_card_shows_segment_tags_and_no_personal_data(api, ctx, register, clock):
    m = await register("o-card")
    await ctx.store.claim("phone", "13700137000", m["member_id"])
    s, card = await api.get(f"/api/members/{m['member_code']}")
    assert (s, card["tier"], card["balance"], card["segment"], card["tags"]) == \
        (200, "normal", 0, None, [])
    assert [c["code"] for c in card["coupons"]] == [m["coupon"]["code"]]
    await api.order(**order_body("M1", m["member_code"], 12800, clock.now))
    res = await ctx.members.tag(m["member_id"], clock.now, add=("高潜", " VIP  客户 "), by="ops")
    assert res == {"tags": ["高潜", "VIP 客户"]}
    s, card = await api.get(f"/api/members/{m['member_code']}")
    # bought within 90 days, 1 order (< 2), ¥128 (< ¥1,000): 一般发展
    assert (card["segment"], card["tags"], card["balance"]) == ("一般发展客户",
                                                                ["高潜", "VIP 客户"], 128)
    text = str(card)
    assert "13700137000" not in text and m["member_id"] not in text


async def test_tags_are_indexed_removed_and_audited(ctx, register, clock):
    a, b = await register("o-t1"), await register("o-t2")
    await ctx.members.tag(a["member_id"], clock.now, add=("vip",))
    await ctx.members.tag(b["member_id"], clock.now, add=("vip", "flagship"))
    assert sorted(await ctx.store.tagged("tags", "vip")) == sorted([a["member_id"],
                                                                    b["member_id"]])
    res = await ctx.members.tag(b["member_id"], clock.now, remove=("vip",), add=("flagship",))
    assert res == {"tags": ["flagship"]}
    assert await ctx.store.tagged("tags", "vip") == [a["member_id"]]
    assert await ctx.store.tag_counts("tags") == {"vip": 1, "flagship": 1}
    rows = await ctx.store.ledger(member_id=b["member_id"], kinds=["tag"])
    assert [r.data for r in rows] == [{"add": ["vip", "flagship"], "remove": [], "by": ""},
                                      {"add": [], "remove": ["vip"], "by": ""}]
    for bad in ("", "x" * 21, "a,b"):
        with pytest.raises(Refusal) as e:
            await ctx.members.tag(a["member_id"], clock.now, add=(bad,))
        assert e.value.code == "tag_invalid"


async def test_three_concurrent_sends_credit_once_on_redis_too(rules, now):
    store = open_store(REDIS_URL, b"k" * 32)
    try:
        await store.open()
    except StoreError as e:
        pytest.fail(f"this test needs a Redis server at {REDIS_URL} (set REDIS_URL): {e}",
                    pytrace=False)
    members = Members(store, rules)
    run = uuid.uuid4().hex[:12]  # no flush: other suites may share this database
    try:
        m = await members.register(f"o-redis-{run}", now)
        order = {"order_id": f"RD-{run}", "amount_fen": 50000, "paid_at": now,
                 "store_id": "SH-001"}
        results = await asyncio.gather(*(members.record_order(
            m["member_id"], order["order_id"], 50000, now, now, store_id="SH-001",
            body_hash=order_hash(order)) for _ in range(3)))
        assert {r["points_earned"] for r in results} == {500}
        rows = await store.ledger(member_id=m["member_id"], kinds=["credit"])
        assert [r.points for r in rows] == [500]
    finally:
        await store.close()


async def test_api_json_keeps_chinese_and_says_every_time_in_iso_8601(api, register):
    m = await register("o-iso")
    s, card = await api.get(f"/api/members/{m['member_code']}")
    assert s == 200 and card["tier_name"] in api.last_text  # 普通会员 as itself
    assert "\\u" not in api.last_text
    until = card["coupons"][0]["valid_until"]
    assert datetime.fromisoformat(until).tzinfo is not None and until.endswith("+08:00")
    s, err = await api.get("/api/members/000000000000")
    assert s == 404 and "未找到会员" in api.last_text


async def test_openapi_documents_every_time_field_as_iso_8601(api):
    resp = await api.client.get("/api/openapi.json")
    doc = await resp.json()
    assert "ISO 8601" in doc["info"]["description"]

    def times(schema, path=""):
        for name, prop in (schema.get("properties") or {}).items():
            if name.endswith(("_at", "_until", "_on")):
                yield f"{path}{name}", prop
            if isinstance(prop, dict):
                yield from times(prop.get("items") or prop, f"{path}{name}.")

    found = dict(kv for s in doc["components"]["schemas"].values() for kv in times(s))
    assert {"paid_at", "grace_until", "expiring_on", "coupons.valid_until"} <= set(found)
    for name, prop in found.items():
        kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        assert "integer" not in kinds and prop.get("format") in ("date-time", "date"), name
