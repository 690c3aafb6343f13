"""A member's chat with the Official Account, end to end: signed, encrypted callbacks in, the
decrypted replies checked against the ledger in the store."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime

from bot.rules import load_rules
from bot.rules.points import balance as points_balance
from bot.rules.timeutil import local_day

from .wechat_client import GH, cdata


async def ledger_points(bot, openid: str) -> int:
    return sum(r.points for r in await bot.ledger(openid))


async def test_follow_welcomes_with_member_code_and_coupon(bot, fake_api):
    fake_api.unionids["o_alice"] = "u_alice"
    r = await bot.wx.follow("o_alice")
    m = await bot.member("o_alice")
    assert r.status == 200 and r.fields["ToUserName"] == "o_alice"
    assert r.fields["FromUserName"] == GH and r.fields["MsgType"] == "text"
    assert "欢迎" in r.content and m.member_code in r.content
    [coupon] = m.coupons
    assert coupon.template == "welcome" and coupon.code in r.content
    assert "新人券" in r.content and "满50减10" in r.content and "2026-12-02" in r.content
    assert m.unionid == "u_alice"  # learnt from user/info on subscribe
    assert fake_api.to("/cgi-bin/user/info")[0].query["openid"] == "o_alice"


async def test_follow_registers_without_unionid_when_api_is_unreachable(bot, fake_api):
    fake_api.unionids["o_slow"] = "u_slow"
    fake_api.delay = 1.0
    bot.oa.unionids.timeout = 0.1
    r = await bot.wx.follow("o_slow")
    m = await bot.member("o_slow")
    assert "欢迎" in r.content and m.unionid is None and m.followed
    fake_api.delay = 0
    await bot.wx.text("o_slow", "积分")  # a later message learns it in the background
    for _ in range(200):
        if (await bot.member("o_slow")).unionid:
            break
        await asyncio.sleep(0.01)
    assert (await bot.member("o_slow")).unionid == "u_slow"


async def test_checkin_seven_days_with_bonus_then_a_missed_day_resets(bot, clock):
    await bot.wx.follow("o_c")
    expected = [5, 6, 7, 8, 9, 10, 10]
    total = 0
    for day, pts in enumerate(expected, 1):
        r = await bot.wx.text("o_c", "签到")
        bonus = 20 if day == 7 else 0
        total += pts + bonus
        assert f"+{pts} 积分" in r.content, r.content
        assert f"已连续签到 {day} 天" in r.content and f"当前积分 {total}" in r.content
        assert ("+20" in r.content) == (day == 7)
        clock.advance(days=1)
    assert await ledger_points(bot, "o_c") == total == 75
    clock.advance(days=1)  # a day missed
    r = await bot.wx.text("o_c", "打卡")
    assert "+5 积分" in r.content and "已连续签到 1 天" in r.content
    assert f"当前积分 {total + 5}" in r.content
    assert await ledger_points(bot, "o_c") == total + 5


async def test_second_checkin_the_same_day_says_already(bot, clock):
    await bot.wx.follow("o_d")
    first = await bot.wx.text("o_d", "签到")
    clock.advance(hours=3)
    second = await bot.wx.click("o_d", "CHECKIN")
    third = await bot.wx.text("o_d", "签到 ")
    assert "签到成功" in first.content
    for r in (second, third):
        assert "今天已签到" in r.content and "已连续签到 1 天" in r.content
    assert len(await bot.ledger("o_d", ["credit"])) == 1


async def test_balance_shows_points_about_to_expire_with_the_date_and_tier_gap(bot, clock):
    await bot.wx.follow("o_e")
    await bot.wx.text("o_e", "手机 13800138005")
    await bot.wx.text("o_e", "生日 1990-05-20")  # profile complete: +50, earned 2026-11-25
    await bot.wx.text("o_e", "签到")  # +5, earned 2026-11-25
    clock.advance(days=25)
    await bot.wx.text("o_e", "签到")  # +5, earned 2026-12-20
    m = await bot.member("o_e")
    await bot.ctx.members.record_order(m.id, "ord-1", 123450, clock(), clock())  # +1234
    clock.t = datetime(2027, 11, 10, 12, 0, tzinfo=clock.t.tzinfo)
    r = await bot.wx.text("o_e", "积分")
    m = await bot.member("o_e")
    bal = points_balance(m, local_day(clock(), bot.ctx.rules.tz))
    assert bal == 1294 == await ledger_points(bot, "o_e")
    assert f"当前积分：{bal}" in r.content
    assert "30 天内将过期 55 分" in r.content and "2027-11-25 到期 55 分" in r.content
    assert "2027-12-20" not in r.content  # beyond 30 days
    assert "普通会员" in r.content and "再消费 ¥1765.50 升级银卡会员" in r.content
    menu = await bot.wx.click("o_e", "BALANCE")
    assert menu.content == r.content


async def test_coupons_soonest_expiry_first_and_exchange(bot, clock):
    await bot.wx.follow("o_f")
    m = await bot.member("o_f")
    await bot.ctx.members.record_order(m.id, "ord-f", 60000, clock(), clock())  # 600 points
    cat = await bot.wx.text("o_f", "兑换")
    assert "1. ¥5无门槛券（减5）— 500 积分" in cat.content and "当前积分 600" in cat.content
    ex = await bot.wx.text("o_f", "兑换 1")
    m = await bot.member("o_f")
    new = next(c for c in m.coupons if c.template == "points_500")
    assert "兑换成功" in ex.content and new.code in ex.content and "当前积分 100" in ex.content
    assert await ledger_points(bot, "o_f") == 100
    r = await bot.wx.text("o_f", "优惠券")
    welcome = next(c for c in m.coupons if c.template == "welcome")
    assert r.content.index(welcome.code) < r.content.index(new.code)  # 7 days before 30
    assert "2026-12-02" in r.content and "2026-12-25" in r.content
    poor = await bot.wx.text("o_f", "兑换 1")
    assert "积分不足" in poor.content and await ledger_points(bot, "o_f") == 100
    assert "没有第 9 项" in (await bot.wx.text("o_f", "兑换 9")).content


async def test_invite_by_qr_scan_and_bind_with_every_refusal(bot, clock, fake_api):
    a = await bot.wx.follow("o_a")
    inv = await bot.wx.text("o_a", "邀请码")
    ma = await bot.member("o_a")
    code = ma.invite_code
    assert code in inv.content and "已邀请 0 人" in inv.content and "50 积分" in inv.content
    assert "showqrcode?ticket=" in inv.content
    [qr] = fake_api.to("/cgi-bin/qrcode/create")
    assert qr.body["action_info"]["scene"]["scene_str"] == f"inv_{code}"
    assert "绑定成功" not in a.content

    b = await bot.wx.follow("o_b", scene=f"inv_{code}")  # new follower through the QR code
    assert "欢迎" in b.content and "绑定成功！你获得 50 积分" in b.content
    await bot.wx.follow("o_c")
    c = await bot.wx.event("o_c", "SCAN", f"inv_{code}")  # already following, scans
    assert "绑定成功" in c.content
    await bot.wx.follow("o_d")
    d = await bot.wx.text("o_d", f"绑定　{code.lower()}")  # full-width space, lower case
    assert "绑定成功" in d.content
    assert await ledger_points(bot, "o_a") == 150
    for who in ("o_b", "o_c", "o_d"):
        assert await ledger_points(bot, who) == 50
    assert "已邀请 3 人" in (await bot.wx.click("o_a", "INVITE")).content

    mb = await bot.member("o_b")
    refusals = {
        "不能绑定自己的邀请码": ("o_a", code),
        "你已绑定过邀请人": ("o_b", (await bot.member("o_c")).invite_code),
        "不能互相邀请": ("o_a", mb.invite_code),
        "邀请码不存在": ("o_d", "ZZZZZZ"),
    }
    for text, (who, c_) in refusals.items():
        r = await bot.wx.text(who, f"绑定 {c_}")
        assert text in r.content, (text, r.content)
    await bot.wx.follow("o_late")
    clock.advance(days=8)
    late = await bot.wx.text("o_late", f"绑定 {code}")
    assert "7 天内绑定" in late.content
    scan_late = await bot.wx.event("o_late", "SCAN", f"inv_{code}")
    assert "7 天内绑定" in scan_late.content
    # nobody earned anything from a refused invite
    assert await ledger_points(bot, "o_a") == 150 and await ledger_points(bot, "o_late") == 0
    assert await ledger_points(bot, "o_b") == 50 and await ledger_points(bot, "o_d") == 50


async def test_commands_card_birthday_opt_out_help_and_hints(bot):
    await bot.wx.follow("o_g")
    m = await bot.member("o_g")
    card = await bot.wx.click("o_g", "CARD")
    assert m.member_code in card.content and "新品折扣、生日礼包" in card.content
    assert (await bot.wx.text("o_g", "会员码")).content == card.content
    ph = await bot.wx.text("o_g", "手机 138-0013-8007")
    assert "已登记手机号" in ph.content and "生日" in ph.content and "获得" not in ph.content
    assert (await bot.member("o_g")).phone == "13800138007"
    bd = await bot.wx.text("o_g", "生日 1990/05/20")  # phone and birthday: 完善资料 +50
    assert "获得 50 积分" in bd.content and "当前积分 50" in bd.content
    again = await bot.wx.text("o_g", "生日 1991-01-01")
    assert "不能修改" in again.content and await ledger_points(bot, "o_g") == 50
    assert "格式" in (await bot.wx.text("o_g", "生日 明天")).content
    assert "已退订" in (await bot.wx.text("o_g", "退订")).content
    assert (await bot.member("o_g")).opted_out
    assert "已恢复" in (await bot.wx.text("o_g", "订阅")).content
    assert not (await bot.member("o_g")).opted_out
    helps = [await bot.wx.text("o_g", t) for t in ("帮助", "？", "?", "菜单")]
    helps.append(await bot.wx.click("o_g", "HELP"))
    assert len({h.content for h in helps}) == 1 and "签到" in helps[0].content
    for t in ("你好", "签到吧吧", "绑定"):
        r = await bot.wx.text("o_g", t)
        assert r.content and ("帮助" in r.content or "格式" in r.content), (t, r.content)
    image = (f"<xml><ToUserName>{cdata(GH)}</ToUserName><FromUserName>{cdata('o_g')}"
             f"</FromUserName><CreateTime>1764000000</CreateTime><MsgType>{cdata('image')}"
             f"</MsgType><PicUrl>{cdata('http://x/y.jpg')}</PicUrl><MsgId>42</MsgId></xml>")
    assert "帮助" in (await bot.wx.post(image, "o_g")).content
    assert "帮助" in (await bot.wx.click("o_g", "NO_SUCH_KEY")).content
    assert (await bot.wx.event("o_g", "VIEW", "https://example.com")).success


async def test_unsubscribe_keeps_data_and_refollow_reactivates(bot):
    await bot.wx.follow("o_h")
    await bot.wx.text("o_h", "签到")
    before = await bot.member("o_h")
    assert (await bot.wx.event("o_h", "unsubscribe")).success
    gone = await bot.member("o_h")
    assert not gone.followed and gone.member_code == before.member_code
    assert await ledger_points(bot, "o_h") == 5
    back = await bot.wx.follow("o_h")
    m = await bot.member("o_h")
    assert m.followed and m.id == before.id and before.member_code in back.content
    assert len(m.coupons) == 1 and m.coupons[0].code in back.content  # no second welcome
    assert back.content.startswith("欢迎回来") and "欢迎加入" not in back.content


async def test_rate_limit_answers_politely_and_applies_nothing(make_bot):
    rules = dataclasses.replace(load_rules(), rate_limit={"commands_per_minute": 3})
    bot = await make_bot(rules=rules)
    await bot.wx.follow("o_r")
    for _ in range(3):
        await bot.wx.text("o_r", "积分")
    r = await bot.wx.text("o_r", "签到")
    assert "太频繁" in r.content and await ledger_points(bot, "o_r") == 0


async def test_plain_mode_and_invite_without_api(make_bot):
    bot = await make_bot(safe=False, api=False)
    r = await bot.wx.follow("o_p")
    assert "欢迎" in r.content
    inv = await bot.wx.text("o_p", "邀请码")
    assert "邀请码" in inv.content and "二维码" not in inv.content


async def test_the_inviter_is_told_of_the_reward_by_message_and_in_the_next_reply(
        bot, clock, fake_api):
    await bot.wx.follow("o_inv")
    code = (await bot.member("o_inv")).invite_code
    await bot.wx.text("o_inv", "积分")  # the inviter wrote just now: a message may be sent
    await bot.wx.follow("o_new", scene=f"inv_{code}")
    [sent] = await fake_api.wait_for("/cgi-bin/message/custom/send")
    assert sent.body["touser"] == "o_inv" and "50 积分邀请奖励" in sent.body["text"]["content"]
    # a retry of the bind sends nothing more
    await bot.wx.event("o_new", "SCAN", f"inv_{code}")
    # the next reply tells them too, once
    nxt = await bot.wx.text("o_inv", "帮助")
    assert "你邀请的好友已加入" in nxt.content and "指令" in nxt.content
    assert "你邀请的好友已加入" not in (await bot.wx.text("o_inv", "帮助")).content
    assert len(fake_api.to("/cgi-bin/message/custom/send")) == 1


async def test_an_inviter_silent_for_48_hours_hears_of_it_in_the_next_check_in(
        bot, clock, fake_api):
    await bot.wx.follow("o_quiet")
    code = (await bot.member("o_quiet")).invite_code
    clock.advance(days=3)  # past WeChat's 48 h window: no customer-service message
    await bot.wx.follow("o_new2", scene=f"inv_{code}")
    await bot.wx.text("o_new2", "积分")  # let background work run
    assert fake_api.to("/cgi-bin/message/custom/send") == []
    r = await bot.wx.text("o_quiet", "签到")
    assert "签到成功" in r.content and "你获得 50 积分邀请奖励" in r.content
    assert (await bot.member("o_quiet")).notices == []
    again = await bot.wx.text("o_quiet", "积分")
    assert "邀请奖励" not in again.content
