"""/admin in real headless Chromium: log in through the form, the six ECharts charts are drawn
(canvases with size and painted pixels), and the console stays clean."""

from __future__ import annotations

import pytest

from bot.web import CTX, create_app
from tests.api.support import Clock
from tests.conftest import make_settings

from .seeded import seed_history

PASSWORD = "browser-test-password"


@pytest.fixture
async def server(aiohttp_client, tmp_path, now, monkeypatch):
    app = create_app(make_settings(tmp_path, admin_password=PASSWORD), clock=Clock(now))
    client = await aiohttp_client(app)
    await seed_history(app[CTX].members, monkeypatch)
    return client


async def test_the_dashboard_draws_every_chart_without_console_errors(browser, server):
    base = str(server.make_url("/")).rstrip("/")
    await browser.goto(f"{base}/admin?as_of=2026-11-25&days=7")
    assert await browser.evaluate("location.pathname") == "/admin/login"
    await browser.evaluate(f"""(() => {{
        document.querySelector('input[name=password]').value = {PASSWORD!r};
        document.querySelector('form').submit(); }})()""")
    await browser.wait_for("location.pathname === '/admin' && document.readyState === "
                           "'complete'")
    ready = await browser.wait_for(
        "document.documentElement.dataset.chartsReady || "
        "document.documentElement.dataset.chartsError")
    assert ready == "6", ready
    canvases = await browser.evaluate("""Array.from(document.querySelectorAll(
        '[data-chart]')).map(el => {
          const c = el.querySelector('canvas');
          if (!c) return {chart: el.dataset.chart, canvas: false};
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let painted = 0;
          for (let i = 3; i < d.length; i += 4) if (d[i] > 0) painted++;
          return {chart: el.dataset.chart, canvas: true, w: c.width, h: c.height, painted};
        })""")
    assert [c["chart"] for c in canvases] == ["checkin", "tiers", "rfm", "points", "coupons",
                                              "pushes"]
    for c in canvases:
        assert c["canvas"] and c["w"] > 100 and c["h"] > 100, c
        assert c["painted"] > 500, c  # axes, bars, slices: something was drawn
    kpi = await browser.evaluate(
        "document.querySelector('[data-kpi=card_conversion]').textContent")
    assert kpi == "75.0%"
    assert browser.problems() == []


async def test_the_member_page_renders_cleanly(browser, server):
    base = str(server.make_url("/")).rstrip("/")
    await browser.goto(f"{base}/admin/login")
    await browser.evaluate(f"""(() => {{
        document.querySelector('input[name=password]').value = {PASSWORD!r};
        document.querySelector('form').submit(); }})()""")
    await browser.wait_for("location.pathname === '/admin' && document.readyState === "
                           "'complete'")
    ctx = server.app[CTX]
    code = (await ctx.members.get(await ctx.store.lookup("openid", "o-g"))).member_code
    await browser.goto(f"{base}/admin/members?q={code}")
    assert await browser.evaluate(
        "document.querySelector('[data-field=segment]').textContent") == "重要发展客户"
    assert await browser.evaluate(
        "document.querySelector('[data-field=tier]').textContent") == "金卡会员"
    assert browser.problems() == []


async def test_chinese_on_the_admin_renders_in_a_cjk_font_not_boxes(browser, server, tmp_path):
    """Without a CJK font (Debian: fonts-noto-cjk) Chromium draws 会员 as boxes. The page
    names the font, Chromium reports which one it really used for the text, and in the
    screenshot two different characters come out as two different glyphs (boxes are alike)."""
    import base64

    base = str(server.make_url("/")).rstrip("/")
    await browser.goto(f"{base}/admin/login")
    await browser.send("DOM.enable")
    await browser.send("CSS.enable")
    await browser.evaluate("""(() => { const p = document.createElement('p');
        p.id = 'cjk'; p.textContent = '会员积分等级'; document.body.appendChild(p); })()""")
    root = (await browser.send("DOM.getDocument"))["root"]["nodeId"]
    node = (await browser.send("DOM.querySelector", nodeId=root, selector="#cjk"))["nodeId"]
    fonts = []
    for _ in range(100):  # the new paragraph is laid out and painted on the next frame
        await browser.evaluate("new Promise(r => requestAnimationFrame(() => r(1)))")
        fonts = (await browser.send("CSS.getPlatformFontsForNode", nodeId=node))["fonts"]
        if fonts:
            break
    names = [f["familyName"] for f in fonts]
    assert any("CJK" in n or "Han" in n or "WenQuanYi" in n for n in names), (
        f"Chinese drawn with {names}: install a CJK font (apt-get install fonts-noto-cjk)")
    assert sum(f["glyphCount"] for f in fonts) == 6

    async def shot(text: str) -> bytes:
        await browser.evaluate(f"document.getElementById('cjk').textContent = {text!r}")
        box = await browser.evaluate("""(() => { const r = document.getElementById('cjk')
            .getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()""")
        png = await browser.send("Page.captureScreenshot", format="png", clip={
            "x": box[0], "y": box[1], "width": 40, "height": box[3], "scale": 1})
        return base64.b64decode(png["data"])

    hui, yuan = await shot("会"), await shot("员")
    (tmp_path / "cjk.png").write_bytes(hui)
    assert hui[:8] == b"\x89PNG\r\n\x1a\n" and hui != yuan
