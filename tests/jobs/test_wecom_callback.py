"""/wecom end to end: callbacks encrypted and signed as WeCom does, against the fake WeCom API.
The welcome goes out with the event's WelcomeCode before the callback answers."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time

import pytest
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.handlers.wecom import WECOM
from bot.web import CTX, create_app
from tests.fakes.wecom_api import WELCOME

from .conftest import wecom_settings

AES_KEY = base64.b64encode(bytes(range(1, 33))).decode().rstrip("=")
TOKEN = "wecomtoken"


class WeCom:
    """The WeCom side of the callback: encrypts, signs and posts events."""

    def __init__(self, client, corp_id: str) -> None:
        self.client = client
        self.corp_id = corp_id
        self.crypto = WeChatCrypto(TOKEN, AES_KEY, corp_id)

    def _sign(self, xml: str) -> tuple[dict, str]:
        import xml.etree.ElementTree as ET

        ts, nonce = str(int(time.time())), secrets.token_hex(5)  # WeCom's nonce: once
        env = ET.fromstring(self.crypto.encrypt_message(xml, nonce, ts))
        q = {"msg_signature": env.findtext("MsgSignature"), "timestamp": ts, "nonce": nonce}
        body = (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName><AgentID>1000002"
                f"</AgentID><Encrypt><![CDATA[{env.findtext('Encrypt')}]]></Encrypt></xml>")
        return q, body

    async def event(self, change: str, eu: str, staff: str, *, code: str = "",
                    created: int = 1764000000, state: str = "",
                    fail_reason: str = "") -> object:
        xml = (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName><FromUserName>"
               f"<![CDATA[sys]]></FromUserName><CreateTime>{created}</CreateTime><MsgType>"
               f"<![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event>"
               f"<ChangeType><![CDATA[{change}]]></ChangeType><UserID><![CDATA[{staff}]]>"
               f"</UserID><ExternalUserID><![CDATA[{eu}]]></ExternalUserID>"
               + (f"<WelcomeCode><![CDATA[{code}]]></WelcomeCode>" if code else "")
               + (f"<State><![CDATA[{state}]]></State>" if state else "")
               + (f"<FailReason><![CDATA[{fail_reason}]]></FailReason>" if fail_reason
                  else "")
               + "</xml>")
        q, body = self._sign(xml)
        return await self.client.post("/wecom", params=q, data=body)

    async def staff_deleted(self, staff: str, *, created: int = 1764000000) -> object:
        """The address book's ``change_contact`` / ``delete_user``: ``staff`` left."""
        xml = (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName><FromUserName>"
               f"<![CDATA[sys]]></FromUserName><CreateTime>{created}</CreateTime><MsgType>"
               f"<![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>"
               f"<ChangeType><![CDATA[delete_user]]></ChangeType><UserID><![CDATA[{staff}]]>"
               f"</UserID></xml>")
        q, body = self._sign(xml)
        return await self.client.post("/wecom", params=q, data=body)


@pytest.fixture
async def app_client(aiohttp_client, tmp_path, fake):
    async def make(**over):
        settings = wecom_settings(tmp_path, fake, wecom_token=TOKEN, wecom_aes_key=AES_KEY,
                                  **over)
        client = await aiohttp_client(create_app(settings))
        return client, WeCom(client, fake.corp_id)

    return make


def contact(unionid: str | None, *staff: str) -> dict:
    ext = {"external_userid": "x", "name": "客户", "type": 1}
    if unionid:
        ext["unionid"] = unionid
    return {"external_contact": ext, "follow_user": [{"userid": s} for s in staff]}


async def test_url_verification_answers_the_decrypted_echostr(app_client, fake):
    client, wc = await app_client()
    echo = wc.crypto.encrypt_message("<x/>", "n", "1").split("<Encrypt><![CDATA[")[1] \
        .split("]]>")[0]
    from bot.handlers.wxproto import signature

    ts = str(int(time.time()))
    q = {"msg_signature": signature(TOKEN, ts, "n", echo), "timestamp": ts, "nonce": "n",
         "echostr": echo}
    r = await client.get("/wecom", params=q)
    assert r.status == 200 and await r.text() == "<x/>"
    r = await client.get("/wecom", params={**q, "msg_signature": "0" * 40})
    assert r.status == 403


async def test_a_new_contact_is_linked_to_the_oa_member_and_welcomed_at_once(
        app_client, fake):
    client, wc = await app_client()
    ctx = client.server.app[CTX]
    reg = await ctx.members.register("o-1", ctx.now(), unionid="union-1")
    fake.contacts["ext-1"] = contact("union-1", "alice", "bob")
    before = await ctx.store.count_members()
    r = await wc.event("add_external_contact", "ext-1", "alice", code="WC-1")
    assert r.status == 200 and await r.text() == "success"
    (welcome,) = fake.to(WELCOME)  # sent before the callback answered
    assert welcome.body["welcome_code"] == "WC-1"
    assert "普通会员" in welcome.body["text"]["content"]
    assert reg["member_code"] in welcome.body["text"]["content"]
    assert await ctx.store.count_members() == before  # linked, never duplicated
    m = await ctx.store.get(reg["member_id"])
    assert (m.external_userid, m.owner_userid, m.follow_users) == ("ext-1", "alice",
                                                                    ["alice", "bob"])
    # WeCom retries the same event: nothing happens twice
    r = await wc.event("add_external_contact", "ext-1", "alice", code="WC-1")
    assert r.status == 200 and len(fake.to(WELCOME)) == 1
    assert await ctx.store.count_members() == before
    rows = await ctx.store.outbox(kind="welcome")
    assert [(r.status, r.data["result"]) for r in rows] == [("sent", "sent")]


