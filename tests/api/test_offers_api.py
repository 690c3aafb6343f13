"""积分+现金 at the till: the coupon of a points + cash offer tells the POS the cash to collect."""

from __future__ import annotations

from bot.web import CTX, create_app
from tests.conftest import make_settings

from .support import Api

OFFER = '''
[[catalogue]]
key = "combo"
coupon = "points_500"
points = 500
cash_fen = 1990
'''


async def test_member_view_and_redeem_carry_the_cash_to_collect(aiohttp_client, tmp_path,
                                                                 clock):
    path = tmp_path / "rules.toml"
    path.write_text(OFFER, encoding="utf-8")
    client = await aiohttp_client(create_app(make_settings(tmp_path, rules_path=str(path)),
                                             clock=clock))
    ctx, api = client.app[CTX], Api(client, clock)
    m = await ctx.members.register("o-cash", clock.now)
    await ctx.members.adjust_points(m["member_id"], 600, "test", "t", clock.now, key="seed")
    got = await ctx.members.exchange(m["member_id"], 1, clock.now, key="x1")
    assert (got["cash_fen"], got["offer"]) == (1990, "combo")
    s, view = await api.get(f"/api/members/{m['member_code']}")
    assert s == 200
    mine = {c["code"]: c["cash_fen"] for c in view["coupons"]}
    assert mine[got["code"]] == 1990 and sorted(mine.values()) == [0, 1990]  # + welcome
    s, r = await api.post("/api/coupons/redeem", {"code": got["code"], "order_id": "T-1",
                                                  "amount_fen": 3000})
    assert s == 200 and (r["discount_fen"], r["cash_fen"]) == (500, 1990)
