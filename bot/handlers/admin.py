"""``/admin``: the operators' dashboard (PRODUCT.md 7), behind MEMBERBOT_ADMIN_PASSWORD.

A signed, expiring session cookie after a password login; without a configured password the
whole area answers with a page that says how to enable it. Figures come from
:mod:`bot.analytics` (the ledger), drawn with the ECharts copy served from ``bot/static``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from aiohttp import web
from markupsafe import Markup

from .. import keys
from ..channels.wechat_card import CardAPI
from ..context import CTX, Context
from ..jobs.base import last_run
from ..jobs.registry import JOBS
from ..masking import mask_phone
from ..rules.models import Refusal
from ..staff import StaffDesk
from ..templating import render_html

log = logging.getLogger("memberbot.admin")

COOKIE = "memberbot_admin"
SESSION_S = 8 * 3600
LOGIN_TRIES = 10  # per client address per 5 minutes
STATIC = Path(__file__).resolve().parent.parent / "static"
HEADERS = {
    "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'",
}


# -- sessions ---------------------------------------------------------------------------------
def _key(ctx: Context) -> bytes:
    """Derived from the data key and the password: changing the password ends all sessions."""
    return hashlib.sha256(f"memberbot admin v1|{ctx.settings.data_key}|"
                          f"{ctx.settings.admin_password}".encode()).digest()


def _mac(ctx: Context, text: str) -> str:
    return hmac.new(_key(ctx), text.encode(), hashlib.sha256).hexdigest()


def new_session(ctx: Context, now: float) -> str:
    sid = secrets.token_urlsafe(12)
    body = f"{sid}.{int(now) + SESSION_S}"
    return f"{body}.{_mac(ctx, body)}"


def session(request: web.Request) -> str | None:
    """The session id of a valid, unexpired cookie."""
    ctx = request.app[CTX]
    raw = request.cookies.get(COOKIE, "")
    parts = raw.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    if not hmac.compare_digest(_mac(ctx, f"{parts[0]}.{parts[1]}"), parts[2]):
        return None
    return parts[0] if int(parts[1]) > time.time() else None


def csrf_token(request: web.Request, sid: str) -> str:
    return _mac(request.app[CTX], f"csrf|{sid}")


def page(name: str, status: int = 200, **ctx: Any) -> web.Response:
    resp = web.Response(text=render_html(f"admin/{name}", **ctx), status=status,
                        content_type="text/html", charset="utf-8")
    resp.headers.update(HEADERS)
    return resp


def guarded(fn: Any) -> Any:
    """Disabled without a password; to the login page without a valid session."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if not request.app[CTX].settings.admin_password:
            return page("disabled.html", status=403)
        sid = session(request)
        if sid is not None and await request.app[CTX].members.cached(keys.admin_revoked(sid)):
            sid = None  # logged out: the cookie alone is no longer enough
        if sid is None:
            raise web.HTTPSeeOther(f"/admin/login?next={_safe_next(request.path_qs)}")
        return await fn(request, sid)

    return handler


def _safe_next(target: str) -> str:
    from urllib.parse import quote

    return quote(target if target.startswith("/admin") and "//" not in target else "/admin",
                 safe="/?=&")


# -- login ------------------------------------------------------------------------------------
async def login_form(request: web.Request) -> web.Response:
    if not request.app[CTX].settings.admin_password:
        return page("disabled.html", status=403)
    return page("login.html", error=None, next=request.query.get("next", "/admin"))


