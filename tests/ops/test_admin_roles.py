"""Admin accounts and roles: an admin creates a viewer and an operator (memberbot admin
add-user), each sees and can do exactly their part; every write is audited; the bootstrap
password keeps working and the login page says so; a disabled account is refused at once."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from click.testing import CliRunner

from bot.admins import AccountError, Accounts
from bot.cli import main
from bot.context import CTX
from bot.web import create_app
from tests.api.support import Clock
from tests.conftest import make_settings

BOOT = "bootstrap-password"
KEY = "a2FrYWthYWthYWthYWthYWthYWthYWthYWthYWthYWs="


def cli(tmp_path, *args, input=None):
    env = {"MEMBERBOT_STORE": f"sqlite:///{tmp_path}/m.db", "MEMBERBOT_DATA_KEY": KEY,
           "MEMBERBOT_DATA_DIR": str(tmp_path), "WECHAT_TOKEN": "t", "MEMBERBOT_API_SECRET": "s",
           "MEMBERBOT_RULES": "", "MEMBERBOT_TZ": ""}
    return CliRunner().invoke(main, ["admin", *args], env=env, input=input)


@pytest.fixture
def accounts(tmp_path):
    # the accounts are made with the CLI first, on the same SQLite file the app serves
    assert cli(tmp_path, "add-user", "vera", "--role", "viewer",
               "--password", "viewer-password").exit_code == 0
    res = cli(tmp_path, "add-user", "otto", "--role", "operator",
              input="operator-password\noperator-password\n")  # prompted, twice
    assert res.exit_code == 0, res.output


@pytest.fixture
async def server(accounts, tmp_path, now):
    settings = make_settings(tmp_path, admin_password=BOOT, data_key=KEY)
    app = create_app(settings, clock=Clock(now))
    return app


async def test_each_role_sees_and_does_exactly_its_part(aiohttp_client, server, now):
    app = server
    client = await aiohttp_client(app)
    ctx = app[CTX]
    m = await ctx.members.register("o-role", now)
    code = m["member_code"]

    login = await client.get("/admin/login")
    assert "MEMBERBOT_ADMIN_PASSWORD" in await login.text()  # the bootstrap admin is named

    async def as_(name, password):
        client.session.cookie_jar.clear()
        r = await client.post("/admin/login", data={"name": name, "password": password},
                              allow_redirects=False)
        assert r.status == 303, (name, r.status)

    async def form(path, **data):
        page = await (await client.get(f"/admin/members?q={code}")).text()
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        data["csrf"] = token.group(1) if token else "none on a viewer's page"
        rid = re.search(r'name="request_id" value="([^"]+)"', page)
        data.setdefault("request_id", rid.group(1) if rid else "r" * 12)
        return await client.post(path, data=data, allow_redirects=False)

    # viewer: reads, changes nothing, no audit
    await as_("vera", "viewer-password")
    page = await (await client.get(f"/admin/members?q={code}")).text()
    assert 'data-table="ledger"' in page and 'data-form="points"' not in page
    for r in (await form(f"/admin/members/{code}/points", delta="50", reason="x"),
              await form(f"/admin/members/{code}/tags", add="vip"),
              await client.get("/admin/audit")):
        assert r.status == 403 and "无权限" in await r.text()
    dash = await (await client.get("/admin")).text()
    assert "data-job-form" not in dash
    assert (await client.post("/admin/jobs/dormant", data={"mode": "run"})).status == 403

    # operator: adjusts points within the role's cap, with a reason; issues a coupon; tags
    await as_("otto", "operator-password")
    async def notice(r) -> str:  # the flash the server set, on the page it redirects to
        assert r.status == 303 and "msg=" not in r.headers["Location"]
        return await (await client.get(r.headers["Location"])).text()

    r = await form(f"/admin/members/{code}/points", delta="50", reason="到店补录")
    assert "已调整 +50 积分" in await notice(r)
    r = await form(f"/admin/members/{code}/points", delta="5000", reason="太多")
    assert "1 到 200" in await notice(r)
    r = await form(f"/admin/members/{code}/points", delta="10", reason="")
    assert "原因" in await notice(r)
    r = await form(f"/admin/members/{code}/coupons", template="wakeup")
    assert r.status == 303
    assert (await form(f"/admin/members/{code}/tags", add="vip")).status == 303
    assert (await client.get("/admin/audit")).status == 403
    dash = await (await client.get("/admin")).text()
    csrf = re.search(r'data-job-form="dormant">\s*<input type="hidden" name="csrf" '
                     r'value="([^"]+)"', dash).group(1)
    r = await client.post("/admin/jobs/points_expiry", data={"mode": "preview", "csrf": csrf})
    assert r.status == 200 and "dry run" in await r.text()
    r = await client.post("/admin/jobs/housekeeping", data={"mode": "run", "csrf": csrf})
    assert r.status == 200 and "members looked at" in await r.text()
    mm = await ctx.members.get(m["member_id"])
    assert "vip" in mm.tags and [c.template for c in mm.coupons].count("wakeup") == 1

    # the ledger on the member page, paged, shows who did it
    page = await (await client.get(f"/admin/members?q={code}")).text()
    assert "admin:otto" in page and "到店补录" in page

    # admin (the bootstrap password) reads the audit: who, what, when, before -> after
    await as_("", BOOT)
    audit = await (await client.get("/admin/audit")).text()
    assert "admin:otto" in audit and "积分 +50（0 → 50）" in audit and "到店补录" in audit
    assert "wakeup" in audit or "唤醒" in audit
    assert "标签 +vip" in audit  # the tag edit, by admin:otto
    accounts = audit.split('id="accounts"')[1]
    assert "add-user" in accounts and "vera" in accounts and "operator, enabled" in accounts
    assert "run job" in accounts and "housekeeping" in accounts and "admin:otto" in accounts


async def test_a_disabled_account_is_refused_on_its_next_request(aiohttp_client, server,
                                                                 tmp_path):
    client = await aiohttp_client(server)
    r = await client.post("/admin/login", data={"name": "vera", "password": "viewer-password"},
                          allow_redirects=False)
    assert r.status == 303
    assert (await client.get("/admin", allow_redirects=False)).status == 200
    res = await asyncio.to_thread(cli, tmp_path, "disable", "vera")
    assert res.exit_code == 0 and "disabled" in res.output
    assert (await client.get("/admin", allow_redirects=False)).status == 303
    r = await client.post("/admin/login", data={"name": "vera", "password": "viewer-password"},
                          allow_redirects=False)
    assert r.status == 401
    listing = await asyncio.to_thread(cli, tmp_path, "list")
    s = server[CTX].store
    history = await Accounts(s).history()
    assert (history[0]["what"], history[0]["account"], history[0]["before"],
            history[0]["after"]) == ("disable", "vera", "viewer, enabled", "viewer, disabled")
    assert history[0]["by"].startswith("cli:")
    assert re.search(r"vera +viewer +disabled", listing.output)
    assert re.search(r"otto +operator +enabled", listing.output)


def test_add_user_refuses_bad_input_in_one_line(tmp_path):
    assert cli(tmp_path, "add-user", "ann", "--role", "viewer",
               "--password", "long-enough-pw").exit_code == 0
    for args, msg in [(["ann", "--role", "viewer", "--password", "long-enough-pw"], "exists"),
                      (["bob", "--role", "viewer", "--password", "short"], "at least 10"),
                      (["Bad Name", "--role", "viewer", "--password", "long-enough-pw"],
                       "2 to 32"),
                      (["admin", "--role", "admin", "--password", "long-enough-pw"],
                       "bootstrap")]:
        res = cli(tmp_path, "add-user", *args)
        assert res.exit_code == 1 and res.output.startswith("error: ") and msg in res.output


async def test_passwords_are_argon2id_hashes(tmp_path, now):
    from storage import open_store

    s = open_store(f"sqlite:///{tmp_path}/a.db", KEY)
    await s.open()
    try:
        accs = Accounts(s)
        acc = await accs.add("carol", "operator", "carol-password", now)
        assert acc.hash.startswith("$argon2id$") and "carol-password" not in acc.hash
        assert await accs.verify("carol", "carol-password") is not None
        assert await accs.verify("carol", "wrong-password") is None
        assert await accs.verify("nobody", "carol-password") is None
        with pytest.raises(AccountError, match="role 'boss'"):
            await accs.add("dave", "boss", "dave-password", now)
    finally:
        await s.close()
    assert time.time()
