"""积分 in chat with pending purchase points (issue 17 item 3): available and pending apart,
and the pending points available once their day has come."""

from __future__ import annotations

from datetime import timedelta

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


async def test_balance_reply_lines_with_pending_points_and_debt(make_bot, clock):
    """Each figure on a line of its own, no empty line (issue 17 review: 当前积分 and
    待生效积分 ran together on one line, followed by an empty one)."""
    bot = await make_bot(rules=RULES)
    await bot.wx.follow("o_lines")
    m = await bot.member("o_lines")
    await bot.ctx.members.record_order(m.id, "chat-l1", 80_000, clock.t, clock.t)
    due = (clock.t + timedelta(days=7)).astimezone(RULES.tz).date().isoformat()
    r = await bot.wx.text("o_lines", "积分")
    assert r.content.splitlines() == [
        "当前积分：0", f"待生效积分：800（{due} 起陆续可用）", "等级：普通会员",
        "再消费 ¥2200 升级银卡会员", "发送「兑换」用积分换优惠券。"], r.content
    # points of an older order spent, then that order refunded: a debt beside pending points
    old = clock.t - timedelta(days=10)
    await bot.ctx.members.record_order(m.id, "chat-l0", 50_000, old, old)
    await bot.ctx.members.record_order(m.id, "chat-l2", 60_000, clock.t, clock.t,
                                       points_used=500)
    await bot.ctx.members.refund("chat-l0", "chat-l0-r", None, clock.t)
    r = await bot.wx.text("o_lines", "积分")
    assert r.content.splitlines() == [  # balance = lots − debt (PRODUCT.md)
        "当前积分：-500（待抵扣 500）", f"待生效积分：1395（{due} 起陆续可用）",
        "等级：普通会员", "再消费 ¥1605 升级银卡会员", "发送「兑换」用积分换优惠券。"], r.content
