"""Pending points through the use cases on every backend (issue 17 item 3): an order's points
wait ``points.pending_days``; a refund inside the window cancels them; the nightly
housekeeping finds the member on the day they mature through the ``pending`` index."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from bot.members import Members
from bot.rules.config import DEFAULTS, _merge, build_rules
from bot.rules.timeutil import day_num, local_day

RULES = build_rules(_merge(DEFAULTS, {"points": {"pending_days": 7}}))
TZ = RULES.tz
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=TZ)


async def _ledger_points(store, mid: str) -> int:
    return sum(r.points for r in await store.ledger(member_id=mid))


async def test_pending_then_available_with_the_maturity_index(store):
    members = Members(store, RULES)
    mid = (await members.register("o-pend", NOW))["member_id"]
    res = await members.record_order(mid, "p1", 20_000, NOW, NOW)
    assert (res["balance"], res["points_pending"], res["pending_until"]) == (0, 200,
                                                                          "2026-12-02")
    assert await store.range("pending", 0, 99999999) == [(mid, 20261202)]
    # a resend is the same result and changes nothing
    again = await members.record_order(mid, "p1", 20_000, NOW, NOW)
    assert again == res
    m = await store.get(mid)
    card = members.card(m, NOW + timedelta(days=7))  # a read after the window: available
    assert (card["balance"], card["pending_points"]) == (200, 0)
    assert members.card(m, NOW)["pending_points"] == 200
    # housekeeping's refresh on the day converts them into a lot; the index moves on
    later = NOW + timedelta(days=7, hours=-7)
    await members.refresh(mid, later)
    m = await store.get(mid)
    assert m.pending == [] and [(x.earned_on, x.expires_on) for x in m.lots] == [
        ("2026-12-02", "2027-12-02")]
    assert await store.range("pending", 0, 99999999) == []
    assert await store.range("expiry", 0, 99999999) == [(mid, day_num(
        local_day(datetime(2027, 12, 2, tzinfo=TZ), TZ)))]
    assert await _ledger_points(store, mid) == 200


async def test_refund_inside_the_window_cancels_once_under_resends(store):
    members = Members(store, RULES)
    mid = (await members.register("o-pend2", NOW))["member_id"]
    await members.record_order(mid, "p2", 30_000, NOW, NOW)
    later = NOW + timedelta(days=2)
    got = await asyncio.gather(*(members.refund("p2", "r2", None, later) for _ in range(5)))
    assert {r["points_reversed"] for r in got} == {300}
    m = await store.get(mid)
    assert m.pending == [] and m.lots == [] and m.debt == 0
    assert await _ledger_points(store, mid) == 0
    assert members.card(m, NOW + timedelta(days=30))["balance"] == 0
    assert await store.range("pending", 0, 99999999) == []