async def login(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    if not ctx.settings.admin_password:
        return page("disabled.html", status=403)
    form = await request.post()
    target = str(form.get("next") or "/admin")
    if not target.startswith("/admin") or "//" in target:
        target = "/admin"
    tries = await ctx.members.count(keys.admin_login_tries(str(request.remote)), 300)
    if tries > LOGIN_TRIES:
        return page("login.html", status=429, error="尝试次数过多，请 5 分钟后再试 / too many "
                    "attempts, wait 5 minutes", next=target)
    given = str(form.get("password") or "").encode()
    if not hmac.compare_digest(hashlib.sha256(given).digest(),
                               hashlib.sha256(ctx.settings.admin_password.encode()).digest()):
        return page("login.html", status=401, error="密码错误 / wrong password", next=target)
    resp = web.HTTPSeeOther(target)
    resp.set_cookie(COOKIE, new_session(ctx, time.time()), max_age=SESSION_S, httponly=True,
                    samesite="Strict", path="/admin", secure=request.secure)
    raise resp


async def logout(request: web.Request) -> web.StreamResponse:
    sid = session(request)
    if sid is not None:  # revoke it on the server too, until it would have expired anyway
        await request.app[CTX].members.cache(keys.admin_revoked(sid), "1", SESSION_S)
    resp = web.HTTPSeeOther("/admin/login")
    resp.del_cookie(COOKIE, path="/admin")
    raise resp


# -- pages ------------------------------------------------------------------------------------
def _json_for_script(data: Any) -> Markup:
    """JSON safe to embed in a <script type="application/json"> element."""
    text = json.dumps(data, ensure_ascii=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _period(request: web.Request, ctx: Context) -> tuple[date, int, str | None]:
    today = ctx.now().astimezone(ctx.rules.tz).date()
    error = None
    try:
        as_of = date.fromisoformat(request.query.get("as_of") or today.isoformat())
    except ValueError:
        as_of, error = today, "日期格式应为 YYYY-MM-DD / as_of must be YYYY-MM-DD"
    try:
        days = max(1, min(int(request.query.get("days") or 30), 3660))
    except ValueError:
        days, error = 30, "天数应为整数 / days must be a whole number"
    return as_of, days, error


async def _jobs(ctx: Context) -> list[dict[str, Any]]:
    out = []
    for kind in JOBS:
        when, info = last_run(await ctx.members.cached(keys.job_last(kind)))
        out.append({"kind": kind, "when": when or "never", "ran": bool(when), "info": info})
    return out


async def _webhooks(ctx: Context) -> list[dict[str, Any]]:
    delivery = ctx.webhooks
    if delivery is None:
        return []
    out = []
    for ep in delivery.endpoints:
        st = await delivery.state(ep)
        u = urlparse(ep.url)
        out.append({"name": ep.name, "url": f"{u.scheme}://{u.netloc}{u.path}",
                    "events": ep.events, **st})
    return out


async def _stock(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    for tpl in ctx.rules.coupons.values():
        remaining = await ctx.members.stock_left(tpl.key)
        rows.append({"key": tpl.key, "name": tpl.name, "label": tpl.label(), "total": tpl.stock,
                     "remaining": remaining,
                     "taken": None if remaining is None else tpl.stock - remaining})
    return rows


async def _card(ctx: Context) -> dict[str, Any] | None:
    """The member card: its QR code, holders, sync backlog and failures."""
    if ctx.rules.card is None:
        return None
    return await ctx.members.card_overview(CardAPI(ctx.oa) if ctx.oa is not None else None)


@guarded
async def dashboard(request: web.Request, sid: str) -> web.Response:
    ctx = request.app[CTX]
    as_of, days, error = _period(request, ctx)
    report = await ctx.members.report(as_of, days)
    return page("dashboard.html", r=report, data=_json_for_script(report), error=error,
                stock=await _stock(ctx), jobs=await _jobs(ctx), card=await _card(ctx),
                webhooks=await _webhooks(ctx), csrf=csrf_token(request, sid))


@guarded
async def member_lookup(request: web.Request, sid: str) -> web.Response:
    ctx = request.app[CTX]
    q = request.query.get("q", "").strip()
    info, error = None, None
    if q:
        kind = "member_code" if len(q) == 12 and q.isdigit() else "phone"
        mid = await ctx.members.resolve(**{kind: q})
        m = await ctx.members.get(mid) if mid else None
        if m is None:
            error = "未找到会员 / no member with this code or phone"
        else:
            info = _member_info(ctx, m)
    return page("member.html", q=q, m=info, error=error, csrf=csrf_token(request, sid),
                message=request.query.get("msg"))


def _member_info(ctx: Context, m: Any) -> dict[str, Any]:
    card = ctx.members.card(m, ctx.now())
    tz = ctx.rules.tz
    orders = sorted(m.orders.values(), key=lambda o: o.paid_at, reverse=True)[:10]
    return {
        "card": card, "code": m.member_code, "phone": mask_phone(m.phone),
        "tier_name": card["progress"]["tier_name"], "segment": m.rfm or "未消费",
        "tags": list(m.tags), "joined": datetime.fromtimestamp(m.joined_at, tz)
        .strftime("%Y-%m-%d") if m.joined_at else "—",
        "coupons": [{**c, "valid_until": datetime.fromtimestamp(c["valid_until"], tz)
                     .strftime("%Y-%m-%d %H:%M")} for c in card["coupons"]],
        "orders": [{"id": o.order_id, "paid_at": datetime.fromtimestamp(o.paid_at, tz)
                    .strftime("%Y-%m-%d %H:%M"), "paid_fen": o.paid_fen,
                    "refunded_fen": o.refunded_fen, "points": o.points} for o in orders],
    }


@guarded
async def edit_tags(request: web.Request, sid: str) -> web.StreamResponse:
    ctx = request.app[CTX]
    form = await request.post()
    if not hmac.compare_digest(str(form.get("csrf", "")), csrf_token(request, sid)):
        raise web.HTTPForbidden(text="invalid form token; reload the page")
    code = request.match_info["member_code"]
    mid = await ctx.members.resolve(member_code=code)
    if mid is None:
        raise web.HTTPNotFound(text="no such member")
    add = tuple(t for t in str(form.get("add", "")).replace("，", ",").split(",") if t.strip())
    remove = tuple(form.getall("remove", []))
    msg = "已保存 / saved"
    try:
        await ctx.members.tag(mid, ctx.now(), add=add, remove=tuple(map(str, remove)),
                              by="admin")
    except Refusal as e:
        msg = e.message
    from urllib.parse import urlencode

    raise web.HTTPSeeOther(f"/admin/members?{urlencode({'q': code, 'msg': msg})}")


@guarded
async def audit(request: web.Request, sid: str) -> web.Response:
    """Staff actions from the sidebar (points adjustments, coupons), newest first."""
    ctx = request.app[CTX]
    try:
        days = max(1, min(int(request.query.get("days") or 30), 3660))
    except ValueError:
        days = 30
    staff = request.query.get("staff", "").strip()
    rows = await StaffDesk(ctx.members, ctx.settings).audit(ctx.now(), days=days, staff=staff)
    return page("audit.html", rows=rows, days=days, staff=staff)


def setup(app: web.Application) -> None:
    app.router.add_get("/admin", dashboard)
    app.router.add_get("/admin/login", login_form)
    app.router.add_post("/admin/login", login)
    app.router.add_post("/admin/logout", logout)
    app.router.add_get("/admin/members", member_lookup)
    app.router.add_get("/admin/audit", audit)
    app.router.add_post("/admin/members/{member_code}/tags", edit_tags)
    app.router.add_static("/admin/static", STATIC, append_version=False)
