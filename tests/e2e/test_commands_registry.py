"""The command registry: matching after trim and full-width/half-width normalisation, menu
keys, one handler per command."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.handlers.commands import Router, invite_scene, normalise, router


@pytest.mark.parametrize(("text", "name", "arg"), [
    ("签到 ", "签到", ""), ("  打卡", "签到", ""), ("积分", "积分", ""), ("我的积分", "积分", ""),
    ("？", "帮助", ""), ("?", "帮助", ""), ("ＨＥＬＰ", "帮助", ""), ("菜单", "帮助", ""),
    ("绑定　ABC123", "绑定", "ABC123"), ("绑定abc234", "绑定", "abc234"),
    ("绑定 ＡＢＣ２３４", "绑定", "ABC234"), ("兑换", "兑换", ""), ("兑换 1", "兑换", "1"),
    ("兑换１", "兑换", "1"), ("生日 1990-05-20", "生日", "1990-05-20"),
    ("生日　1990－05－20", "生日", "1990-05-20"), ("券", "优惠券", ""), ("会员码", "会员", ""),
    ("退订", "退订", ""), ("订阅", "订阅", ""), ("邀请", "邀请码", ""),
    ("积分明细", "积分明细", ""), ("明细", "积分明细", ""), ("积分明细 ", "积分明细", ""),
])
def test_text_commands_match_after_normalisation(text, name, arg):
    cmd, got = router.match(text)
    assert cmd is not None and cmd.name == name and got == arg


@pytest.mark.parametrize("text", ["", "你好", "签到吧", "积分多少", "helpme", "绑", "？？"])
def test_anything_else_matches_nothing(text):
    assert router.match(text) == (None, "")


def test_menu_keys_and_registry():
    keys = {c.menu: c.name for c in router.commands if c.menu}
    assert keys == {"CHECKIN": "签到", "BALANCE": "积分", "COUPONS": "优惠券", "INVITE": "邀请码",
                    "CARD": "会员", "REDEEM": "兑换", "HELP": "帮助", "HISTORY": "积分明细",
                    "MEMBER_CARD": "会员卡", "TASKS": "任务"}
    assert router.menu("checkin").name == "签到" and router.menu("NOPE") is None
    assert {"subscribe", "scan", "user_get_card", "submit_membercard_user_info",
            "user_del_card", "update_member_card"} <= set(router.events)
    r = Router()
    r.command("a")(lambda t: None)
    with pytest.raises(ValueError):
        r.command("b", "Ａ")(lambda t: None)  # "Ａ" normalises to "a": registered twice


@pytest.mark.parametrize(("text", "arg"), [
    ("兑换 ¹", "¹"), ("兑换 ²", "²"), ("兑换 ①", "①"), ("兑换 ⑴", "⑴"), ("兑换 ₂", "₂"),
    ("生日 ¹⁹⁹⁰-05-20", "¹⁹⁹⁰-05-20"),
])
def test_only_the_width_is_normalised_not_superscripts_or_circled_digits(text, arg):
    """NFKC made '²' a '2', so that 「兑换 ²」 chose item 2."""
    assert router.match(text)[1] == arg
    assert normalise("ＡＢＣ　２３４！～") == "ABC 234!~"


async def test_exchange_takes_ascii_and_full_width_digits_only(bot, clock):
    await bot.wx.follow("o_x")
    m = await bot.member("o_x")
    await bot.ctx.members.record_order(m.id, "ord-x", 150_000, clock(), clock())  # 1500 points
    coupons = len((await bot.member("o_x")).coupons)
    for arg in ("¹", "²", "①", "⑴", "₁", "1²", "١"):
        r = await bot.wx.text("o_x", f"兑换 {arg}")
        assert r.content == "格式：兑换 序号，例如：兑换 1", (arg, r.content)
    m = await bot.member("o_x")
    assert len(m.coupons) == coupons and sum(x.points for x in await bot.ledger("o_x")) == 1500
    assert "没有第 2 项" in (await bot.wx.text("o_x", "兑换 ２")).content  # read as item 2
    assert "兑换成功" in (await bot.wx.text("o_x", "兑换１")).content
    assert "兑换成功" in (await bot.wx.text("o_x", "兑换 1")).content
    assert [c.template for c in (await bot.member("o_x")).coupons].count("points_500") == 2


def test_normalise_and_invite_scenes():
    assert normalise("　签到\t ") == "签到" and normalise("绑定　 x") == "绑定 x"
    assert invite_scene("qrscene_inv_abc234") == "ABC234"
    assert invite_scene("inv_ABC234") == "ABC234"
    assert invite_scene("qrscene_campaign42") is None and invite_scene("inv_") is None


async def test_history_shows_the_last_ten_points_lines_and_the_balance(bot, clock):
    empty = await bot.wx.text("o_h", "积分明细")
    assert "还没有积分变动" in empty.content and "当前积分：0" in empty.content
    for _ in range(11):  # +5 +6 +7 +8 +9 +10 +30 (the 7th day's bonus), then +5 +6 +7 +8
        await bot.wx.text("o_h", "签到")
        clock.advance(days=1)
    m = await bot.member("o_h")
    await bot.ctx.members.record_order(m.id, "o-h1", 50_000, clock.t, clock.t)  # +500
    await bot.wx.text("o_h", "兑换 1")  # 500 points for a coupon
    r = await bot.wx.click("o_h", "HISTORY")
    lines = [x for x in r.content.splitlines() if x.startswith("·")]
    assert len(lines) == 10 and "最近 10 笔" in r.content
    day = lambda n: (clock.t - timedelta(days=n)).strftime("%Y-%m-%d")  # noqa: E731
    assert lines[:3] == [f"· {day(0)} 积分兑换 -500", f"· {day(0)} 消费得积分 +500",
                         f"· {day(1)} 签到 +8"]
    assert lines[6] == f"· {day(5)} 签到 +30" and lines[9] == f"· {day(8)} 签到 +8"
    rows = await bot.ledger("o_h")
    assert f"当前积分：{sum(x.points for x in rows)}" in r.content
    assert (await bot.wx.text("o_h", "明细")).content == r.content
