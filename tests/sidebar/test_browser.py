"""The sidebar in real headless Chromium at the chat-toolbar width (360 px), in preview mode:
the card shows what the ledger says, a script is sent with sendChatMessage, issuing a coupon
(two taps: the template, then 确定) updates the card, a double tap on 确定 gives one
coupon, and a points adjustment with a reason shows the new balance. A screenshot is saved
as an artifact (its path is printed)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from bot.rules import points
from bot.rules.timeutil import local_day
from tests.ops.cdp import Browser

from .conftest import STAFF, ctx, seed_customer

WIDTH = 360
# WeCom's JS bridge, recorded: the page sends scripts through wx.invoke("sendChatMessage")
FAKE_WX = """window.__sent = [];
window.wx = {invoke: function (name, args, cb) {
  window.__sent.push({name: name, args: args}); cb({err_msg: name + ':ok'}); }};"""


def artifact_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("MEMBERBOT_ARTIFACTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


async def screenshot(browser: Browser, path: Path) -> None:
    """The whole page: the viewport is grown to the content's height, then captured."""
    height = int(await browser.evaluate("document.documentElement.scrollHeight"))
    await browser.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height,
                       deviceScaleFactor=2, mobile=True)
    await browser.evaluate("new Promise(r => requestAnimationFrame(() => "
                           "requestAnimationFrame(r)))")
    shot = await browser.send("Page.captureScreenshot", format="png")
    path.write_bytes(base64.b64decode(shot["data"]))


async def text(browser: Browser, sel: str) -> str:
    return await browser.evaluate(f"document.querySelector({sel!r}).textContent")


async def test_the_sidebar_card_scripts_and_a_coupon_in_chromium(browser, make_client, now,
                                                                 tmp_path):
    client = await make_client(sidebar_preview=True)
    members = ctx(client).members
    mid = await seed_customer(members, now)
    m = await members.get(mid)
    base = str(client.make_url("/")).rstrip("/")
    await browser.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=720,
                       deviceScaleFactor=1, mobile=True)
    await browser.send("Page.addScriptToEvaluateOnNewDocument", source=FAKE_WX)
    await browser.goto(f"{base}/sidebar?preview_member={m.member_code}&preview_staff={STAFF}")
    assert await browser.wait_for("document.documentElement.dataset.ready") == "card"

    # native WeUI look at the toolbar width, the preview banner, no horizontal scrolling
    assert await browser.evaluate("document.documentElement.clientWidth") == WIDTH
    assert await browser.evaluate("document.documentElement.scrollWidth") <= WIDTH
    assert await browser.evaluate(
        "getComputedStyle(document.querySelector('.weui-cell')).display") == "flex"
    assert "预览模式" in await text(browser, "[data-preview]")

    # the card equals the ledger
    rows = await ctx(client).store.ledger(member_id=mid)
    balance = sum(r.points for r in rows)
    assert balance == points.balance(m, local_day(now, ctx(client).rules.tz))
    assert await text(browser, "[data-field=balance]") == str(balance)
    assert await text(browser, "[data-field=member_code]") == m.member_code
    assert await text(browser, "[data-field=tier]") == "普通会员"
    assert "再消费 ¥1346 升级银卡会员" in await text(browser, "[data-field=progress]")
    assert await text(browser, "[data-field=streak]") == "2 天 · 今日已签"
    assert await browser.evaluate(
        "Array.from(document.querySelectorAll('[data-order]')).map(e => e.dataset.order)"
    ) == ["ORD-0012", "ORD-0011"]
    coupons = [c.code for c in m.coupons if c.status == "issued"]
    assert await browser.evaluate(
        "Array.from(document.querySelectorAll('[data-coupon]')).map(e => e.dataset.coupon)"
    ) == coupons

    # one tap sends a script into the chat
    await browser.evaluate("document.querySelector('[data-script=card]').click()")
    sent = await browser.wait_for("window.__sent.length && window.__sent")
    assert sent[0]["name"] == "sendChatMessage" and sent[0]["args"]["msgtype"] == "text"
    assert m.member_code in sent[0]["args"]["text"]["content"]

    # two taps issue a coupon; a double tap on 确定 is still one coupon
    await browser.evaluate("document.querySelector('[data-issue=wakeup]').click()")
    assert "唤醒券" in await text(browser, "[data-dialog-title]")
    await browser.evaluate("""(() => { const ok = document.querySelector('[data-dialog-ok]');
        ok.click(); ok.click(); })()""")
    await browser.wait_for("document.querySelectorAll('[data-coupon]').length === 2")
    assert await browser.evaluate("document.documentElement.dataset.lastToast") == "已发放"
    m = await members.get(mid)
    issued = [c for c in m.coupons if c.template == "wakeup"]
    assert len(issued) == 1
    audit = [r for r in await ctx(client).store.ledger(member_id=mid)
             if r.kind == "staff_coupon"]
    assert len(audit) == 1 and audit[0].data["staff"] == STAFF
    codes = await browser.evaluate(
        "Array.from(document.querySelectorAll('[data-coupon]')).map(e => e.dataset.coupon)")
    assert issued[0].code in codes

    # a points adjustment with a reason: the card shows the new balance and today's quota
    await browser.evaluate("""(() => {
        document.querySelector('#sb-points').value = '50';
        document.querySelector('#sb-reason').value = '补录门店积分';
        document.querySelector('[data-adjust-submit]').click(); })()""")
    await browser.wait_for(f"document.querySelector('[data-field=balance]').textContent === "
                           f"'{balance + 50}'")
    assert "今日已用 50/1000" in await text(browser, "[data-field=quota]")
    adj = [r for r in await ctx(client).store.ledger(member_id=mid) if r.kind == "adjust"]
    assert [(r.data["delta"], r.data["reason"]) for r in adj] == [(50, "补录门店积分")]

    await browser.evaluate("window.scrollTo(0, 0)")
    await browser.wait_for("document.querySelector('[data-toast]').classList.contains("
                           "'sb-hidden')", timeout=5)
    path = artifact_dir(tmp_path) / "sidebar.png"
    await screenshot(browser, path)
    print(f"\nsidebar screenshot: {path}")
    assert path.stat().st_size > 10_000
    assert browser.problems() == []


