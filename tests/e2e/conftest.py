"""End-to-end fixtures: the whole app over HTTP, a fake OA API on a port, a settable clock."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.handlers.oa import OA
from bot.web import CTX, create_app
from tests.conftest import make_settings
from tests.fakes.wechat_api import FakeWeChatAPI

from .wechat_client import WeChat

AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")
APPID = "wxtestappid"
TOKEN = "testtoken"


class Clock:
    """The app's clock (create_app(..., clock=)): tests move it by days."""

    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


@pytest.fixture
def clock(now):
    return Clock(now)


@pytest.fixture
async def fake_api():
    api = FakeWeChatAPI(appid=APPID)
    await api.start()
    yield api
    await api.close()


@pytest.fixture
def oa_api():
    """The fake OA API on a thread of its own, for ``memberbot`` commands run as processes."""
    fake = FakeWeChatAPI()
    fake.start_thread()
    yield fake
    fake.stop_thread()


def oa_settings(tmp_path: Path, api: FakeWeChatAPI | None, *, safe: bool = True, **over):
    extra = dict(wechat_appid=APPID, wechat_aes_key=AES_KEY if safe else "")
    if api is not None:
        extra.update(wechat_appsecret=api.secret, wechat_api_base=api.base)
    return make_settings(tmp_path, **{**extra, **over})


class Bot:
    """An app under test: the HTTP client speaking as WeChat, plus the store to inspect."""

    def __init__(self, client, settings, crypto: str = "wechatpy") -> None:
        self.client = client
        self.app = client.server.app
        self.settings = settings
        self.wx = WeChat(client, settings.wechat_token, aes_key=settings.wechat_aes_key,
                         appid=settings.wechat_appid, crypto=crypto)

    @property
    def ctx(self):
        return self.app[CTX]

    @property
    def store(self):
        return self.ctx.store

    @property
    def oa(self):
        return self.app[OA]

    async def member(self, openid: str):
        mid = await self.store.lookup("openid", openid)
        return None if mid is None else await self.store.get(mid)

    async def ledger(self, openid: str, kinds: list[str] | None = None):
        mid = await self.store.lookup("openid", openid)
        return [] if mid is None else await self.store.ledger(member_id=mid, kinds=kinds)


@pytest.fixture
def make_bot(aiohttp_client, tmp_path, clock, fake_api):
    """``await make_bot(safe=True, crypto="wechatpy", **settings)``."""

    async def make(*, safe: bool = True, crypto: str = "wechatpy", api: bool = True,
                   store=None, path: Path | None = None, rules=None, **over) -> Bot:
        settings = oa_settings(path or tmp_path, fake_api if api else None, safe=safe, **over)
        app = create_app(settings, store, rules=rules, clock=clock)
        return Bot(await aiohttp_client(app), settings, crypto)

    return make


@pytest.fixture
async def bot(make_bot):
    return await make_bot()
