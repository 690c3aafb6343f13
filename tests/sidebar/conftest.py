"""Sidebar fixtures: the fake WeCom API on a port, the app wired to it, a seeded customer."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.web import CTX, create_app
from tests.api.support import Clock
from tests.conftest import make_settings
from tests.fakes.wecom_api import FakeWeComAPI

AGENT_ID = "1000002"
PUBLIC = "http://crm.brand.test"
STAFF = "zhangsan"
OTHER = "lisi"
ADMIN = "boss"
CUSTOMER = "wmCUSTOMER001"


def sidebar_settings(tmp_path, fake: FakeWeComAPI, **over):
    base = dict(wecom_corp_id=fake.corp_id, wecom_secret=fake.secret,
                wecom_agent_secret=fake.agent_secret, wecom_agent_id=AGENT_ID,
                wecom_api_base=fake.base, public_url=PUBLIC, sidebar_admins=(ADMIN,))
    return make_settings(tmp_path, **{**base, **over})


async def seed_customer(members, now, *, external_userid: str = CUSTOMER,
                        staff: str = STAFF) -> str:
    """A WeCom contact of ``staff`` who is a member with orders, points, a coupon, a streak."""
    res = await members.link_wecom(external_userid, now, staff=staff, follow_users=[staff],
                                   nickname="王小明")
    mid = res["member_id"]
    tail = external_userid[-3:]
    await members.record_order(mid, f"ORD-{tail}1", 128_800, now - timedelta(days=40), now)
    await members.record_order(mid, f"ORD-{tail}2", 36_600, now - timedelta(days=3), now)
    await members.check_in(mid, now - timedelta(days=1))
    await members.check_in(mid, now)
    await members.tag(mid, now, add=("爱喝拿铁", "门店A"))
    return mid


@pytest.fixture
def clock(now):
    return Clock(now)


@pytest.fixture
async def make_client(aiohttp_client, tmp_path, fake, clock):
    async def make(**over):
        app = create_app(sidebar_settings(tmp_path, fake, **over), clock=clock)
        return await aiohttp_client(app)

    return make


@pytest.fixture
async def client(make_client):
    return await make_client()


async def login(client, fake: FakeWeComAPI, userid: str = STAFF) -> None:
    """The OAuth2 round trip as WeCom runs it: /sidebar → authorize URL → back with a code."""
    r = await client.get("/sidebar", allow_redirects=False)
    assert r.status == 302, await r.text()
    state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
    r = await client.get("/sidebar", params={"code": fake.oauth_code(userid), "state": state},
                         allow_redirects=False)
    assert r.status == 302, await r.text()
    assert r.headers["Location"] == "/sidebar"


async def csrf(client, path: str = "/sidebar") -> str:
    r = await client.get(path, allow_redirects=False)  # never follow to WeCom's host
    assert r.status == 200, r.headers.get("Location")
    return re.search(r'"csrf": "([0-9a-f]+)"', await r.text()).group(1)


def ctx(client):
    return client.app[CTX]