async def test_another_staff_members_customer_is_refused_on_the_page(browser, make_client,
                                                                   now):
    client = await make_client(sidebar_preview=True)
    mid = await seed_customer(ctx(client).members, now)
    code = (await ctx(client).members.get(mid)).member_code
    base = str(client.make_url("/")).rstrip("/")
    await browser.goto(f"{base}/sidebar?preview_member={code}&preview_staff=lisi")
    assert await browser.wait_for("document.documentElement.dataset.ready") == "notice"
    assert "不在你的客户列表中" in await text(browser, "[data-notice]")
    assert await browser.evaluate("document.querySelectorAll('[data-issue]').length") == 0


async def test_a_contact_who_is_not_a_member_gets_a_one_tap_invitation(browser, make_client):
    client = await make_client(sidebar_preview=True, join_url="https://brand.test/join")
    base = str(client.make_url("/")).rstrip("/")
    await browser.send("Page.addScriptToEvaluateOnNewDocument", source=FAKE_WX)
    await browser.goto(f"{base}/sidebar?preview_member=999999999999&preview_staff={STAFF}")
    assert await browser.wait_for("document.documentElement.dataset.ready") == "notice"
    assert "还不是会员" in await text(browser, "[data-notice]")
    await browser.evaluate("document.querySelector('[data-send-join]').click()")
    sent = await browser.wait_for("window.__sent.length && window.__sent")
    assert "https://brand.test/join" in sent[0]["args"]["text"]["content"]
    assert [p for p in browser.problems() if "404" not in p] == []  # the card's 404 only


# WeCom's JS-SDK as the page meets it inside WeCom: wx.config, wx.ready, wx.agentConfig and
# getCurExternalContact, recorded; the contact is CUSTOMER.
FAKE_SDK = """window.__calls = [];
window.wx = {
  config: function (o) { window.__calls.push(['config', o]); },
  ready: function (cb) { setTimeout(cb, 0); },
  error: function (cb) {},
  agentConfig: function (o) { window.__calls.push(['agentConfig', o]); setTimeout(o.success, 0); },
  invoke: function (name, args, cb) {
    window.__calls.push([name, args]);
    cb(name === 'getCurExternalContact' ? {err_msg: name + ':ok', userId: '%s'}
                                        : {err_msg: name + ':ok'}); }};"""


async def test_inside_wecom_the_page_signs_in_and_finds_the_customer(browser, make_client,
                                                                     fake, now):
    from bot.handlers.sidebar import COOKIE

    from .conftest import CUSTOMER, login
    from .test_auth import js_sdk_signature

    client = await make_client()
    base = str(client.make_url("/")).rstrip("/")
    ctx(client).settings.public_url = base  # the page's own address, as WeCom opens it
    await seed_customer(ctx(client).members, now)
    await login(client, fake)  # the OAuth round trip (over HTTP: WeCom's host is not called)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/sidebar"))[COOKIE]
    # the browser gets the signed session cookie the login set
    await browser.send("Network.setCookie", name=COOKIE, value=cookie.value,
                       url=f"{base}/sidebar", httpOnly=True)
    # Tencent's script hosts are blocked before any request leaves; the fake SDK stands in
    await browser.send("Network.setBlockedURLs", urls=["*://res.wx.qq.com/*",
                                                       "*://open.work.weixin.qq.com/*"])
    await browser.send("Page.addScriptToEvaluateOnNewDocument", source=FAKE_SDK % CUSTOMER)
    await browser.goto(f"{base}/sidebar")
    assert await browser.wait_for("document.documentElement.dataset.ready") == "card"
    calls = await browser.evaluate("window.__calls")
    assert [c[0] for c in calls] == ["config", "agentConfig", "getCurExternalContact"]
    cfg, agent = calls[0][1], calls[1][1]
    page = f"{base}/sidebar"
    assert cfg["appId"] == fake.corp_id and cfg["beta"] is True
    assert cfg["signature"] == js_sdk_signature(fake.tickets["jsapi"], cfg["nonceStr"],
                                                cfg["timestamp"], page)
    assert agent["corpid"] == fake.corp_id and agent["agentid"] == "1000002"
    assert agent["signature"] == js_sdk_signature(fake.tickets["agent_config"],
                                                  agent["nonceStr"], agent["timestamp"], page)
    assert "getCurExternalContact" in agent["jsApiList"]
    assert await text(browser, "[data-field=nickname]") == "王小明"
    assert "预览模式" not in await browser.evaluate("document.body.textContent")
    # the only failed loads are the two blocked SDK scripts: nothing went out
    blocked = [e["params"] for e in browser.events if e["method"] == "Network.loadingFailed"]
    assert len(blocked) == 2 and all(b.get("blockedReason") for b in blocked), blocked
    assert [p for p in browser.problems() if not p.startswith("network:")] == []
