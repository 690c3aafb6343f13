"""The member card in WeChat's card wallet (issue 12): created, taken, activated, kept in sync
with every change exactly once and in order, against the fake card API on a local port."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bot import card_sync, cards, keys
from bot.channels.wechat_card import CardAPI
from bot.rules import load_rules
from bot.rules.config import RulesError, build_rules
from tests.e2e.wechat_client import GH, cdata

DOC = Path(__file__).resolve().parents[2] / "docs" / "card.md"
CODE = "Cx-0001"


def card_toml() -> str:
    text = DOC.read_text(encoding="utf-8")
    return re.search(r"```toml\n(.*?)```", text, re.S).group(1)


@pytest.fixture
def card_rules(tmp_path):
    p = tmp_path / "rules.toml"
    p.write_text(card_toml(), encoding="utf-8")
    return load_rules(p)


def card_event(openid: str, event: str, create_time: int, **extra: str) -> str:
    more = "".join(f"<{k}>{cdata(v)}</{k}>" for k, v in extra.items())
    return (f"<xml><ToUserName>{cdata(GH)}</ToUserName><FromUserName>{cdata(openid)}"
            f"</FromUserName><CreateTime>{create_time}</CreateTime>"
            f"<MsgType>{cdata('event')}</MsgType><Event>{cdata(event)}</Event>{more}</xml>")


class Card:
    """A bot with the card created, and its fake API."""

    def __init__(self, bot, api, clock) -> None:
        self.bot, self.api, self.clock = bot, api, clock
        self.t = int(clock().timestamp())

    @property
    def card_id(self) -> str:
        return next(iter(self.api.cards))

    async def event(self, openid: str, event: str, **extra: str):
        self.t += 1
        return await self.bot.wx.post(card_event(openid, event, self.t, **extra), openid)

    async def take(self, openid: str, code: str = CODE, outer: str = "admin"):
        return await self.event(openid, "user_get_card", CardId=self.card_id,
                                UserCardCode=code, OuterStr=outer, IsGiveByFriend="0")

    async def submit(self, openid: str, code: str = CODE):
        return await self.event(openid, "submit_membercard_user_info", CardId=self.card_id,
                                UserCardCode=code)

    async def updates(self, n: int) -> list:
        return [c.body for c in await self.api.wait_for("/card/membercard/updateuser", n)]

    @property
    def sync(self) -> card_sync.CardSync:
        return self.bot.ctx.card_sync


@pytest.fixture
async def carded(make_bot, fake_api, card_rules, clock):
    bot = await make_bot(rules=card_rules)
    api = CardAPI(bot.ctx.wechat)
    res = await cards.create_card(bot.store, api, card_rules, clock())
    assert res["created"]
    return Card(bot, fake_api, clock)


async def activated(c: Card, openid: str = "o_card", code: str = CODE,
                    phone: str = "13800138000"):
    await c.take(openid, code)
    c.api.set_form(code, mobile=phone, birthday="1990-05-20", sex="女")
    await c.submit(openid, code)
    await c.api.wait_for("/card/membercard/activate", len(c.api.to(
        "/card/membercard/activate")) + 1)
    await settled(c)
    return await c.bot.member(openid)


async def settled(c: Card) -> None:
    """Until the sender has settled every card row it took."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 5
    while loop.time() < end:
        b = await card_sync.backlog(c.bot.store)
        if b[card_sync.PENDING] + b[card_sync.SENDING] == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"card rows not settled: {b}")


# -- 1. definition, create, form ------------------------------------------------------------
def test_the_docs_example_loads_as_it_is_and_errors_name_the_field(card_rules):
    card = card_rules.card
    assert card.brand_name == "示例咖啡" and card.required_form == ("mobile", "birthday")
    assert card.pay_gift is not None and card.prerogative["gold"].startswith("专属客服")
    assert load_rules().card is None  # optional: no section, no card
    base = dict(card_rules.raw)
    for bad, field in ((dict(color="red"), "card.color"), (dict(title="一二三四五六七八九十"),
                       "card.title"), (dict(logo_url="ftp://x"), "card.logo_url"),
                       (dict(form={"required": ["mobile"]}), "card.form.required"),
                       (dict(prerogative={"vip": "x"}), "card.prerogative.vip"),
                       (dict(shape="round"), "card.shape"),
                       (dict(pay_gift={"mchids": []}), "card.pay_gift.mchids")):
        with pytest.raises(RulesError) as exc:
            build_rules({**base, "card": {**base["card"], **bad}})
        assert str(exc.value).startswith(field), (field, str(exc.value))


