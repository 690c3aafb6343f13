"""兑换 in chat with limited offers: only open items with their stock, clear sold-out and closed
replies, 积分+现金 told to the member and to the POS."""

from __future__ import annotations

from bot.rules import load_rules

OFFERS = '''
[[catalogue]]
coupon = "points_500"
points = 500

[[catalogue]]
key = "flash"
name = "限时爆款"
coupon = "points_500"
points = 500
cash_fen = 990
stock = 1
per_member_limit = 1
start = 2026-11-25
end = 2026-11-26

[[catalogue]]
key = "later"
coupon = "points_500"
points = 800
start = 2026-12-20
'''


async def test_offers_in_chat(make_bot, tmp_path, clock):
    path = tmp_path / "offers.toml"
    path.write_text(OFFERS, encoding="utf-8")
    bot = await make_bot(rules=load_rules(path))
    for who in ("o_a", "o_b"):
        await bot.wx.follow(who)
        m = await bot.member(who)
        await bot.ctx.members.adjust_points(m.id, 3000, "test", "t", clock.t, key=f"s-{who}")
    r = await bot.wx.text("o_a", "兑换")
    assert "2. 限时爆款（减5）— 500 积分 + ¥9.90（到店用券时付）" in r.content, r.content
    assert "剩余 1 份，你还可兑 1 次，11-26 23:59 截止" in r.content, r.content
    assert "3." not in r.content  # not open yet: not listed
    r = await bot.wx.text("o_a", "兑换 2")
    assert "消耗 500 积分" in r.content and "到店使用此券时需另付 ¥9.90" in r.content, r.content
    r = await bot.wx.text("o_b", "兑换")
    assert "已兑完" in r.content, r.content
    r = await bot.wx.text("o_b", "兑换 2")
    assert "该商品已兑完" in r.content, r.content
    r = await bot.wx.text("o_b", "兑换 3")
    assert "该兑换活动尚未开始" in r.content, r.content
    r = await bot.wx.text("o_b", "兑换 1")
    assert "兑换成功" in r.content and "另付" not in r.content
    b = await bot.member("o_b")
    assert sum(c.template == "points_500" for c in b.coupons) == 1  # only the open item
    clock.advance(days=2)
    r = await bot.wx.text("o_a", "兑换")
    assert "限时爆款" not in r.content
    r = await bot.wx.text("o_a", "兑换 2")
    assert "该兑换活动已结束" in r.content, r.content