async def test_a_contact_without_unionid_becomes_a_member_with_the_new_member_coupon(
        app_client, fake):
    client, wc = await app_client()
    ctx = client.server.app[CTX]
    fake.contacts["ext-2"] = contact(None, "alice")
    r = await wc.event("add_half_external_contact", "ext-2", "alice", code="WC-2")
    assert r.status == 200
    mid = await ctx.store.lookup("external_userid", "ext-2")
    m = await ctx.store.get(mid)
    assert m.owner_userid == "alice" and not m.followed and m.openid is None
    text = fake.to(WELCOME)[0].body["text"]["content"]
    assert m.member_code in text and "新人券" in text
    assert [c.template for c in m.coupons] == ["welcome"]


async def test_a_used_welcome_code_is_recorded_not_retried(app_client, fake):
    client, wc = await app_client()
    ctx = client.server.app[CTX]
    fake.contacts["ext-3"] = contact("union-3", "alice")
    fake._codes.add("WC-3")  # another app used it first
    r = await wc.event("add_external_contact", "ext-3", "alice", code="WC-3")
    assert r.status == 200 and len(fake.to(WELCOME)) == 1
    mid = await ctx.store.lookup("external_userid", "ext-3")
    (entry,) = await ctx.store.ledger(member_id=mid, kinds=["welcome"])
    assert entry.data == {"staff": "alice", "result": "code_used", "error": 41051}
    assert [r.status for r in await ctx.store.outbox(kind="welcome")] == ["failed"]


async def test_a_failed_lookup_still_welcomes_at_once_and_links_later(app_client, fake):
    client, wc = await app_client()
    ctx = client.server.app[CTX]
    cb = client.server.app[WECOM]
    cb.link_retry_delays = (0.01, 0.01)
    fake.contacts["ext-4"] = contact("union-4", "alice")
    fake.fail_next(50001, 1, "/cgi-bin/externalcontact/get")
    r = await wc.event("add_external_contact", "ext-4", "alice", code="WC-4")
    assert r.status == 200
    assert "专属顾问" in fake.to(WELCOME)[0].body["text"]["content"]
    m = None
    for _ in range(1000):  # the link lands in the background: up to 10 s on a loaded machine
        mid = await ctx.store.lookup("external_userid", "ext-4")
        m = await ctx.store.get(mid) if mid else None
        if m is not None and m.unionid:
            break
        await asyncio.sleep(0.01)
    assert m is not None and m.unionid == "union-4" and m.owner_userid == "alice"


async def test_removing_the_staff_drops_the_relation(app_client, fake):
    client, wc = await app_client()
    ctx = client.server.app[CTX]
    fake.contacts["ext-5"] = contact("union-5", "alice", "bob")
    await wc.event("add_external_contact", "ext-5", "alice")
    await wc.event("del_follow_user", "ext-5", "alice", created=1764000100)
    m = await ctx.store.get(await ctx.store.lookup("external_userid", "ext-5"))
    assert (m.owner_userid, m.follow_users) == ("bob", ["bob"])
    await wc.event("del_external_contact", "ext-5", "bob", created=1764000200)
    m = await ctx.store.get(m.id)
    assert (m.owner_userid, m.follow_users) == (None, [])


async def test_bad_input_is_refused_and_changes_nothing(app_client, fake):
    client, wc = await app_client()
    ctx = client.server.app[CTX]
    q, body = wc._sign("<xml><MsgType>event</MsgType></xml>")
    r = await client.post("/wecom", params={**q, "msg_signature": "0" * 40}, data=body)
    assert r.status == 403
    r = await client.post("/wecom", params=q, data="<xml><Encrypt>")
    assert r.status == 400
    bomb = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
            "<xml><Encrypt>&b;</Encrypt></xml>")
    r = await client.post("/wecom", params=q, data=bomb)
    assert r.status == 400
    r = await client.post("/wecom", params=q, data="<xml><Encrypt>" + "A" * 70_000 +
                          "</Encrypt></xml>")
    assert r.status == 413
    assert await ctx.store.count_members() == 0 and fake.calls == []


async def test_unconfigured_callback_says_so(aiohttp_client, tmp_path, fake):
    client = await aiohttp_client(create_app(wecom_settings(tmp_path, fake)))
    r = await client.post("/wecom", data="<xml/>")
    assert r.status == 503


async def test_an_invalid_secret_shows_on_healthz(app_client, fake):
    client, wc = await app_client(wecom_secret="wrong", admin_password="pw")
    fake.contacts["ext-6"] = contact("union-6", "alice")
    r = await wc.event("add_external_contact", "ext-6", "alice", code="WC-6")
    assert r.status == 200  # WeCom is answered; the problem is for the operator
    r = await client.get("/healthz")
    body = await r.json()
    assert r.status == 503 and body["ok"] is False and "40001" not in await r.text()
    await client.post("/admin/login", data={"password": "pw"})  # the details are for admins
    r = await client.get("/admin/health")
    body = await r.json()
    assert r.status == 503 and "40001" in body["problems"]["wecom"]
    assert fake.token_fetches == 1 and not fake.to(WELCOME)
