"""POST /api/orders and refunds against hand-computed ledgers (PRODUCT.md 2.2-2.4, 6)."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta

from .support import order_body


async def ledger(ctx, mid):
    return [(r.kind, r.points, r.amount_fen, r.ref) for r in await ctx.store.ledger(member_id=mid)]


async def by_ref(ctx, mid, ref):
    """The ledger lines one step wrote under ``ref`` (their order within a step is free)."""
    return sorted(x[:3] for x in await ledger(ctx, mid) if x[3] == ref)


async def test_an_order_credits_points_and_answers_balance_and_tier(api, ctx, register, clock):
    m = await register("o-alice")
    status, body = await api.order(**order_body("A1", m["member_code"], 12800,
                                                clock.now - timedelta(hours=1)))
    assert status == 200
    assert {k: body[k] for k in ("order_id", "paid_fen", "points_earned", "balance", "tier")} \
        == {"order_id": "A1", "paid_fen": 12800, "points_earned": 128, "balance": 128,
            "tier": "normal"}
    assert "body_hash" not in body
    assert await ledger(ctx, m["member_id"]) == [
        ("join", 0, 0, "register:o-alice"),
        ("coupon_issue", 0, 0, f"coupon:{m['member_id']}:welcome:join"),
        ("order", 0, 12800, "order:A1"),
        ("credit", 128, 0, "order:A1"),
    ]


async def test_the_member_may_be_named_by_openid_unionid_or_phone(api, ctx, register, clock):
    m = await register("o-bob", unionid="u-bob")
    await ctx.store.claim("phone", "13800138000", m["member_id"])
    paid = clock.now.isoformat()
    for i, ident in enumerate(({"openid": "o-bob"}, {"unionid": "u-bob"},
                               {"phone": "13800138000"}, {"member_code": m["member_code"]})):
        status, body = await api.order(order_id=f"B{i}", amount_fen=1000, paid_at=paid,
                                       store_id="S1", **ident)
        assert status == 200, body
        assert body["member_code"] == m["member_code"]
    assert body["balance"] == 40


async def test_the_same_order_sent_three_times_at_once_credits_once(api, ctx, register, clock):
    m = await register("o-carol")
    b = order_body("C1", m["member_code"], 50000, clock.now)
    answers = await asyncio.gather(*(api.order(**b) for _ in range(3)))
    assert [s for s, _ in answers] == [200, 200, 200]
    assert answers[0][1] == answers[1][1] == answers[2][1]
    rows = await ctx.store.ledger(member_id=m["member_id"], kinds=["credit", "order"])
    assert [(r.kind, r.points, r.amount_fen) for r in rows] == [("order", 0, 50000),
                                                                 ("credit", 500, 0)]
    member = await ctx.members.get(m["member_id"])
    assert member.lifetime_spend == 50000


async def test_a_resend_with_reordered_keys_and_another_offset_is_the_same_order(
        api, register, clock):
    m = await register("o-dan")
    first = order_body("D1", m["member_code"], 9900, clock.now)
    assert (await api.order(**first))[0] == 200
    again = {k: first[k] for k in reversed(list(first))}
    again["paid_at"] = clock.now.astimezone(UTC).isoformat()
    status, body = await api.order(**again)
    assert (status, body["points_earned"], body["balance"]) == (200, 99, 99)


async def test_coupon_and_points_plus_cash_in_one_step(api, ctx, register, clock):
    m = await register("o-erin")
    code = m["coupon"]["code"]
    await api.order(**order_body("E1", m["member_code"], 60000, clock.now))  # +600
    status, body = await api.order(**order_body("E2", m["member_code"], 20000, clock.now,
                                                coupon_code=code.lower(), points_used=500))
    assert status == 200, body
    # 20000 - 1000 (满50减10) - 500 (500 points = ¥5) = 18500 paid -> 185 points
    assert (body["paid_fen"], body["points_earned"], body["balance"]) == (18500, 185, 285)
    assert await by_ref(ctx, m["member_id"], "order:E2") == sorted([
        ("coupon_redeem", 0, 1000),
        ("spend", -500, 0),
        ("order", 0, 18500),
        ("credit", 185, 0),
    ])
    status, body = await api.get(f"/api/members/{m['member_code']}")
    assert (status, body["balance"], body["coupons"]) == (200, 285, [])


async def test_an_order_that_reaches_a_tier_upgrades_at_once(api, ctx, register, clock):
    m = await register("o-fay")
    status, body = await api.order(**order_body("F1", m["member_code"], 300000, clock.now))
    assert (status, body["tier"], body["points_earned"]) == (200, "silver", 3000)
    rows = await ctx.store.ledger(member_id=m["member_id"], kinds=["tier_change"])
    assert [r.data for r in rows] == [{"from": "normal", "to": "silver", "up": True}]
    assert [o.kind for o in await ctx.store.outbox(kind="tier_upgrade")] == ["tier_upgrade"]


async def test_order_refund_reorder_against_a_hand_computed_ledger(api, ctx, register, clock):
    m = await register("o-gus")
    mc, mid = m["member_code"], m["member_id"]
    # A: ¥3,000 -> 3000 points (x1), silver
    assert (await api.order(**order_body("G-A", mc, 300000, clock.now)))[1]["balance"] == 3000
    # B: ¥500 with 2000 points (¥20): paid 48000 x2 (silver) = 960 -> 3000 - 2000 + 960
    s, b = await api.order(**order_body("G-B", mc, 50000, clock.now, points_used=2000))
    assert (s, b["paid_fen"], b["points_earned"], b["balance"]) == (200, 48000, 960, 1960)
    # full refund of A: 3000 points back, 1960 left in lots -> debt 1040
    s, r = await api.post("/api/orders/G-A/refund", {"refund_id": "R-A"})
    assert (s, r["refunded_fen"], r["points_reversed"], r["balance"], r["debt"]) == \
        (200, 300000, 3000, -1040, 1040)
    # net lifetime spend ¥480: the silver A's money made is undone at once (PRODUCT.md 2.2)
    assert (r["tier"], r["grace_until"]) == ("normal", None)
    # the same refund again changes nothing
    assert await api.post("/api/orders/G-A/refund", {"refund_id": "R-A"}) == (200, r)
    # C: ¥1,500 x1 (normal again) = 1500 points; the debt is paid first
    s, c = await api.order(**order_body("G-C", mc, 150000, clock.now))
    assert (c["points_earned"], c["balance"], c["tier"]) == (1500, 460, "normal")
    # partial refund of C: ¥500 back -> keeps floor(1000 x 1) = 1000, reverses 500
    s, r2 = await api.post("/api/orders/G-C/refund", {"refund_id": "R-C1", "amount_fen": 50000})
    assert (s, r2["points_reversed"], r2["balance"], r2["order_refunded_fen"]) == \
        (200, 500, -40, 50000)
    # the rest of C by default
    s, r3 = await api.post("/api/orders/G-C/refund", {"refund_id": "R-C2"})
    assert (s, r3["refunded_fen"], r3["points_reversed"], r3["balance"]) == \
        (200, 100000, 1000, -1040)
    expected = {
        "order:G-A": [("order", 0, 300000), ("credit", 3000, 0)],
        "order:G-B": [("spend", -2000, 0), ("order", 0, 48000), ("credit", 960, 0)],
        "refund:R-A": [("refund", 0, -300000), ("reverse", -3000, 0)],
        "order:G-C": [("order", 0, 150000), ("credit", 1500, 0), ("debt_paid", 0, 0)],
        "refund:R-C1": [("refund", 0, -50000), ("reverse", -500, 0)],
        "refund:R-C2": [("refund", 0, -100000), ("reverse", -1000, 0)],
    }
    for ref, rows in expected.items():
        assert await by_ref(ctx, mid, ref) == sorted(rows), ref
    assert sum(x[1] for x in await ledger(ctx, mid)) == -1040
    assert [x[0] for x in await ledger(ctx, mid) if x[0].startswith(("tier", "grace"))] == \
        ["tier_change", "tier_change"]
    member = await ctx.members.get(mid)
    assert (member.lifetime_spend, member.debt) == (48000, 1040)
    # nothing left to refund
    s, e = await api.post("/api/orders/G-C/refund", {"refund_id": "R-C3"})
    assert (s, e["code"]) == (422, "refund_amount")


async def test_a_refund_below_a_trailing_tier_drops_it_at_once_and_a_reorder_upgrades_again(
        api, ctx, register, clock):
    # money given back is not spend ageing out: no grace (PRODUCT.md 2.2)
    m = await register("o-hal")
    mc = m["member_code"]
    s, b = await api.order(**order_body("H1", mc, 1_600_000, clock.now))
    assert (b["tier"], b["points_earned"]) == ("gold", 16000)
    s, r = await api.post("/api/orders/H1/refund", {"refund_id": "HR1", "amount_fen": 200000})
    assert (s, r["tier"], r["points_reversed"], r["balance"]) == (200, "silver", 2000, 14000)
    assert r["grace_until"] is None
    s, b = await api.order(**order_body("H2", mc, 200000, clock.now))
    assert (b["tier"], b["points_earned"], b["balance"]) == ("gold", 4000, 18000)
    kinds = [(r.kind, r.data.get("to")) for r in await ctx.store.ledger(
        member_id=m["member_id"], kinds=["tier_change", "grace_start", "grace_end"])]
    assert kinds == [("tier_change", "gold"), ("tier_change", "silver"), ("tier_change", "gold")]


async def test_a_refused_order_changes_nothing_and_may_be_sent_again(api, ctx, register, clock):
    m = await register("o-ivy")
    before = await ledger(ctx, m["member_id"])
    s, e = await api.order(**order_body("I1", m["member_code"], 4000, clock.now,
                                        coupon_code=m["coupon"]["code"]))
    assert (s, e["code"]) == (422, "coupon_threshold")
    assert await ledger(ctx, m["member_id"]) == before
    s, b = await api.order(**order_body("I1", m["member_code"], 4000, clock.now))
    assert (s, b["points_earned"]) == (200, 40)


async def test_another_members_coupon_is_coupon_owner_on_both_endpoints(api, register, clock):
    alice, bob = await register("o-alice2"), await register("o-bob2")
    code = bob["coupon"]["code"]
    status, body = await api.order(**order_body("X1", alice["member_code"], 10000, clock.now,
                                                coupon_code=code))
    assert (status, body["code"]) == (422, "coupon_owner"), body
    status, body = await api.post("/api/coupons/redeem", {
        "code": code, "order_id": "X2", "amount_fen": 10000,
        "member_code": alice["member_code"]})
    assert (status, body["code"]) == (422, "coupon_owner"), body