async def test_create_makes_a_member_card_sets_the_form_and_keeps_the_id(carded, card_rules,
                                                                       clock):
    api = carded.api
    (create,) = api.to("/card/create")
    body = create.body["card"]
    assert body["card_type"] == "MEMBER_CARD"
    mc = body["member_card"]
    assert mc["supply_bonus"] is True and mc["wx_activate"] is True
    assert mc["base_info"]["use_custom_code"] is True
    assert mc["base_info"]["brand_name"] == "示例咖啡" and mc["base_info"]["color"] == "Color010"
    assert mc["custom_field1"]["name"] == "等级" and "金卡会员：专属客服" in mc["prerogative"]
    (form,) = api.to("/card/membercard/activateuserform/set")
    assert form.body["card_id"] == carded.card_id
    assert form.body["required_form"] == {"can_modify": False, "common_field_id_list": [
        "USER_FORM_INFO_FLAG_MOBILE", "USER_FORM_INFO_FLAG_BIRTHDAY"]}
    assert form.body["optional_form"]["common_field_id_list"] == ["USER_FORM_INFO_FLAG_SEX"]
    (pay,) = api.pay_rules  # 支付即会员 is configured in the example
    assert pay["rule_info"]["type"] == "RULE_TYPE_PAY_MEMBER_CARD"
    assert pay["rule_info"]["base_info"]["mchid_list"] == ["1900000109"]
    known = await cards.definition(carded.bot.store)
    assert known["card_id"] == carded.card_id
    # a second create keeps the card; update pushes the definition
    client = CardAPI(carded.bot.ctx.wechat)
    again = await cards.create_card(carded.bot.store, client, card_rules, clock())
    assert not again["created"] and len(api.to("/card/create")) == 1
    await cards.update_card(carded.bot.store, client, card_rules)
    (upd,) = api.to("/card/update")
    assert upd.body["card_id"] == carded.card_id
    assert upd.body["member_card"]["base_info"]["title"] == "示例咖啡会员卡"


# -- 2. opening ------------------------------------------------------------------------------
async def test_member_card_reply_and_menu_carry_a_qr_with_the_member_code(carded):
    bot = carded.bot
    await bot.wx.follow("o_q")
    m = await bot.member("o_q")
    r = await bot.wx.text("o_q", "会员卡")
    assert m.member_code in r.content and "showqrcode" in r.content
    (qr,) = carded.api.to("/card/qrcode/create")
    c = qr.body["action_info"]["card"]
    assert qr.body["action_name"] == "QR_CARD"
    assert (c["card_id"], c["code"], c["outer_str"]) == (carded.card_id, m.member_code, "chat")
    menu = await bot.wx.click("o_q", "MEMBER_CARD")
    assert menu.content == r.content and len(carded.api.to("/card/qrcode/create")) == 1


async def test_without_a_card_section_nothing_changes(bot, fake_api):
    await bot.wx.follow("o_n")
    r = await bot.wx.post(card_event("o_n", "user_get_card", 1, CardId="p1",
                                     UserCardCode="C1"), "o_n")
    assert r.success and (await bot.member("o_n")).card_code is None
    r = await bot.wx.post(card_event("o_new", "user_get_card", 2, CardId="p1",
                                     UserCardCode="C2"), "o_new")
    assert r.success and await bot.member("o_new") is None
    card = await bot.wx.text("o_n", "会员卡")
    assert "会员码" in card.content and "http" not in card.content
    assert not [c for c in fake_api.calls if c.path.startswith("/card/")]
    assert bot.ctx.card_sync is None


# -- 3. events -------------------------------------------------------------------------------
async def test_get_card_binds_a_new_member_and_a_retry_changes_nothing(carded):
    r = await carded.take("o_card", outer="admin")
    assert r.success
    m = await carded.bot.member("o_card")
    assert (m.card_code, m.card_id, m.card_channel, m.card_active) == (
        CODE, carded.card_id, "admin", False)
    xml = card_event("o_card", "user_get_card", carded.t, CardId=carded.card_id,
                     UserCardCode=CODE, OuterStr="admin")
    await carded.bot.wx.post(xml, "o_card")  # WeChat's retry of the same event
    assert len(await carded.bot.ledger("o_card", ["card_get"])) == 1
    bad = await carded.bot.wx.post_raw(carded.bot.wx.query("o_card"), xml)
    assert bad.status in (400, 403)  # safe mode: a plain body is refused
    # a card event without its code is malformed: 400 naming the field, nothing changes
    no_code = card_event("o_new", "user_get_card", carded.t + 1, CardId=carded.card_id)
    params, body = carded.bot.wx.envelope(no_code, carded.bot.wx.query("o_new"))
    r = await carded.bot.wx.post_raw(params, body)
    assert r.status == 400 and "UserCardCode" in r.body
    assert await carded.bot.member("o_new") is None


