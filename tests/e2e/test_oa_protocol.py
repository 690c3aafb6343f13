"""WeChat's callback contract: verification, signatures, size, hostile XML, safe-mode crypto
cross-checked with WeRoBot, and the same path over a real listening socket."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from werobot.crypto import MessageCrypt

from bot.handlers.wxproto import SafeMode, parse_xml, text_reply
from bot.web import create_app

from .conftest import AES_KEY, APPID, TOKEN, oa_settings
from .wechat_client import WeChat, event_xml, text_xml

BOMB = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
                  for i in range(1, 10))
        + ']><xml><ToUserName>gh</ToUserName><FromUserName>o_evil</FromUserName>'
          '<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&lol9;</Content>'
          '<MsgId>1</MsgId></xml>')
XXE = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       '<xml><ToUserName>gh</ToUserName><FromUserName>o_evil</FromUserName>'
       '<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&xxe;</Content>'
       '<MsgId>2</MsgId></xml>')
TRUNCATED = text_xml("o_evil", "签到")[:-17]


async def nothing_written(bot) -> None:
    assert await bot.store.count_members() == 0
    assert await bot.store.ledger() == []
    assert await bot.store.lookup("openid", "o_evil") is None


async def test_get_verification(bot):
    assert await bot.wx.verify("hello-echo") == (200, "hello-echo")
    status, _ = await bot.wx.verify("hello-echo", good=False)
    assert status == 403


async def test_forged_signatures_are_403_and_change_nothing(bot):
    xml = text_xml("o_evil", "签到")
    params, body = bot.wx.envelope(xml, bot.wx.query("o_evil"))
    forged = {**params, "signature": "f" * 40}
    assert (await bot.wx.post_raw(forged, body)).status == 403
    assert (await bot.wx.post_raw({k: v for k, v in params.items() if k != "signature"},
                                  body)).status == 403
    bad_msg_sig = {**params, "msg_signature": "0" * 40}
    assert (await bot.wx.post_raw(bad_msg_sig, body)).status == 403
    # a plain message to a safe-mode account: the signature covers no body, so refuse it
    assert (await bot.wx.post_raw(bot.wx.query("o_evil"), xml)).status == 403
    other_token = WeChat(bot.client, "not-the-token", aes_key=AES_KEY, appid=APPID)
    assert (await other_token.text("o_evil", "签到")).status == 403
    await nothing_written(bot)


async def test_oversized_body_is_413(bot):
    pad = "x" * (70 * 1024)
    xml = text_xml("o_evil", pad)
    assert (await bot.wx.post_raw(bot.wx.query("o_evil"), xml)).status == 413

    async def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(70):
            yield b"x" * 1024

    async with bot.client.post("/wechat", params=bot.wx.query("o_evil"), data=chunks()) as r:
        assert r.status == 413
    await nothing_written(bot)


@pytest.mark.parametrize("xml", [BOMB, XXE, TRUNCATED, "", "not xml", "<html></html>",
                                 "<xml><Content>x</Content></xml>"],
                         ids=["billion-laughs", "xxe", "truncated", "empty", "text", "html",
                              "fields-missing"])
async def test_hostile_or_malformed_xml_is_400(make_bot, xml):
    plain = await make_bot(safe=False)
    assert (await plain.wx.post_raw(plain.wx.query("o_evil"), xml)).status == 400
    await nothing_written(plain)


@pytest.mark.parametrize("xml", [BOMB, XXE, TRUNCATED], ids=["billion-laughs", "xxe",
                                                              "truncated"])
async def test_hostile_xml_inside_the_encrypted_envelope_is_400(bot, xml):
    params, body = bot.wx.envelope(xml, bot.wx.query("o_evil"))
    assert (await bot.wx.post_raw(params, body)).status == 400
    await nothing_written(bot)


async def test_wrong_aes_key_is_400(bot):
    other_key = "B" * 43
    stranger = WeChat(bot.client, TOKEN, aes_key=other_key, appid=APPID)
    assert (await stranger.text("o_evil", "签到")).status == 400
    wrong_app = WeChat(bot.client, TOKEN, aes_key=AES_KEY, appid="wxsomeoneelse")
    assert (await wrong_app.text("o_evil", "签到")).status == 400
    await nothing_written(bot)


async def test_werobot_encrypts_memberbot_decrypts_and_back(make_bot):
    bot = await make_bot(crypto="werobot")  # the test WeChat uses WeRoBot's MessageCrypt
    r = await bot.wx.follow("o_w")
    assert "欢迎" in r.content
    r = await bot.wx.text("o_w", "签到")
    assert "签到成功" in r.content


def test_protocol_primitives_agree_with_werobot():
    ours = SafeMode(TOKEN, AES_KEY, APPID)
    theirs = MessageCrypt(TOKEN, AES_KEY, APPID)
    reply = text_reply("o_x", "gh_x", "你好 ]]> <b>", 1700000000)
    env = ours.encrypt(reply, "1700000000", "nonce1")
    f = parse_xml(env)
    out = theirs.decrypt_message(f["TimeStamp"], f["Nonce"], f["MsgSignature"], f["Encrypt"])
    assert out.decode() == reply
    assert parse_xml(out)["Content"] == "你好 ]]> <b>"
    env2 = theirs.encrypt_message(event_xml("o_x", "subscribe"), "1700000001", "nonce2")
    f2 = parse_xml(env2)
    back = ours.decrypt(f2["Encrypt"], f2["MsgSignature"], "1700000001", "nonce2")
    assert parse_xml(back)["Event"] == "subscribe"


async def test_the_same_path_over_a_real_socket(tmp_path, fake_api, clock):
    settings = oa_settings(tmp_path, fake_api)
    runner = web.AppRunner(create_app(settings, clock=clock))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as http:
            wx = WeChat(http, TOKEN, aes_key=AES_KEY, appid=APPID,
                        base=f"http://127.0.0.1:{port}")
            assert "欢迎" in (await wx.follow("o_net")).content
            assert "签到成功" in (await wx.text("o_net", "签到")).content
            assert (await wx.verify("x1"))[1] == "x1"
            big = text_xml("o_net", "y" * (70 * 1024))
            assert (await wx.post_raw(wx.query("o_net"), big)).status == 413
    finally:
        await runner.cleanup()
