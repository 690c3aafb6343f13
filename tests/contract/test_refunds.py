"""Refunds through the use cases on every backend (issue 9 defects 1, 2, 7): points paid with
and the coupon come back, the upgrade the money made is undone, late refunds turn spent points
into debt. The aggregate, its ledger and its indexes are committed together."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.members import Members
from bot.rules import load_rules
from bot.rules.points import balance

RULES = load_rules()
TZ = RULES.tz
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=TZ)


async def _member(members: Members, openid: str, when: datetime = NOW) -> str:
    return (await members.register(openid, when))["member_id"]


async def _ledger_points(store, mid: str) -> int:
    return sum(r.points for r in await store.ledger(member_id=mid))


async def test_a_full_refund_gives_back_points_paid_with_and_the_coupon(store):
    members = Members(store, RULES)
    mid = await _member(members, "o-refund")
    code = (await store.get(mid)).coupons[0].code  # 新人券 满50减10, 7 days
    await members.adjust_points(mid, 600, "seed", "staff1", NOW, key="seed-1")
    res = await members.record_order(mid, "P1", 10_000, NOW, NOW, coupon_code=code,
                                     points_used=600)
    assert (res["paid_fen"], res["balance"]) == (8400, 84)
    later = NOW + timedelta(days=1)
    stock = await store.stock("welcome")
    out = await members.refund("P1", "R1", None, later)
    assert out["balance"] == 600
    assert await store.stock("welcome") == stock  # the coupon never left the member
    m = await store.get(mid)
    assert balance(m, later.date()) == 600 == await _ledger_points(store, mid)
    assert [(c.code, c.status) for c in m.coupons] == [(code, "issued")]
    assert [r.kind for r in await store.ledger(member_id=mid, kinds=["restore",
                                                                     "coupon_return"])] == [
        "restore", "coupon_return"]
    lines = (await members.statement(mid, later))["entries"]
    assert {"day": later.date().isoformat(), "reason": "退款退回抵现积分",
            "points": 600} in lines
    # the returned coupon is usable again, and the refund replayed changes nothing
    assert await members.refund("P1", "R1", None, later) == out
    await members.record_order(mid, "P2", 5000, later, later, coupon_code=code)
    assert (await store.get(mid)).coupons[0].order_id == "P2"


async def test_refunding_the_qualifying_order_undoes_silver_and_its_multiplier(store):
    members = Members(store, RULES)
    mid = await _member(members, "o-silver")
    await members.record_order(mid, "S1", 300_000, NOW, NOW)
    assert (await store.get(mid)).tier == "silver"
    assert await store.tagged("tier", "silver") == [mid]
    res = await members.refund("S1", "RS1", None, NOW + timedelta(hours=1))
    assert (res["tier"], res["grace_until"]) == ("normal", None)
    assert await store.tagged("tier", "silver") == []
    later = NOW + timedelta(days=1)
    again = await members.record_order(mid, "S2", 10_000, later, later)
    assert again["points_earned"] == 100  # multiplier 1: the corrected tier
    downs = await store.ledger(member_id=mid, kinds=["tier_change"])
    assert [(r.data["to"], r.data["up"]) for r in downs] == [("silver", True),
                                                             ("normal", False)]


async def test_a_refund_13_months_later_makes_the_spent_points_debt(store):
    members = Members(store, RULES)
    bought = NOW - timedelta(days=400)
    mid = await _member(members, "o-late", bought)
    await members.record_order(mid, "L1", 100_000, bought, bought)  # 1000 points
    spent_at = bought + timedelta(days=30)
    await members.record_order(mid, "L2", 100_000, spent_at, spent_at, points_used=800)
    # L2 earned 992 points, which expired too; 200 of L1's expired unspent
    res = await members.refund("L1", "RL1", None, NOW)
    assert res["points_reversed"] == 800
    assert (res["balance"], res["debt"]) == (-800, 800)
    m = await store.get(mid)
    assert m.orders["L1"].points_expired == 200
    assert await _ledger_points(store, mid) == -800