async def test_the_form_is_stored_rewarded_once_and_the_card_activated(carded):
    m = await activated(carded)
    assert (m.phone, m.birthday, m.gender) == ("13800138000", "1990-05-20", "女")
    assert m.card_active and m.profile_rewarded
    (act,) = carded.api.to("/card/membercard/activate")
    assert act.body["membership_number"] == m.member_code and act.body["code"] == CODE
    assert act.body["init_bonus"] == 50 and act.body["init_custom_field_value1"] == "普通会员"
    assert await carded.bot.store.lookup("phone", "13800138000") == m.id
    # a second submission: nothing more, no second activation, no update
    await carded.submit("o_card")
    await asyncio.sleep(0.2)
    assert len(await carded.bot.ledger("o_card", ["credit"])) == 1
    assert len(carded.api.to("/card/membercard/activate")) == 1
    assert carded.api.to("/card/membercard/updateuser") == []
    # the birthday from a later chat is refused as before
    again = await carded.bot.wx.text("o_card", "生日 1991-01-01")
    assert "不能修改" in again.content


async def test_delete_unbinds_keeps_data_and_update_member_card_is_recorded(carded):
    await activated(carded)
    await carded.event("o_card", "update_member_card", CardId=carded.card_id,
                       UserCardCode=CODE, ModifyBonus="0", ModifyBalance="0")
    assert len(await carded.bot.ledger("o_card", ["card_updated"])) == 1
    await carded.event("o_card", "user_del_card", CardId=carded.card_id, UserCardCode=CODE)
    m = await carded.bot.member("o_card")
    assert m.card_code is None and not m.card_active and m.phone == "13800138000"
    await carded.bot.ctx.members.adjust_points(m.id, 10, "测试", "alice", carded.clock(),
                                               key="a1")
    await asyncio.sleep(0.2)
    assert carded.api.to("/card/membercard/updateuser") == []  # not a card holder any more
    ghost = await carded.event("o_ghost", "user_del_card", CardId=carded.card_id,
                               UserCardCode="X")
    assert ghost.success and await carded.bot.member("o_ghost") is None
    # taken back from the wallet's history: active again, the whole state sent, no delta
    await carded.event("o_card", "user_get_card", CardId=carded.card_id, UserCardCode=CODE,
                       OuterStr="", IsRestoreMemberCard="1")
    (body,) = await carded.updates(1)
    assert (body["bonus"], body["add_bonus"], body["custom_field_value1"]) == (60, 0, "普通会员")
    assert (await carded.bot.member("o_card")).card_active


# -- 4. sync ---------------------------------------------------------------------------------
def balance_of(m, c: Card) -> int:
    from bot.rules import points
    from bot.rules.timeutil import local_day

    return points.balance(m, local_day(c.clock(), c.bot.ctx.rules.tz))


