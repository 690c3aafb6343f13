"""/admin: password login with a signed expiring cookie, dashboard, member lookup and tags,
coupon stock, last job runs; disabled without a password."""

from __future__ import annotations

import json
import re
import time

import pytest

from bot import keys
from bot.handlers import admin
from bot.jobs.runner import run_kind
from bot.web import CTX, create_app
from tests.api.support import Clock
from tests.conftest import make_settings

from .seeded import seed_history

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def client(aiohttp_client, tmp_path, now):
    app = create_app(make_settings(tmp_path, admin_password=PASSWORD), clock=Clock(now))
    return await aiohttp_client(app)


async def login(client, password=PASSWORD, next_="/admin"):
    return await client.post("/admin/login", data={"password": password, "next": next_},
                             allow_redirects=False)


async def test_without_a_password_admin_is_disabled_with_a_clear_page(aiohttp_client,
                                                                      tmp_path):
    client = await aiohttp_client(create_app(make_settings(tmp_path)))
    for method, path in (("GET", "/admin"), ("GET", "/admin/login"), ("POST", "/admin/login"),
                         ("GET", "/admin/members?q=1")):
        resp = await client.request(method, path, data={"password": ""},
                                    allow_redirects=False)
        assert resp.status == 403
        assert "MEMBERBOT_ADMIN_PASSWORD" in await resp.text()


