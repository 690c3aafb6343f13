"""Job fixtures: a fake WeCom API on a port, a SQLite store, an app context wired to both."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from bot.channels.wecom import Backoff, WeComClient
from bot.context import Context, system_clock
from bot.members import Members
from storage import Store, open_store
from tests.conftest import make_settings
from tests.fakes.wecom_api import FakeWeComAPI

KEY = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="  # b"k" * 32


class Sleeps(list):
    """An injectable sleep that records delays instead of waiting."""

    async def __call__(self, delay: float) -> None:
        self.append(delay)


@asynccontextmanager
async def sqlite_or_redis(kind: str, tmp_path) -> AsyncIterator[Store]:
    """An empty store of ``kind`` (``sqlite`` or ``redis``: this run's REDIS_URL, flushed)."""
    s = open_store(f"sqlite:///{tmp_path}/m.db" if kind == "sqlite" else
                   os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"), KEY)
    await s.open()
    if kind == "redis":
        await s.client.flushdb()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/m.db", KEY)
    await s.open()
    yield s
    await s.close()


def wecom_settings(tmp_path, fake: FakeWeComAPI, **over):
    base = dict(wecom_corp_id=fake.corp_id, wecom_secret=fake.secret,
                wecom_api_base=fake.base, data_key=KEY)
    return make_settings(tmp_path, **{**base, **over})


@pytest.fixture
async def make_env(tmp_path, fake, rules):
    sessions: list[aiohttp.ClientSession] = []

    async def make(store, *, oa: bool = False, wecom: bool = True, concurrency: int = 1,
                   backoff: Backoff | None = None, **over) -> Context:
        if oa:
            over = {"wechat_appid": fake.oa_appid, "wechat_appsecret": fake.oa_secret,
                    "wechat_api_base": fake.base, "wechat_template_id": "TPL1", **over}
        settings = wecom_settings(tmp_path, fake, **over)
        session = aiohttp.ClientSession()
        sessions.append(session)
        problems: dict[str, str] = {}
        sleeps = Sleeps()
        client = WeComClient(store, settings, session, problems=problems, sleep=sleeps,
                             backoff=backoff or Backoff()) if wecom else None
        oa_client = None
        if oa:
            from bot.channels.wechat import WeChatClient

            oa_client = WeChatClient(store, settings, session)
        env = Context(settings, rules, store, Members(store, rules), system_clock(rules.tz),
                      wechat=oa_client, wecom=client, problems=problems, lease=60.0,
                      concurrency=concurrency)
        env.sleeps = sleeps
        await env.members.ensure_stock()
        return env

    yield make
    for s in sessions:
        await s.close()