async def test_each_change_is_one_update_with_the_right_absolute_bonus(carded):
    c = carded
    m = await activated(c)
    members, now = c.bot.ctx.members, c.clock
    seen = 0

    async def one(why: str, tier: str | None = None) -> dict:
        nonlocal seen
        seen += 1
        body = (await c.updates(seen))[-1]
        await asyncio.sleep(0.05)
        assert len(c.api.to("/card/membercard/updateuser")) == seen  # exactly one per change
        mm = await c.bot.member("o_card")
        assert body["bonus"] == balance_of(mm, c) and body["code"] == CODE
        assert body["record_bonus"] == why and len(body["record_bonus"]) <= 14
        assert body["card_id"] == c.card_id
        if tier:
            assert body["custom_field_value1"] == tier
        return body

    r = await c.bot.wx.text("o_card", "签到")
    assert "签到成功" in r.content
    b = await one("签到奖励")
    assert (b["bonus"], b["add_bonus"]) == (55, 5) and "custom_field_value1" not in b
    assert b["notify_optional"]["is_notify_bonus"] is True
    await members.record_order(m.id, "ord-1", 400_000, now(), now())  # ¥4000: 银卡
    b = await one("消费积分", tier="银卡会员")
    assert b["add_bonus"] == 4000 and b["bonus"] == 4055
    await members.refund("ord-1", "ref-1", 100_000, now())
    b = await one("退款扣回积分")
    assert b["add_bonus"] < 0
    await members.exchange(m.id, 1, now(), key="ex-1")
    b = await one("积分兑换")
    assert b["add_bonus"] == -500
    c.clock.advance(days=800)  # every lot expired, tier lapsed after its grace
    await members.refresh(m.id, c.clock())
    b = await one("积分过期")
    assert b["bonus"] == 0 and b["add_bonus"] < 0
    holder = c.api.holders[CODE]
    assert holder["bonus"] == 0 and holder["field1"] == (await c.bot.member("o_card")).tier \
        or holder["field1"] == c.bot.ctx.rules.tier((await c.bot.member("o_card")).tier).name


async def test_a_burst_is_coalesced_never_backwards_and_ends_on_the_final_balance(carded):
    c = carded
    m = await activated(c)
    members = c.bot.ctx.members
    for i in range(30):  # as fast as the store takes them, the sender running
        await members.adjust_points(m.id, 1 + i, "活动", "alice", c.clock(), key=f"b{i}")
    final = balance_of(await c.bot.member("o_card"), c)
    assert final == 50 + sum(range(1, 31))
    loop = asyncio.get_running_loop()
    end = loop.time() + 5
    while c.api.holders[CODE]["bonus"] != final and loop.time() < end:
        await asyncio.sleep(0.02)
    bodies = [x.body for x in c.api.to("/card/membercard/updateuser")]
    assert bodies and bodies[-1]["bonus"] == final
    assert [b["bonus"] for b in bodies] == sorted(b["bonus"] for b in bodies)  # never back
    assert sum(b["add_bonus"] for b in bodies) == final - 50  # every delta told once
    # a backlog (the sender held) goes out as one call carrying the latest state
    await c.sync.stop()
    for i in range(30):
        await members.adjust_points(m.id, -1, "活动", "alice", c.clock(), key=f"d{i}")
    before = len(c.api.to("/card/membercard/updateuser"))
    await c.sync.drain()
    after = [x.body for x in c.api.to("/card/membercard/updateuser")][before:]
    assert len(after) == 1 and after[0]["bonus"] == final - 30 and after[0]["add_bonus"] == -30
    assert after[0]["record_bonus"] == "积分调整"
    assert await card_sync.backlog(c.bot.store) == {card_sync.PENDING: 0, card_sync.SENDING: 0,
                                                    card_sync.FAILED: 0}


async def test_a_crash_between_commit_and_call_is_sent_once_after_restart(make_bot, fake_api,
                                                                        card_rules, clock,
                                                                        tmp_path):
    first = await make_bot(rules=card_rules)
    await cards.create_card(first.store, CardAPI(first.ctx.wechat), card_rules,
                            clock())
    c = Card(first, fake_api, clock)
    m = await activated(c)
    await c.sync.stop()  # the process dies before it sends: the rows stay committed
    first.ctx.members.on_card = None
    await first.ctx.members.adjust_points(m.id, 7, "补偿", "alice", clock(), key="k1")
    await first.ctx.members.adjust_points(m.id, 3, "补偿", "alice", clock(), key="k2")
    assert fake_api.to("/card/membercard/updateuser") == []
    # another row was in flight when it died: sent again with the absolute bonus, no delta
    second = await make_bot(rules=card_rules)  # the same SQLite store: a restart
    (body,) = [x.body for x in await fake_api.wait_for("/card/membercard/updateuser", 1)]
    await asyncio.sleep(0.3)
    assert len(fake_api.to("/card/membercard/updateuser")) == 1
    assert (body["bonus"], body["add_bonus"]) == (60, 10)
    assert second.ctx.card_sync is not None
    rows = await second.store.outbox(status=card_sync.SENT, limit=100)
    assert len([r for r in rows if r.kind == "card"]) == 3  # activation + two coalesced


