"""The invite ladder end to end: real binds in chat reach the rungs; 邀请码 shows the next."""

from __future__ import annotations

import asyncio

from bot.rules import load_rules

LADDER = ('[[invite_ladder]]\ninvites = 3\ncoupon = "points_500"\n\n'
          '[[invite_ladder]]\ninvites = 5\npoints = 200\n')


async def test_binds_climb_the_ladder_once_per_rung(make_bot, tmp_path, clock):
    path = tmp_path / "ladder.toml"
    path.write_text(LADDER, encoding="utf-8")
    bot = await make_bot(rules=load_rules(path))
    await bot.wx.follow("o_inv")
    inviter = await bot.member("o_inv")
    r = await bot.wx.text("o_inv", "邀请码")
    assert "再邀请 3 人（累计 3 人）可得 ¥5无门槛券" in r.content, r.content
    for n in range(2):
        await bot.wx.follow(f"o_f{n}")
        await bot.wx.text(f"o_f{n}", f"绑定 {inviter.invite_code}")
    r = await bot.wx.text("o_inv", "邀请码")
    assert "再邀请 1 人（累计 3 人）" in r.content
    # the third invite: two copies of the bind at once still reach the rung once
    await bot.wx.follow("o_f2")
    mid = await bot.store.lookup("openid", "o_f2")
    await asyncio.gather(*(bot.ctx.members.bind_invite(mid, inviter.invite_code, clock.t)
                           for _ in range(2)))
    m = await bot.member("o_inv")
    assert m.ladder_done == [3] and m.invited_rewarded_total == 3
    assert [c.template for c in m.coupons].count("points_500") == 1
    r = await bot.wx.text("o_inv", "邀请码")
    assert "再邀请 2 人（累计 5 人）可得 200 积分" in r.content
    for n in range(3, 5):
        await bot.wx.follow(f"o_f{n}")
        await bot.wx.text(f"o_f{n}", f"绑定 {inviter.invite_code}")
    m = await bot.member("o_inv")
    assert m.ladder_done == [3, 5]
    rows = await bot.ledger("o_inv", kinds=["invite_ladder"])
    assert [r.data["invites"] for r in rows] == [3, 5]
    credits = await bot.ledger("o_inv", kinds=["credit"])
    assert sorted(r.points for r in credits) == [50] * 5 + [200]
    r = await bot.wx.text("o_inv", "签到")  # the inviter's next reply tells of the rung
    assert "累计邀请满 5 人，阶梯奖励 200 积分已到账" in r.content, r.content
    r = await bot.wx.text("o_inv", "邀请码")
    assert "再邀请" not in r.content


async def test_a_rung_coupon_the_inviter_may_not_receive_never_blocks_a_bind(make_bot, tmp_path,
                                                                            clock):
    """The old defect: the rung's coupon was ``welcome`` (one per member, the inviter got it
    at follow): the invitee's 绑定 answered the inviter's coupon error, neither side got its
    50 points, and so did every later bind."""
    path = tmp_path / "ladder.toml"
    path.write_text('[[invite_ladder]]\ninvites = 1\npoints = 30\ncoupon = "welcome"\n',
                    encoding="utf-8")
    bot = await make_bot(rules=load_rules(path))
    await bot.wx.follow("o_inv")
    inviter = await bot.member("o_inv")
    assert [c.template for c in inviter.coupons] == ["welcome"]
    stock = await bot.store.stock("welcome")
    for n in range(3):
        await bot.wx.follow(f"o_f{n}")
        r = await bot.wx.text(f"o_f{n}", f"绑定 {inviter.invite_code}")
        assert "绑定成功" in r.content, r.content
        assert (await bot.member(f"o_f{n}")).inviter_id == inviter.id
    m = await bot.member("o_inv")
    assert m.invited_rewarded_total == 3 and m.ladder_done == [1]
    assert [c.template for c in m.coupons] == ["welcome"]
    credits = await bot.ledger("o_inv", kinds=["credit"])
    assert sorted(r.points for r in credits) == [30, 50, 50, 50]
    rows = await bot.ledger("o_inv", kinds=["invite_ladder_no_coupon"])
    assert [(r.data["invites"], r.data["coupon"], r.data["reason"]) for r in rows] == [
        (1, "welcome", "coupon_limit")]
    # the three invitees' own welcome coupons, none for the rung
    assert await bot.store.stock("welcome") == stock - 3
    r = await bot.wx.text("o_inv", "签到")
    assert "累计邀请满 1 人，阶梯奖励 30 积分已到账" in r.content, r.content
    assert "新人券已达领取上限" in r.content, r.content