async def test_login_sets_a_signed_cookie_and_wrong_passwords_are_refused(client):
    resp = await client.get("/admin", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/admin/login?next=/admin")
    resp = await login(client, "wrong")
    assert resp.status == 401 and "密码错误" in await resp.text()
    resp = await login(client, next_="https://evil.example/")
    assert (resp.status, resp.headers["Location"]) == (303, "/admin")
    cookie = resp.cookies[admin.COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/admin"
    page = await client.get("/admin")
    assert page.status == 200
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    text = await page.text()
    assert "开卡转化率" in text and 'src="/admin/static/echarts.min.js"' in text
    assert "cdn" not in text.lower()


async def test_tampered_expired_or_stale_password_sessions_are_refused(client):
    ctx = client.app[CTX]
    good = admin.new_session(ctx, time.time())
    sid, exp, user, mac = good.split(".")
    for value in (f"{sid}.{int(exp) + 999}.{user}.{mac}", f"x{sid}.{exp}.{user}.{mac}",
                  f"{sid}.{exp}.alice.{mac}", "garbage",
                  admin.new_session(ctx, time.time() - admin.SESSION_S - 1)):
        client.session.cookie_jar.update_cookies({admin.COOKIE: value})
        resp = await client.get("/admin", allow_redirects=False)
        assert resp.status == 303, value
    client.session.cookie_jar.update_cookies({admin.COOKIE: good})
    assert (await client.get("/admin", allow_redirects=False)).status == 200
    ctx.settings.admin_password = "a new password"
    assert (await client.get("/admin", allow_redirects=False)).status == 303


async def test_login_attempts_are_throttled(client):
    for _ in range(admin.LOGIN_TRIES):
        assert (await login(client, "wrong")).status == 401
    resp = await login(client)  # even the right password, until the window passes
    assert resp.status == 429


async def test_dashboard_shows_figures_stock_and_last_job_runs(client, monkeypatch, now):
    ctx = client.app[CTX]
    await seed_history(ctx.members, monkeypatch)
    await ctx.store.kv_set(keys.job_last("birthday"), json.dumps(
        {"at": "2026-11-25T09:30:00+08:00", "sent": 12, "failed": 1}))
    await ctx.store.kv_set(keys.job_last("dormant"), "2026-11-25T10:30:00+08:00")
    await login(client)
    text = await (await client.get("/admin?as_of=2026-11-25&days=7")).text()
    assert re.search(r'data-kpi="card_conversion">75.0%<', text)
    assert re.search(r'data-kpi="arpu">¥5,563.33<', text)
    assert re.search(r'data-kpi="aov">¥4,172.50<', text)  # the playbook's figures too
    assert re.search(r'data-kpi="tier_promotion">16.7%<', text)
    assert "积分账龄" in text and re.search(r'data-aged="points">[0-9,]+<', text)
    assert re.search(r'data-job="birthday">2026-11-25T09:30:00\+08:00<', text)
    assert "sent=12, failed=1" in text
    assert re.search(r'data-job="dormant">2026-11-25T10:30:00\+08:00<', text)
    assert re.search(r'data-job="wakeup">never<', text)
    taken = 6 - 3  # six welcome coupons; the expired ones of a, d and f went back (回流)
    assert re.search(rf'data-stock="welcome">{1_000_000 - taken:,}<', text)
    data = re.search(r'<script id="report-data" type="application/json">(.*?)</script>',
                     text, re.S).group(1)
    assert json.loads(data)["members"]["total"] == 6
    bad = await (await client.get("/admin?as_of=yesterday")).text()
    assert "as_of must be YYYY-MM-DD" in bad


async def test_the_job_table_shows_the_last_result_the_runner_recorded(client, now):
    ctx = client.app[CTX]
    env = ctx  # jobs receive the app's context
    summary = await run_kind(env, "housekeeping", now)
    assert summary.due == 0
    await login(client)
    text = await (await client.get("/admin")).text()
    row = re.search(r'data-job="housekeeping">([^<]+)</td>\s*<td class="small">([^<]*)</td>',
                    text)
    assert row is not None and row.group(1) != "never"
    assert row.group(2) == "due=0"


async def test_member_lookup_by_code_or_phone_shows_segment_and_tags(client, now):
    ctx = client.app[CTX]
    m = await ctx.members.register("o-look", now)
    await ctx.store.claim("phone", "13912345678", m["member_id"])
    await ctx.members.tag(m["member_id"], now, add=("<b>vip</b>",))
    await login(client)
    for q in (m["member_code"], "13912345678"):
        text = await (await client.get(f"/admin/members?q={q}")).text()
        assert f"会员 <code>{m['member_code']}</code>" in text
        assert 'data-field="segment">未消费<' in text
        assert "&lt;b&gt;vip&lt;/b&gt;" in text and "<b>vip</b>" not in text
    text = await (await client.get("/admin/members?q=000000000000")).text()
    assert "未找到会员" in text


async def test_tags_are_edited_with_a_form_token(client, now):
    ctx = client.app[CTX]
    m = await ctx.members.register("o-tags", now)
    await ctx.members.tag(m["member_id"], now, add=("old",))
    await login(client)
    text = await (await client.get(f"/admin/members?q={m['member_code']}")).text()
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', text).group(1)
    url = f"/admin/members/{m['member_code']}/tags"
    resp = await client.post(url, data={"add": "高潜，门店A", "remove": "old"},
                             allow_redirects=False)
    assert resp.status == 403
    resp = await client.post(url, data={"add": "高潜，门店A", "remove": "old", "csrf": token})
    assert resp.status == 200 and "已保存" in await resp.text()
    assert (await ctx.members.get(m["member_id"])).tags == ["高潜", "门店A"]
    assert await ctx.store.tagged("tags", "门店A") == [m["member_id"]]


async def test_echarts_is_served_from_the_package(client):
    resp = await client.get("/admin/static/echarts.min.js")
    assert resp.status == 200
    body = await resp.read()
    assert len(body) > 500_000 and b"echarts" in body[:5000]
    assert (await client.get("/admin/static/../handlers/admin.py")).status in (403, 404)


async def test_logout_revokes_the_session_on_the_server(client):
    ctx = client.app[CTX]
    cookie = admin.new_session(ctx, time.time())
    client.session.cookie_jar.update_cookies({admin.COOKIE: cookie})
    assert (await client.get("/admin", allow_redirects=False)).status == 200
    resp = await client.post("/admin/logout", allow_redirects=False)
    assert resp.status == 303
    client.session.cookie_jar.update_cookies({admin.COOKIE: cookie})  # a copied cookie
    assert (await client.get("/admin", allow_redirects=False)).status == 303


async def test_dashboard_and_report_show_wecom_confirmation_by_kind(client, now):
    from bot import analytics, report
    from bot.rules.models import Change

    ctx = client.app[CTX]
    mids = [(await ctx.members.register(f"o-{i}", now))["member_id"] for i in range(5)]
    states = ("confirmed", "confirmed", "unconfirmed", "not_friend", "created")
    for mid, status in zip(mids, states, strict=True):
        await ctx.store.update(mid, lambda m: Change(m, None, [], [
            {"kind": "birthday", "period": "2026"}], None, []))
        await ctx.store.outbox_set(f"{mid}|birthday|2026", status)
    from datetime import datetime

    today = datetime.now(ctx.rules.tz).date()  # the store stamps rows with the wall clock
    r = await analytics.compute(ctx.store, ctx.rules, today, 7)
    assert r["pushes"]["delivery"] == {"birthday": {
        "created": 5, "confirmed": 2, "unconfirmed": 1, "not_friend": 1, "received_other": 0,
        "awaiting": 1}}
    assert r["pushes"]["by_status"]["sent"] == 5
    from rich.console import Console

    console = Console(width=200, record=True)
    for t in report.tables(r):
        console.print(t)
    out = console.export_text()
    assert "企业微信群发确认" in out
    assert re.search(r"birthday\s*│\s*5\s*│\s*2\s*│\s*1\s*│\s*1", out)
    await login(client)
    text = await (await client.get(f"/admin?as_of={today}&days=7")).text()
    row = re.search(r'<tr data-delivery="birthday">(.*?)</tr>', text, re.S).group(1)
    assert re.findall(r"<td>(\d+)</td>", row) == ["5", "2", "1", "1", "0", "1"]
