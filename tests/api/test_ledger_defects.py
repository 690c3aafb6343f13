"""Store-API regressions of issue 9: dates before orders.earliest_paid_at (defect 3) and a
coupon redeemed first through /api/coupons/redeem (defect 9)."""

from __future__ import annotations

from .support import order_body


async def test_paid_at_in_year_1_is_400_naming_the_field_and_changes_nothing(api, ctx,
                                                                            register, clock):
    m = await register("o-year1")
    before = await ctx.store.get(m["member_id"])
    status, body = await api.order(order_id="Y1", member_code=m["member_code"],
                                   amount_fen=1000, paid_at="0001-01-01T00:00:00",
                                   store_id="S1")
    assert (status, body["code"], body["field"]) == (400, "bad_request", "paid_at")
    assert "2000-01-01" in body["message"]
    assert (await ctx.store.get(m["member_id"])).to_dict() == before.to_dict()
    assert await ctx.store.lookup("order", "Y1") is None
    # the member is not broken: a gold-qualifying order and its refund answer 200
    status, body = await api.order(**order_body("G1", m["member_code"], 1_600_000, clock.now))
    assert (status, body["tier"]) == (200, "gold")
    status, body = await api.post("/api/orders/G1/refund", {"refund_id": "RG1"})
    assert status == 200 and body["tier"] == "normal"


async def test_a_paid_at_without_offset_is_read_in_the_configured_zone(api, ctx, register):
    m = await register("o-naive")
    # 2000-01-01 00:00 in Shanghai is the first instant allowed
    status, _ = await api.order(order_id="N1", member_code=m["member_code"], amount_fen=1000,
                                paid_at="1999-12-31T23:59:59", store_id="S1")
    assert status == 400
    status, _ = await api.order(order_id="N2", member_code=m["member_code"], amount_fen=1000,
                                paid_at="2000-01-01T00:00:00", store_id="S1")
    assert status == 200
    o = (await ctx.store.get(m["member_id"])).orders["N2"]
    assert o.paid_at == 946656000  # 1999-12-31T16:00:00Z


async def test_a_coupon_redeemed_first_cannot_skip_its_threshold(api, ctx, register, clock):
    m = await register("o-coupon")
    code = m["coupon"]["code"]  # 新人券 满50减10
    status, body = await api.post("/api/coupons/redeem", {"code": code, "order_id": "CT1",
                                                          "amount_fen": 6000})
    assert (status, body["discount_fen"]) == (200, 1000)
    # the order of ¥10 with the same code and id: not the redemption that was checked
    status, body = await api.order(**order_body("CT1", m["member_code"], 1000, clock.now,
                                                coupon_code=code))
    assert (status, body["code"]) == (409, "coupon_conflict")
    assert "CT1" not in (await ctx.store.get(m["member_id"])).orders
    # the same (code, order) with another amount on the redeem endpoint is 409 too
    status, body = await api.post("/api/coupons/redeem", {"code": code, "order_id": "CT1",
                                                          "amount_fen": 1000})
    assert (status, body["code"]) == (409, "coupon_conflict")
    # the same amount is the same redemption
    status, body = await api.post("/api/coupons/redeem", {"code": code, "order_id": "CT1",
                                                          "amount_fen": 6000})
    assert status == 200
    status, body = await api.order(**order_body("CT1", m["member_code"], 6000, clock.now,
                                                coupon_code=code))
    assert (status, body["paid_fen"]) == (200, 5000)


async def test_a_refused_order_or_refund_does_not_reserve_its_id(api, ctx, register, clock):
    # issue 9 defect 6
    wrong, right = await register("o-wrong6"), await register("o-right6")
    status, body = await api.order(**order_body("ID6", wrong["member_code"], 1000, clock.now,
                                                coupon_code=wrong["coupon"]["code"]))
    assert (status, body["code"]) == (422, "coupon_threshold")
    status, body = await api.order(**order_body("ID6", right["member_code"], 1000, clock.now))
    assert status == 200, body
    await api.order(**order_body("ID6-W", wrong["member_code"], 1000, clock.now))
    status, body = await api.post("/api/orders/ID6-W/refund", {"refund_id": "RID6",
                                                               "amount_fen": 5000})
    assert (status, body["code"]) == (422, "refund_amount")
    status, body = await api.post("/api/orders/ID6/refund", {"refund_id": "RID6"})
    assert status == 200, body
    status, body = await api.post("/api/orders/ID6-W/refund", {"refund_id": "RID6"})
    assert (status, body["code"]) == (409, "refund_conflict")
