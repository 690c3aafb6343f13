"""GET /api/changes: member, points, tier, coupon and order changes in commit order, by
cursor, signed like every store-API call."""

from __future__ import annotations

from datetime import datetime

from .support import order_body


async def all_events(api, limit: int = 3) -> list[dict]:
    out, cursor = [], ""
    for _ in range(200):
        s, page = await api.get(f"/api/changes?cursor={cursor}&limit={limit}")
        assert s == 200, page
        out += page["events"]
        assert len(page["events"]) <= limit
        if not page["events"] and not page["more"]:
            return out
        cursor = page["cursor"]
    raise AssertionError("the feed never ended")


async def test_the_feed_pages_through_every_change_once_in_order(api, register, clock):
    m = await register("o-feed")
    code = m["member_code"]
    await api.order(**order_body("F1", code, 1_600_000, clock.now))  # +16000 points, gold
    await api.post("/api/orders/F1/refund", {"refund_id": "FR1", "amount_fen": 100_000})
    s, _ = await api.post("/api/coupons/redeem", {"code": m["coupon"]["code"],
                                                 "order_id": "F2", "amount_fen": 50_000})
    events = await all_events(api)
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)) and ids == sorted(ids, key=lambda i: int(i[4:]))
    types = [e["type"] for e in events]
    assert types[0] == "member.created" and types.count("order.recorded") == 1
    for t in ("coupon.issued", "points.changed", "tier.changed", "order.refunded",
              "coupon.redeemed"):
        assert t in types, t
    assert {e["member_code"] for e in events} == {code}
    order = next(e for e in events if e["type"] == "order.recorded")
    assert order["data"]["order_id"] == "F1" and order["data"]["paid_fen"] == 1_600_000
    assert datetime.fromisoformat(order["data"]["paid_at"]).utcoffset() is not None
    refund = next(e for e in events if e["type"] == "order.refunded")
    assert refund["data"] == {"order_id": "F1", "refund_id": "FR1", "refunded_fen": 100_000}
    tier = next(e for e in events if e["type"] == "tier.changed")
    assert tier["data"]["to"] == "gold"
    # the end of the feed: the cursor stays, nothing more until something changes
    s, page = await api.get(f"/api/changes?cursor={ids[-1][4:]}")
    assert (s, page["events"], page["more"]) == (200, [], False)
    await api.order(**order_body("F3", code, 10_000, clock.now))
    s, page = await api.get(f"/api/changes?cursor={page['cursor']}")
    assert [e["type"] for e in page["events"]] == ["order.recorded", "points.changed"]
    assert "\\u" not in api.last_text


async def test_the_feed_is_signed_and_checks_its_parameters(api, client):
    assert (await client.get("/api/changes")).status == 401
    s, b = await api.get("/api/changes?cursor=abc")
    assert (s, b["field"]) == (400, "cursor")
    s, b = await api.get("/api/changes?limit=0")
    assert (s, b["field"]) == (400, "limit")
    s, b = await api.get("/api/changes?limit=5000")
    assert (s, b["field"]) == (400, "limit")
