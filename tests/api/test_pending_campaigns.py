"""The store API with pending points and a campaign (issue 17 items 3 and 5): the order answer
says what is pending and what the campaign added; the member view shows available and
pending apart; a refund inside the window cancels the pending points."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.rules.config import DEFAULTS, _merge, build_rules
from bot.web import CTX, create_app
from tests.conftest import make_settings

from .support import Api, order_body

RULES = build_rules(_merge(DEFAULTS, {
    "points": {"pending_days": 7},
    "campaigns": [{"key": "sh_store", "name": "门店翻倍", "multiplier": 2, "stores": ["SH-001"],
                   "budget": 150}]}))


@pytest.fixture
async def env(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_settings(tmp_path), rules=RULES,
                                             clock=clock))
    return Api(client, clock), client.app[CTX]


async def test_order_answer_member_view_and_refund_with_pending_and_a_campaign(env, clock):
    api, ctx = env
    m = await ctx.members.register("o-api-p", clock.now)
    code = m["member_code"]
    s, res = await api.post("/api/orders", order_body("AP-1", code, 10_000, clock.now))
    assert s == 200, res
    assert (res["points_earned"], res["campaign"], res["campaign_points"]) == (200,
                                                                              "sh_store", 100)
    assert (res["balance"], res["points_pending"]) == (0, 200)
    assert res["pending_until"] == (clock.now + timedelta(days=7)).date().isoformat()
    # the same order again: the same answer, the budget taken once
    s, again = await api.post("/api/orders", order_body("AP-1", code, 10_000, clock.now))
    assert (s, again) == (200, res)
    assert await ctx.store.budget_used("sh_store") == 100
    # the next order gets the last 50 of the budget; another store none
    s, res2 = await api.post("/api/orders", order_body("AP-2", code, 10_000, clock.now))
    assert res2["campaign_points"] == 50
    body = {**order_body("AP-3", code, 10_000, clock.now), "store_id": "BJ-001"}
    s, res3 = await api.post("/api/orders", body)
    assert res3["campaign"] is None and res3["campaign_points"] == 0
    s, view = await api.get(f"/api/members/{code}")
    assert (view["balance"], view["pending_points"]) == (0, 200 + 150 + 100)
    # a refund inside the window cancels AP-1's points: no debt, nothing to mature
    s, ref = await api.post("/api/orders/AP-1/refund", {"refund_id": "AP-1-R"})
    assert s == 200 and ref["points_reversed"] == 200 and ref["debt"] == 0
    clock.advance(days=8)
    s, view = await api.get(f"/api/members/{code}")
    assert (view["balance"], view["pending_points"], view["pending_until"]) == (250, 0, None)