async def test_an_update_in_flight_at_a_crash_is_resent_without_its_delta(carded):
    c = carded
    m = await activated(c)
    await c.sync.stop()
    c.bot.ctx.members.on_card = None
    await c.bot.ctx.members.adjust_points(m.id, 9, "补偿", "alice", c.clock(), key="k9")
    (row,) = await c.bot.store.outbox(status=card_sync.PENDING, limit=10)
    assert await c.bot.store.outbox_set(row.id, card_sync.SENDING, {"by": "dead"},
                                        expect=card_sync.PENDING)
    await c.sync.drain()
    (body,) = await c.updates(1)
    assert (body["bonus"], body["add_bonus"]) == (59, 0)
    assert body["notify_optional"]["is_notify_bonus"] is False


async def test_42001_mid_sync_refreshes_once_and_everything_is_delivered(carded):
    c = carded
    holders = []
    for i in range(3):
        code = f"C-{i}"
        holders.append(await activated(c, f"o_{i}", code, f"1390013900{i}"))
    await c.sync.stop()
    for i, m in enumerate(holders):
        await c.bot.ctx.members.adjust_points(m.id, 10 + i, "活动", "alice", c.clock(),
                                              key=f"t{i}")
    fetches = c.api.token_fetches
    c.api.fail_next(42001)
    done = await c.sync.drain()
    assert done["sent"] == 3, done
    assert c.api.token_fetches == fetches + 1
    assert {c.api.holders[f"C-{i}"]["bonus"] for i in range(3)} == {60, 61, 62}


async def test_45009_holds_40056_unbinds_and_other_errors_are_recorded(carded):
    c = carded
    m = await activated(c)
    await c.sync.stop()
    members = c.bot.ctx.members
    await members.adjust_points(m.id, 5, "活动", "alice", c.clock(), key="e1")
    c.api.fail_next(45009)
    assert (await c.sync.drain())["rate_limited"] == 1
    assert await c.sync.paused()
    assert (await card_sync.backlog(c.bot.store))[card_sync.PENDING] == 1
    await c.bot.store.kv_delete(keys.CARD_PAUSED)
    c.api.fail_next(40099)
    assert (await c.sync.drain())["failed"] == 1
    assert (await card_sync.backlog(c.bot.store))[card_sync.FAILED] == 1
    await members.adjust_points(m.id, 5, "活动", "alice", c.clock(), key="e2")
    c.api.invalid_codes.add(CODE)
    assert (await c.sync.drain())["unbound"] == 1
    after = await c.bot.member("o_card")
    assert after.card_code is None and not after.card_active and after.phone
    await members.adjust_points(m.id, 5, "活动", "alice", c.clock(), key="e3")
    assert await c.bot.store.outbox(status=card_sync.PENDING, limit=10) == []


# -- 5. operators ----------------------------------------------------------------------------
async def test_report_counts_holders_and_activation(carded):
    from bot import analytics

    await activated(carded)
    await carded.take("o_other", "C-9")
    fig = await analytics.card_figures(carded.bot.store, carded.bot.ctx.rules)
    assert (fig["holders"], fig["activated"], fig["activation_rate"]) == (2, 1, 0.5)


async def test_admin_shows_the_qr_holders_backlog_and_failures(make_bot, fake_api, card_rules,
                                                               clock):
    bot = await make_bot(rules=card_rules, admin_password="pw-for-the-card-test")
    page = await bot.client.post("/admin/login", data={"password": "pw-for-the-card-test",
                                                       "next": "/admin"})
    text = await page.text()
    assert "微信会员卡" in text and "memberbot card create" in text  # not created yet
    await cards.create_card(bot.store, CardAPI(bot.ctx.wechat), card_rules, clock())
    c = Card(bot, fake_api, clock)
    m = await activated(c)
    await c.take("o_2", "C-2")
    await c.sync.stop()
    await bot.ctx.members.adjust_points(m.id, 5, "x", "alice", clock(), key="adm1")
    text = await (await bot.client.get("/admin")).text()
    assert 'data-card-qr' in text and "showqrcode?ticket=CARDTICKETadmin" in text
    assert re.search(r'data-card="holders">2<', text)
    assert re.search(r'data-card="activated">1<', text)
    assert re.search(r'data-card="backlog">1<', text)
    fake_api.fail_next(40099)
    await c.sync.drain()
    text = await (await bot.client.get("/admin")).text()
    assert re.search(r'data-card="failed">1<', text) and "40099" in text
    assert re.search(r'data-card="backlog">0<', text)
