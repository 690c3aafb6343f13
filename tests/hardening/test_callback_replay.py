"""Signed callbacks expire and their nonce is used by one body only, in plain and safe mode,
on /wechat and /wecom, across processes sharing a store (issue 15, item 2)."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET

import pytest
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.web import create_app
from storage import open_store
from tests.conftest import REDIS_URL, make_settings
from tests.e2e.conftest import oa_settings
from tests.e2e.wechat_client import WeChat, event_xml, text_xml

OLD = "1500000000"  # 2017


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
async def test_a_signed_callback_from_2017_is_refused(make_bot, safe):
    bot = await make_bot(safe=safe)
    for ts in (OLD, str(int(time.time()) + 301), str(int(time.time()) - 301), "1e9", "١٢"):
        params, body = bot.wx.envelope(event_xml("o_old", "subscribe"), bot.wx.query("o_old", ts))
        r = await bot.wx.post_raw(params, body)
        assert r.status == 403 and "timestamp" in r.body, ts
    assert await bot.member("o_old") is None
    status, _ = await bot.wx.verify()
    assert status == 200
    q = bot.wx.query("", OLD)
    async with bot.client.get("/wechat", params={**q, "echostr": "x"}) as r:
        assert r.status == 403


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
async def test_a_nonce_is_good_for_one_body_and_its_retries(make_bot, safe):
    bot = await make_bot(safe=safe)
    await bot.wx.follow("o_n")
    q = bot.wx.query("o_n")
    params, body = bot.wx.envelope(text_xml("o_n", "签到"), q)
    first = await bot.wx.post_raw(params, body)
    again = await bot.wx.post_raw(params, body)  # WeChat's retry: the same URL and body
    assert first.status == again.status == 200 and first.body
    # plain mode: the URL's signature does not cover the body, so swap it
    params2, body2 = bot.wx.envelope(text_xml("o_n", "生日 1990-01-02"), q)
    r = await bot.wx.post_raw(params if not safe else params2, body2)
    assert r.status == 403 and "nonce" in r.body
    assert (await bot.member("o_n")).birthday is None


async def test_a_used_nonce_is_refused_by_another_process_on_the_same_store(
        aiohttp_client, tmp_path, clock):
    import redis.asyncio as aioredis

    r = aioredis.from_url(REDIS_URL)
    await r.flushdb()
    await r.aclose()
    settings = oa_settings(tmp_path, None, safe=False, store_url=REDIS_URL)
    one = await aiohttp_client(create_app(settings, clock=clock))
    two = await aiohttp_client(create_app(settings, clock=clock))
    wx1, wx2 = (WeChat(c, settings.wechat_token) for c in (one, two))
    q = wx1.query("o_p")
    assert (await wx1.post_raw(q, event_xml("o_p", "subscribe"))).status == 200
    r = await wx2.post_raw(q, text_xml("o_p", "退订"))
    assert r.status == 403
    store = open_store(REDIS_URL, settings.data_key)
    async with store:
        m = await store.get(await store.lookup("openid", "o_p"))
    assert m.opted_out is False


async def test_on_sqlite_a_nonce_is_stored_before_its_reply_and_refused_after_a_restart(
        make_bot, tmp_path):
    """On SQLite the nonce's write shares the message's group commit (issue 16): it is in the
    store when the reply has left, and a process that never saw it refuses another body."""
    from bot import keys

    bot = await make_bot(safe=False, path=tmp_path)
    await bot.wx.follow("o_r")
    q, body = bot.wx.query("o_r"), text_xml("o_r", "签到")
    first = await bot.wx.post_raw(q, body)
    assert first.status == 200
    key = keys.callback_nonce("wechat", q["timestamp"], q["nonce"])
    assert await bot.store.kv_get(key)
    later = await make_bot(safe=False, path=tmp_path)  # a restart: nothing in memory
    r = await later.wx.post_raw(q, text_xml("o_r", "退订"))
    assert r.status == 403 and "nonce" in r.body
    again = await later.wx.post_raw(q, body)  # WeChat's retry of the first
    assert again.status == 200
    assert (await bot.member("o_r")).opted_out is False


async def test_two_bodies_under_one_nonce_at_once_only_one_is_answered(make_bot):
    bot = await make_bot(safe=False)
    await bot.wx.follow("o_c")
    q = bot.wx.query("o_c")
    got = await asyncio.gather(bot.wx.post_raw(q, text_xml("o_c", "退订")),
                               bot.wx.post_raw(q, text_xml("o_c", "签到")))
    assert sorted(r.status for r in got) == [200, 403]


WECOM_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


async def test_wecom_refuses_stale_timestamps_and_reused_nonces(aiohttp_client, tmp_path):
    settings = make_settings(tmp_path, wecom_token="wt", wecom_aes_key=WECOM_KEY,
                             wecom_corp_id="wwcorp")
    client = await aiohttp_client(create_app(settings))
    crypto = WeChatCrypto("wt", WECOM_KEY, "wwcorp")

    def signed(xml: str, ts: str, nonce: str) -> tuple[dict, str]:
        env = ET.fromstring(crypto.encrypt_message(xml, nonce, ts))
        return ({"msg_signature": env.findtext("MsgSignature"), "timestamp": ts,
                 "nonce": nonce},
                f"<xml><Encrypt><![CDATA[{env.findtext('Encrypt')}]]></Encrypt></xml>")

    ev = "<xml><MsgType>event</MsgType><Event>other_{}</Event></xml>"
    q, body = signed(ev.format(1), OLD, "n1")
    assert (await client.post("/wecom", params=q, data=body)).status == 403
    now = str(int(time.time()))
    q, body = signed(ev.format(2), now, "n2")
    assert (await client.post("/wecom", params=q, data=body)).status == 200
    assert (await client.post("/wecom", params=q, data=body)).status == 200  # a retry
    q, body = signed(ev.format(3), now, "n2")
    r = await client.post("/wecom", params=q, data=body)
    assert r.status == 403 and "nonce" in await r.text()
