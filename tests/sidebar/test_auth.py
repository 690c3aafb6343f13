"""Staff identity and JS-SDK signatures against the fake WeCom API (a real local server):
the exact authorize redirect, the code exchange, the session cookie, bad and reused states,
and wx.config / wx.agentConfig signatures checked the way the JS-SDK computes them."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest

from bot import keys
from bot.channels.wecom import WeComClient
from bot.context import CTX
from bot.handlers.sidebar import COOKIE, SIDEBAR
from bot.settings import Settings, SettingsError
from storage import open_store
from tests.fakes.wecom_api import AGENT_TICKET, JSAPI_TICKET, USERINFO

from .conftest import AGENT_ID, PUBLIC, STAFF, csrf, login, sidebar_settings


def js_sdk_signature(ticket: str, noncestr: str, timestamp: int, url: str) -> str:
    """As WeCom's JS-SDK documentation defines it: the four fields sorted by name (ASCII),
    joined as key=value with &, the URL without its #fragment, SHA-1 in lower-case hex."""
    fields = {"noncestr": noncestr, "jsapi_ticket": ticket, "timestamp": str(timestamp),
              "url": url.split("#")[0]}
    text = "&".join(f"{k}={fields[k]}" for k in sorted(fields))
    return hashlib.sha1(text.encode()).hexdigest()


async def test_without_a_session_the_page_redirects_to_the_exact_authorize_url(client, fake):
    r = await client.get("/sidebar", allow_redirects=False)
    assert r.status == 302
    loc = r.headers["Location"]
    state = parse_qs(urlsplit(loc).query)["state"][0]
    assert loc == (
        "https://open.weixin.qq.com/connect/oauth2/authorize"
        f"?appid={fake.corp_id}&redirect_uri={quote(PUBLIC + '/sidebar', safe='')}"
        f"&response_type=code&scope=snsapi_base&state={state}&agentid={AGENT_ID}"
        "#wechat_redirect")
    nonce, expires, mac = state.split(".")
    assert len(nonce) >= 16 and len(mac) == 32  # a signed nonce with its expiry
    assert int(expires) == pytest.approx(time.time() + 600, abs=60)
    # nothing is stored for a visitor who does not come back
    assert await client.app[CTX].store.kv_get(keys.sidebar_state(nonce)) is None
    # another visit gets another state
    r2 = await client.get("/sidebar", allow_redirects=False)
    assert parse_qs(urlsplit(r2.headers["Location"]).query)["state"][0] != state


