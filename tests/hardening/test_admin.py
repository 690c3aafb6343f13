"""/admin against hostile input: odd cookies, extreme dates, throttling that cannot lock
everyone out, notices only the server set (issue 15, items 4, 5, 6, 9)."""

from __future__ import annotations

import pytest

from bot.handlers import admin
from bot.web import create_app
from tests.api.support import Clock
from tests.conftest import make_settings
from tests.ops.support import seed_member

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def client(aiohttp_client, tmp_path, now):
    app = create_app(make_settings(tmp_path, admin_password=PASSWORD,
                                   trusted_proxies="127.0.0.1/32"), clock=Clock(now))
    return await aiohttp_client(app)


async def login(client, password=PASSWORD, *, address: str | None = None, user: str = ""):
    headers = {"X-Forwarded-For": address} if address else {}
    data = {"password": password, "next": "/admin"}
    if user:
        data["name"] = user
    return await client.post("/admin/login", data=data, headers=headers,
                             allow_redirects=False)


async def test_a_non_ascii_admin_cookie_redirects_to_login(client):
    for value in ("é.1.2", "abc.１２３.ff", "abc.²³.ff", "a.9999999999.é"):
        client.session.cookie_jar.clear()
        r = await client.get("/admin", headers={"Cookie": f"{admin.COOKIE}={value}"},
                             allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/admin/login"), value


async def test_successful_logins_are_not_counted_by_the_throttle(client):
    for _ in range(admin.LOGIN_TRIES + 3):
        assert (await login(client)).status == 303


async def test_failures_from_one_address_do_not_lock_out_another(client):
    for _ in range(admin.LOGIN_TRIES + 1):
        assert (await login(client, "wrong", address="203.0.113.9")).status in (401, 429)
    assert (await login(client, address="203.0.113.9")).status == 429
    # the same proxy (127.0.0.1, trusted) forwards the real admin from another address
    r = await login(client, address="198.51.100.7")
    assert r.status == 303 and admin.COOKIE in r.cookies


async def test_an_untrusted_forwarded_for_header_is_ignored(aiohttp_client, tmp_path, now):
    app = create_app(make_settings(tmp_path, admin_password=PASSWORD), clock=Clock(now))
    client = await aiohttp_client(app)
    for i in range(admin.LOGIN_TRIES):  # a different forged address every time
        assert (await login(client, "wrong", address=f"10.0.0.{i}")).status == 401
    assert (await login(client, "wrong", address="10.9.9.9")).status == 429


@pytest.mark.parametrize("as_of", ["0001-01-01", "9999-12-31", "1900-01-01", "2300-01-01"])
async def test_admin_as_of_out_of_range_is_a_clear_message(client, as_of):
    await login(client)
    r = await client.get(f"/admin?as_of={as_of}")
    text = await r.text()
    assert r.status == 200 and "as_of must be between" in text


async def test_admin_notice_is_never_taken_from_the_url(client, now):
    ctx = client.app[admin.CTX]
    await seed_member(ctx.members, "m1", "100000000001", now, openid="o1")
    await login(client)
    r = await client.get("/admin/members?q=100000000001&msg=请拨打 400-EVIL 领取奖励")
    assert r.status == 200 and "400-EVIL" not in await r.text()
    page = await client.get("/admin/members?q=100000000001")
    csrf = (await page.text()).split('name="csrf" value="')[1].split('"')[0]
    r = await client.post("/admin/members/100000000001/tags", data={"csrf": csrf, "add": "vip"},
                          allow_redirects=False)
    assert r.status == 303 and "msg=" not in r.headers["Location"]
    shown = await client.get(r.headers["Location"])
    assert "已保存" in await shown.text()
    again = await client.get(r.headers["Location"])  # a flash is shown once
    assert "已保存" not in await again.text()
