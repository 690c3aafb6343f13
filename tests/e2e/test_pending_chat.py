"""积分 in chat with pending purchase points (issue 17 item 3): available and pending apart,
and the pending points available once their day has come."""

from __future__ import annotations

from bot.rules.config import DEFAULTS, _merge, build_rules

RULES = build_rules(_merge(DEFAULTS, {"points": {"pending_days": 7}}))


async def test_balance_reply_shows_available_and_pending_apart(make_bot, clock):
    bot = await make_bot(rules=RULES)
    await bot.wx.follow("o_pend")
    m = await bot.member("o_pend")
    await bot.ctx.members.record_order(m.id, "chat-p1", 12_300, clock.t, clock.t)
    r = await bot.wx.text("o_pend", "积分")
    assert "当前积分：0" in r.content
    assert "待生效积分：123" in r.content, r.content
    clock.advance(days=8)
    r = await bot.wx.text("o_pend", "积分")
    assert "当前积分：123" in r.content and "待生效" not in r.content, r.content
