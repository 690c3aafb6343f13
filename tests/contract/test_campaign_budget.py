"""Campaign budgets on every backend (issue 17 item 5): the store's keyed grants, and orders
through the use case — concurrent orders never exceed the budget, a resent order consumes it
once, a refused order gives its grant back, a refund does not."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from bot.members import Members
from bot.rules import Refusal
from bot.rules.config import DEFAULTS, _merge, build_rules

BUDGET = 1_000
RULES = build_rules(_merge(DEFAULTS, {"campaigns": [
    {"key": "wk", "name": "周末翻倍", "multiplier": 2, "budget": BUDGET}]}))
TZ = RULES.tz
NOW = datetime(2026, 12, 5, 10, 0, tzinfo=TZ)


# -- the store primitive ---------------------------------------------------------------------

async def test_grants_are_once_per_key_and_partial_at_the_end(store):
    assert await store.budget_used("b") == 0
    assert await store.budget_take("b", "k1", 600, 1000, "t1") == 600
    assert await store.budget_take("b", "k1", 900, 1000, "t2") == 600  # the same grant
    assert await store.budget_take("b", "k2", 600, 1000, "t3") == 400  # what is left
    assert await store.budget_take("b", "k3", 10, 1000, "t4") == 0
    assert await store.budget_used("b") == 1000
    assert await store.budget_used("other") == 0


async def test_release_gives_back_only_when_no_attempt_holds_the_grant(store):
    assert await store.budget_take("b", "k1", 300, 1000, "a") == 300
    assert await store.budget_take("b", "k1", 300, 1000, "b") == 300
    await store.budget_release("b", "k1", "a")  # b still holds it (it may have committed)
    assert await store.budget_used("b") == 300
    await store.budget_release("b", "k1", "a")  # twice: nothing more
    await store.budget_release("b", "k1", "b")
    assert await store.budget_used("b") == 0
    await store.budget_release("b", "k1", "b")
    await store.budget_release("b", "nope", "x")
    assert await store.budget_used("b") == 0
    # a released key takes afresh
    assert await store.budget_take("b", "k1", 200, 1000, "c") == 200
    assert await store.budget_used("b") == 200
    # a grant of nothing (the budget was spent) releases cleanly too
    assert await store.budget_take("z", "k", 5, 0, "t") == 0
    await store.budget_release("z", "k", "t")
    assert await store.budget_used("z") == 0


async def test_concurrent_takes_never_exceed_the_total(store):
    got = await asyncio.gather(*(store.budget_take("c", f"k{i}", 7, 100, f"t{i}")
                                 for i in range(40)))
    assert sum(got) == 100 and await store.budget_used("c") == 100
    assert sorted(got)[-1] == 7 and sum(1 for g in got if 0 < g < 7) <= 1


# -- through the orders ----------------------------------------------------------------------

async def _members(members: Members, n: int) -> list[str]:
    return [(await members.register(f"o-b{i}", NOW))["member_id"] for i in range(n)]


async def test_concurrent_orders_never_exceed_the_budget(store):
    members = Members(store, RULES)
    mids = await _members(members, 12)
    # 12 orders of ¥150 want 150 campaign points each (1800) against 1000; each sent twice
    calls = [members.record_order(mid, f"ord-{i}", 15_000, NOW, NOW)
             for i, mid in enumerate(mids)] * 2
    res = await asyncio.gather(*calls)
    by_order = {r["order_id"]: r["campaign_points"] for r in res}
    assert all(r["campaign_points"] == by_order[r["order_id"]] for r in res)  # resends agree
    assert sum(by_order.values()) == BUDGET == await store.budget_used("wk")
    ledger = await store.ledger(kinds=["order"])
    assert sum(r.data.get("campaign_points", 0) for r in ledger) == BUDGET
    assert len(ledger) == 12
    # and then it stops adding points
    late = await members.record_order(mids[0], "ord-late", 15_000, NOW, NOW)
    assert late["campaign_points"] == 0 and late["points_earned"] == 150
    assert await store.budget_used("wk") == BUDGET


async def test_a_resent_order_consumes_the_budget_once(store):
    members = Members(store, RULES)
    (mid,) = await _members(members, 1)
    first = await members.record_order(mid, "r-1", 20_000, NOW, NOW)
    again = await members.record_order(mid, "r-1", 20_000, NOW, NOW + timedelta(minutes=5))
    assert first == again and first["campaign_points"] == 200 and first["campaign"] == "wk"
    assert await store.budget_used("wk") == 200


async def test_a_refused_order_gives_its_grant_back(store):
    members = Members(store, RULES)
    (mid,) = await _members(members, 1)
    try:
        await members.record_order(mid, "x-1", 20_000, NOW, NOW, points_used=500)
    except Refusal as e:
        assert e.code == "insufficient_points"
    assert await store.budget_used("wk") == 0
    # a crash between the grant and the commit leaves it held by the order's key: its resend
    # gets the same grant, never a second one
    assert await store.budget_take("wk", "order:x-2", 200, BUDGET, "crashed") == 200
    res = await members.record_order(mid, "x-2", 20_000, NOW, NOW)
    assert res["campaign_points"] == 200 and await store.budget_used("wk") == 200


async def test_a_refund_takes_campaign_points_back_but_not_the_budget(store):
    members = Members(store, RULES)
    (mid,) = await _members(members, 1)
    await members.record_order(mid, "f-1", 20_000, NOW, NOW)  # 200 + 200
    res = await members.refund("f-1", "rf-1", None, NOW + timedelta(hours=1))
    assert res["points_reversed"] == 400 and res["balance"] == 0 and res["debt"] == 0
    assert await store.budget_used("wk") == 200


async def test_a_commit_whose_answer_is_lost_keeps_its_grant(store, monkeypatch):
    """The store committed but the answer never came (a dropped connection): the grant stays
    with the order, so the counter still covers what the member got, and the resend finds
    the recorded order."""
    from storage.base import StoreUnavailable

    members = Members(store, RULES)
    (mid,) = await _members(members, 1)
    real = store.update

    async def commit_then_fail(member_id, step, *, key=None):
        res = await real(member_id, step, key=key)
        if key == "order:lost-1":
            raise StoreUnavailable("connection dropped after the commit")
        return res

    monkeypatch.setattr(store, "update", commit_then_fail)
    try:
        await members.record_order(mid, "lost-1", 20_000, NOW, NOW)
    except StoreUnavailable:
        pass
    monkeypatch.setattr(store, "update", real)
    assert await store.budget_used("wk") == 200
    res = await members.record_order(mid, "lost-1", 20_000, NOW, NOW)
    assert res["campaign_points"] == 200 and await store.budget_used("wk") == 200


async def test_settle_gives_back_the_unused_part_once(store):
    assert await store.budget_take("s", "k1", 200, 1000, "a") == 200
    await store.budget_settle("s", "k1", 100)
    assert await store.budget_used("s") == 100
    await store.budget_settle("s", "k1", 100)  # a resend settles again: nothing more
    await store.budget_settle("s", "k1", 150)  # never raises a grant
    assert await store.budget_used("s") == 100
    assert await store.budget_take("s", "k1", 200, 1000, "b") == 100  # the settled grant
    await store.budget_settle("s", "nope", 0)
    await store.budget_settle("s", "k1", 0)
    assert await store.budget_used("s") == 0
    assert await store.budget_take("s", "k1", 200, 1000, "c") == 0  # still the key's grant


async def test_a_tier_lost_between_grant_and_commit_gives_the_unused_share_back(
        store, monkeypatch):
    """A silver member's order takes a grant sized at silver (×2: 200); a concurrent refund
    drops them to normal before the step commits, so the order earns the normal share (100):
    the other 100 goes back, also when the order is resent."""
    members = Members(store, RULES)
    (mid,) = await _members(members, 1)
    up = await members.record_order(mid, "t-up", 300_000, NOW, NOW)  # silver; spends budget
    assert up["tier"] == "silver" and up["campaign_points"] == BUDGET
    rules = build_rules(_merge(DEFAULTS, {"campaigns": [
        {"key": "big", "name": "翻倍", "multiplier": 2, "budget": 1_000_000}]}))
    members = Members(store, rules)
    real = store.budget_take

    async def take_then_refund(name, key, want, total, token):
        got = await real(name, key, want, total, token)
        if key == "order:t-x":  # the refund commits between the grant and the step
            await members.refund("t-up", "t-up-r", None, NOW)
        return got

    monkeypatch.setattr(store, "budget_take", take_then_refund)
    res = await members.record_order(mid, "t-x", 10_000, NOW, NOW)
    monkeypatch.setattr(store, "budget_take", real)
    assert res["tier"] == "normal" and res["campaign_points"] == 100
    assert await store.budget_used("big") == 100
    again = await members.record_order(mid, "t-x", 10_000, NOW, NOW)
    assert again["campaign_points"] == 100 and await store.budget_used("big") == 100
