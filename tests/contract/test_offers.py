"""Limited offers on every backend: stock never oversold, once per key, given back on refusal."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from bot import analytics, keys
from bot.members import Members
from bot.report import tables
from bot.rules import Refusal, load_rules
from bot.rules.points import balance
from tests.rules.support import rules_file

OFFER = '''
[[catalogue]]
key = "flash"
coupon = "points_500"
points = 500
cash_fen = 990
stock = 5
per_member_limit = 2
start = 2026-11-25
end = 2026-11-30
'''
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=load_rules().tz)


@pytest.fixture
def rules(tmp_path):
    return rules_file(tmp_path, OFFER)


async def _rich(members: Members, openid: str, pts: int = 2000) -> str:
    mid = (await members.register(openid, NOW))["member_id"]
    await members.adjust_points(mid, pts, "test", "t", NOW, key=f"seed-{openid}")
    return mid


async def _try(members: Members, mid: str, key: str):
    try:
        return await members.exchange(mid, 1, NOW, key=key)
    except Refusal as e:
        return e.code


async def test_stock_of_5_under_20_concurrent_exchanges_is_never_oversold(store, rules):
    members = Members(store, rules)
    ids = [await _rich(members, f"o-{i}") for i in range(20)]
    res = await asyncio.gather(*(_try(members, mid, f"x-{mid}") for mid in ids))
    ok = [r for r in res if isinstance(r, dict)]
    assert len(ok) == 5
    assert {r for r in res if not isinstance(r, dict)} == {"exchange_sold_out"}
    assert await store.stock(keys.offer_stock("flash")) == 0
    held = spent = 0
    for mid in ids:
        m = await store.get(mid)
        mine = [c for c in m.coupons if c.offer == "flash"]
        held += len(mine)
        assert all(c.cash_fen == 990 for c in mine)
        spent += 2000 - balance(m, NOW.date())
    assert (held, spent) == (5, 5 * 500)  # the sold-out members kept their points
    assert len(await store.ledger(kinds=["coupon_issue"])) == 5 + 20  # + welcome coupons
    # the report shows the offer's figures
    r = await analytics.compute(store, rules, NOW.date(), 7)
    assert r["offers"] == [{"key": "flash", "n": 1, "name": "¥5无门槛券", "points": 500,
                            "cash_fen": 990, "exchanged": 5, "stock": 5, "left": 0}]
    titles = [str(t.title) for t in tables(r)]
    assert "积分兑换（限时爆款）：期内兑换与剩余库存" in titles


async def test_one_key_exchanges_once_and_the_member_limit_holds_under_concurrency(
        store, rules):
    members = Members(store, rules)
    mid = await _rich(members, "o-a", 5000)
    same = await asyncio.gather(*(_try(members, mid, "msg-1") for _ in range(8)))
    assert all(r == same[0] for r in same) and isinstance(same[0], dict)
    assert await store.stock(keys.offer_stock("flash")) == 4
    # eight different messages at once: the member's limit of 2 lets one more through
    res = await asyncio.gather(*(_try(members, mid, f"msg-{i}") for i in range(2, 10)))
    assert sum(isinstance(r, dict) for r in res) == 1
    assert {r for r in res if not isinstance(r, dict)} == {"exchange_limit"}
    m = await store.get(mid)
    assert sum(c.offer == "flash" for c in m.coupons) == 2
    assert balance(m, NOW.date()) == 5000 - 2 * 500
    assert await store.stock(keys.offer_stock("flash")) == 3


async def test_a_refused_member_takes_no_stock(store, rules):
    members = Members(store, rules)
    poor = await _rich(members, "o-poor", 100)
    assert await _try(members, poor, "p-1") == "insufficient_points"
    assert await store.stock(keys.offer_stock("flash")) == 5
    closed = datetime(2026, 12, 1, tzinfo=NOW.tzinfo)
    rich = await _rich(members, "o-rich")
    with pytest.raises(Refusal) as e:
        await members.exchange(rich, 1, closed, key="late")
    assert e.value.code == "exchange_closed"
    assert await store.stock(keys.offer_stock("flash")) == 5
    assert (await members.exchange(rich, 1, NOW, key="in-time"))["cash_fen"] == 990
    assert await store.stock(keys.offer_stock("flash")) == 4
