"""The public learns nothing internal: /healthz, /metrics, the Server header, 400 texts
(issue 15, item 7)."""

from __future__ import annotations

import re

from bot.web import create_app
from tests.conftest import make_settings
from tests.e2e.conftest import APPID, oa_settings
from tests.e2e.wechat_client import Crypto, event_xml

CLASS_NAME = re.compile(r"\b\w*(Exception|Error|Forbidden)\b|Traceback")


async def test_public_healthz_shows_only_ok_store_kind_and_scheduler(aiohttp_client, tmp_path):
    app = create_app(make_settings(tmp_path, admin_password="pw"))
    client = await aiohttp_client(app)
    r = await client.get("/healthz")
    body = await r.json()
    assert r.status == 200 and set(body) == {"ok", "store", "pid", "scheduler_leader"}
    assert body["ok"] is True and body["store"] == "sqlite"
    assert str(tmp_path) not in await r.text()
    assert (await client.get("/admin/health", allow_redirects=False)).status == 303
    await client.post("/admin/login", data={"password": "pw"})
    details = await (await client.get("/admin/health")).json()
    assert str(tmp_path) in details["store_status"]["path"]


async def test_metrics_only_for_loopback_a_network_or_the_token(aiohttp_client, tmp_path):
    app = create_app(make_settings(tmp_path, metrics_token="s3cret",
                                   trusted_proxies="127.0.0.1", metrics_networks="10.1.0.0/16"))
    client = await aiohttp_client(app)
    assert (await client.get("/metrics")).status == 200  # straight from this machine
    proxied = {"X-Forwarded-For": "203.0.113.5"}
    r = await client.get("/metrics", headers=proxied)
    assert r.status == 403 and "memberbot_" not in await r.text()
    assert (await client.get("/metrics", headers={**proxied, "Authorization": "Bearer no"})
            ).status == 403
    assert (await client.get("/metrics", headers={**proxied, "Authorization": "Bearer s3cret"})
            ).status == 200
    assert (await client.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})).status == 200
    assert (await client.get("/metrics", headers={"Authorization": "Bearer é"})).status == 200


async def test_no_server_header_names_python_or_aiohttp(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(make_settings(tmp_path)))
    for path in ("/healthz", "/nowhere", "/api/nowhere", "/admin"):
        r = await client.get(path, allow_redirects=False)
        server = r.headers.get("Server", "")
        assert "aiohttp" not in server and "Python" not in server, (path, server)


async def test_400_bodies_say_what_was_wrong_in_words(make_bot, tmp_path):
    plain = await make_bot(safe=False)
    bodies = [
        b'<!DOCTYPE x [<!ENTITY a "b">]><xml><ToUserName>&a;</ToUserName></xml>',
        "<xml><Content>中文</Content></xml>".encode("gbk"),
        b'<?xml version="1.0" encoding="klingon"?><xml/>',
        b"<xml><unclosed></xml>",
        b"\xff\xfe\x00<",
    ]
    for body in bodies:
        r = await plain.wx.post_raw(plain.wx.query("o_x"), body)
        assert r.status == 400 and not CLASS_NAME.search(r.body), r.body
    safe = await make_bot(path=tmp_path / "safe")
    other = Crypto(safe.settings.wechat_token, safe.settings.wechat_aes_key, APPID + "x")
    q = safe.wx.query("o_y")
    env = other.encrypt(event_xml("o_y", "subscribe"), q["timestamp"], q["nonce"])
    enc = env.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    sig = env.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    r = await safe.wx.post_raw({**q, "encrypt_type": "aes", "msg_signature": sig},
                               f"<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>")
    assert r.status == 400 and "AppID" in r.body and not CLASS_NAME.search(r.body), r.body


async def test_a_wecom_message_for_another_corp_is_400_in_words(aiohttp_client, tmp_path):
    from wechatpy.enterprise.crypto import WeChatCrypto

    key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    settings = oa_settings(tmp_path, None, wecom_token="wt", wecom_aes_key=key,
                           wecom_corp_id="wwcorp")
    client = await aiohttp_client(create_app(settings))
    import time

    ts = str(int(time.time()))
    env = WeChatCrypto("wt", key, "wwother").encrypt_message("<xml/>", "nn", ts)
    enc = env.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    sig = env.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    r = await client.post("/wecom", params={"msg_signature": sig, "timestamp": ts,
                                            "nonce": "nn"},
                          data=f"<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>")
    text = await r.text()
    assert r.status == 400 and not CLASS_NAME.search(text), text
