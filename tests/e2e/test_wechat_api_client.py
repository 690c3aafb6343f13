"""The OA API client against the fake API on a real port: shared token, one refresh across
processes, the call shapes other parts rely on, errors."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bot.channels.wechat import WeChatAPIError, WeChatClient
from storage import open_store

from .conftest import oa_settings


@pytest.fixture
async def store(tmp_path, fake_api):
    s = open_store(oa_settings(tmp_path, fake_api).store_url, oa_settings(tmp_path, None)
                   .data_key)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def clients(tmp_path, fake_api, store):
    """Two clients, as two processes would have, sharing one store."""
    settings = oa_settings(tmp_path, fake_api)
    async with aiohttp.ClientSession() as session:
        yield [WeChatClient(store, settings, session) for _ in range(2)]


async def test_token_is_fetched_once_and_shared(clients, fake_api):
    a, b = clients
    await a.send_text("o_1", "你好")
    await b.send_text("o_2", "再见")
    assert fake_api.token_fetches == 1
    sent = fake_api.to("/cgi-bin/message/custom/send")
    assert [c.body["text"]["content"] for c in sent] == ["你好", "再见"]
    assert "你好".encode() in sent[0].raw  # UTF-8 as is: WeChat shows \\u escapes literally


async def test_expired_token_is_refreshed_once_across_processes(clients, fake_api):
    a, b = clients
    await a.access_token()
    fake_api.expire_token()
    await asyncio.gather(a.send_text("o_1", "x"), b.send_text("o_2", "y"))
    assert fake_api.token_fetches == 2  # the first one, and one refresh for both
    assert len(fake_api.to("/cgi-bin/message/custom/send")) == 4
    assert a.refreshes + b.refreshes == 2


async def test_template_message_user_info_and_invite_qr(clients, fake_api):
    a, _ = clients
    fake_api.unionids["o_1"] = "u_1"
    res = await a.send_template("o_1", "TPL1", {"amount": 120, "date": {"value": "2026-12-01",
                                                                         "color": "#f00"}},
                                url="https://example.com/m")
    assert res["errcode"] == 0 and res["msgid"]
    [call] = fake_api.to("/cgi-bin/message/template/send")
    assert call.body == {"touser": "o_1", "template_id": "TPL1", "url": "https://example.com/m",
                         "data": {"amount": {"value": "120"},
                                  "date": {"value": "2026-12-01", "color": "#f00"}}}
    assert (await a.user_info("o_1"))["unionid"] == "u_1"
    url = await a.create_invite_qr("inv_ABC234")
    assert url == "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=TICKET%2Finv_ABC234%3D%3D"


async def test_errors_are_wechat_api_errors(clients, fake_api, tmp_path, store):
    a, _ = clients
    fake_api.fail_next(45009)
    with pytest.raises(WeChatAPIError) as e:
        await a.send_text("o_1", "x")
    assert e.value.errcode == 45009
    fake_api.fail_next(42001)
    fake_api.fail_next(42001)  # still expired after the one refresh: give up
    with pytest.raises(WeChatAPIError) as e:
        await a.send_text("o_1", "x")
    assert e.value.errcode == 42001
    async with aiohttp.ClientSession() as session:
        bad = WeChatClient(store, oa_settings(tmp_path, fake_api, wechat_appsecret="wrong",
                                              wechat_appid="wxother"), session)
        with pytest.raises(WeChatAPIError) as e:
            await bad.send_text("o_1", "x")
        assert e.value.errcode == 40001
        unconfigured = WeChatClient(store, oa_settings(tmp_path, None), session)
        assert not unconfigured.configured
        with pytest.raises(WeChatAPIError):
            await unconfigured.access_token()