async def test_the_code_is_exchanged_for_the_userid_kept_in_a_signed_cookie(client, fake):
    r = await client.get("/sidebar", allow_redirects=False)
    state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
    code = fake.oauth_code(STAFF)
    r = await client.get("/sidebar", params={"code": code, "state": state},
                         allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/sidebar"
    cookie = SimpleCookie(r.headers["Set-Cookie"])[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert cookie["max-age"] == str(8 * 3600) and cookie["path"] == "/sidebar"
    # getuserinfo was called with the sidebar app's token (WECOM_AGENT_SECRET)
    (call,) = fake.to(USERINFO)
    assert call.query["code"] == code and call.ok
    token_calls = [c for c in fake.to("/cgi-bin/gettoken")
                   if c.answer.get("access_token") == call.query["access_token"]]
    assert token_calls[0].query["corpsecret"] == fake.agent_secret
    page = await client.get("/sidebar", allow_redirects=False)
    assert page.status == 200
    html = await page.text()
    assert "/sidebar/static/weui.min.css" in html and "预览模式" not in html
    # a tampered cookie is no session
    raw = client.session.cookie_jar.filter_cookies(client.make_url("/sidebar"))[COOKIE].value
    assert ".w." in raw
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({COOKIE: raw.replace(".w.", ".p.")},
                                             client.make_url("/sidebar"))
    r = await client.get("/sidebar", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("https://open.weixin.qq.com")


async def test_the_session_expires_after_eight_hours(client, fake):
    sb = client.app[SIDEBAR]
    t = [1_800_000_000.0]
    sb.wall = lambda: t[0]
    await login(client, fake)
    assert (await client.get("/sidebar", allow_redirects=False)).status == 200
    t[0] += 8 * 3600 - 5
    assert (await client.get("/sidebar", allow_redirects=False)).status == 200
    t[0] += 10
    r = await client.get("/sidebar", allow_redirects=False)
    assert r.status == 302
    assert (await client.get("/sidebar/api/customer?external_userid=x")).status == 401


@pytest.mark.parametrize("bad", ["", "forged", "abc.0123456789abcdef0123456789abcdef",
                                 "abc.9999999999.0123456789abcdef0123456789abcdef"])
async def test_a_bad_state_is_403_and_the_code_is_not_used(client, fake, bad):
    code = fake.oauth_code(STAFF)
    r = await client.get("/sidebar", params={"code": code, "state": bad},
                         allow_redirects=False)
    assert r.status == 403
    assert "Set-Cookie" not in r.headers
    assert fake.to(USERINFO) == []  # refused before WeCom is asked


async def test_a_reused_state_is_403(client, fake):
    r = await client.get("/sidebar", allow_redirects=False)
    state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
    ok = await client.get("/sidebar", params={"code": fake.oauth_code(STAFF), "state": state},
                          allow_redirects=False)
    assert ok.status == 302
    client.session.cookie_jar.clear()
    again = await client.get("/sidebar", params={"code": fake.oauth_code(STAFF),
                                                 "state": state}, allow_redirects=False)
    assert again.status == 403 and "Set-Cookie" not in again.headers
    assert "已使用" in await again.text()


async def test_an_expired_state_is_403(client, fake):
    sb = client.app[SIDEBAR]
    t = [1_800_000_000.0]
    sb.wall = lambda: t[0]
    r = await client.get("/sidebar", allow_redirects=False)
    state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
    t[0] += 601
    r = await client.get("/sidebar", params={"code": fake.oauth_code(STAFF), "state": state},
                         allow_redirects=False)
    assert r.status == 403 and fake.to(USERINFO) == []


async def test_an_unknown_or_used_code_is_403(client, fake):
    for code in ("no-such-code", None):
        r = await client.get("/sidebar", allow_redirects=False)
        state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
        if code is None:  # a real code, used once already
            code = fake.oauth_code(STAFF)
            fake.oauth_codes.pop(code)
        r = await client.get("/sidebar", params={"code": code, "state": state},
                             allow_redirects=False)
        assert r.status == 403 and "Set-Cookie" not in r.headers
    assert [c.answer["errcode"] for c in fake.to(USERINFO)] == [40029, 40029]


async def test_jsapi_signs_wx_config_and_wx_agent_config_as_the_js_sdk_checks(client, fake,
                                                                              now):
    await login(client, fake)
    page = f"{PUBLIC}/sidebar"
    r = await client.get("/sidebar/jsapi", params={"url": page + "#top"})
    assert r.status == 200
    data = await r.json()
    cfg, agent = data["config"], data["agentConfig"]
    assert set(cfg) == {"appId", "timestamp", "nonceStr", "signature"}
    assert set(agent) == {"corpid", "agentid", "timestamp", "nonceStr", "signature"}
    assert cfg["appId"] == agent["corpid"] == fake.corp_id and agent["agentid"] == AGENT_ID
    assert cfg["timestamp"] == int(now.timestamp())
    assert cfg["signature"] == js_sdk_signature(fake.tickets["jsapi"], cfg["nonceStr"],
                                                cfg["timestamp"], page)
    assert agent["signature"] == js_sdk_signature(fake.tickets["agent_config"],
                                                  agent["nonceStr"], agent["timestamp"], page)
    # the corp ticket is not the agent ticket: each signature needs its own
    assert cfg["signature"] != js_sdk_signature(fake.tickets["agent_config"], cfg["nonceStr"],
                                                cfg["timestamp"], page)
    assert fake.to(AGENT_TICKET)[0].query["type"] == "agent_config"
    # cached: another page load asks WeCom for nothing
    r = await client.get("/sidebar/jsapi", params={"url": page + "?x=1"})
    assert r.status == 200
    assert len(fake.to(JSAPI_TICKET)) == 1 and len(fake.to(AGENT_TICKET)) == 1


async def test_jsapi_needs_a_session_and_signs_only_this_page(client, fake):
    r = await client.get("/sidebar/jsapi", params={"url": f"{PUBLIC}/sidebar"})
    assert r.status == 401
    await login(client, fake)
    r = await client.get("/sidebar/jsapi", params={"url": "https://evil.test/sidebar"})
    assert r.status == 400 and (await r.json())["field"] == "url"
    assert fake.to(JSAPI_TICKET) == []


async def test_tickets_are_fetched_once_across_processes(tmp_path, fake):
    """Two processes (two clients, one store) asking at once: one fetch of each ticket."""
    settings = sidebar_settings(tmp_path, fake)
    settings = dataclasses.replace(settings, wecom_secret=settings.wecom_agent_secret)
    stores = [open_store(settings.store_url, settings.data_key) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        async with aiohttp.ClientSession() as s1, aiohttp.ClientSession() as s2:
            a, b = WeComClient(stores[0], settings, s1), WeComClient(stores[1], settings, s2)
            got = await asyncio.gather(*[c.jsapi_ticket(k) for c in (a, b) for k in
                                         ("jsapi", "agent_config") for _ in range(3)])
    finally:
        for s in stores:
            await s.close()
    assert set(got[0:3] + got[6:9]) == {fake.tickets["jsapi"]}
    assert set(got[3:6] + got[9:12]) == {fake.tickets["agent_config"]}
    assert len(fake.to(JSAPI_TICKET)) == 1 and len(fake.to(AGENT_TICKET)) == 1


async def test_an_expired_token_during_a_ticket_fetch_is_refreshed_once(client, fake):
    await login(client, fake)
    fake.expire_tokens()
    r = await client.get("/sidebar/jsapi", params={"url": f"{PUBLIC}/sidebar"})
    assert r.status == 200
    assert [c.answer["errcode"] for c in fake.to(JSAPI_TICKET)] == [42001, 0]


async def test_preview_is_refused_in_production_and_off_unless_enabled(tmp_path, client):
    with pytest.raises(SettingsError, match="MEMBERBOT_SIDEBAR_PREVIEW"):
        Settings.load({"MEMBERBOT_ENV": "production", "MEMBERBOT_SIDEBAR_PREVIEW": "1",
                       "WECHAT_TOKEN": "t", "MEMBERBOT_DATA_KEY": "k",
                       "MEMBERBOT_API_SECRET": "s"}, cwd=tmp_path)
    dev = Settings.load({"MEMBERBOT_SIDEBAR_PREVIEW": "1"}, cwd=tmp_path)
    assert dev.sidebar_preview
    r = await client.get("/sidebar", params={"preview_member": "100000000001",
                                             "preview_staff": STAFF}, allow_redirects=False)
    assert r.status == 403 and "Set-Cookie" not in r.headers
    assert "MEMBERBOT_SIDEBAR_PREVIEW" in await r.text()


async def test_preview_opens_the_page_without_wecom_with_a_banner(make_client):
    client = await make_client(sidebar_preview=True)
    r = await client.get("/sidebar", params={"preview_member": "100000000001",
                                             "preview_staff": STAFF})
    assert r.status == 200
    html = await r.text()
    assert "预览模式" in html and "res.wx.qq.com" not in html
    assert "script-src 'self';" in r.headers["Content-Security-Policy"]
    assert await csrf(client, "/sidebar?preview_member=100000000001&preview_staff=" + STAFF)


async def test_the_cookie_is_secure_when_the_public_url_is_https(make_client, fake):
    client = await make_client(public_url="https://crm.brand.test")
    r = await client.get("/sidebar", allow_redirects=False)
    assert "redirect_uri=https%3A%2F%2Fcrm.brand.test%2Fsidebar" in r.headers["Location"]
    state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
    r = await client.get("/sidebar", params={"code": fake.oauth_code(STAFF), "state": state},
                         allow_redirects=False)
    assert r.status == 302 and SimpleCookie(r.headers["Set-Cookie"])[COOKIE]["secure"]
