"""An app on a fixed, movable clock with a SQLite store, and a signed store-API client."""

from __future__ import annotations

import pytest

from bot.web import CTX, create_app
from tests.conftest import make_settings

from .support import Api, Clock


@pytest.fixture
def clock(now):
    return Clock(now)


@pytest.fixture
async def client(aiohttp_client, tmp_path, clock):
    return await aiohttp_client(create_app(make_settings(tmp_path), clock=clock))


@pytest.fixture
def ctx(client):
    return client.app[CTX]


@pytest.fixture
def api(client, clock):
    return Api(client, clock)


@pytest.fixture
def register(ctx, clock):
    async def go(openid: str, **kw):
        return await ctx.members.register(openid, clock.now, **kw)

    return go
