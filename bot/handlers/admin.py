"""``/admin``: the operators' dashboard (PRODUCT.md 7), behind MEMBERBOT_ADMIN_PASSWORD.

A signed, expiring session cookie after a password login; without a configured password the
whole area answers with a page that says how to enable it. Figures come from
:mod:`bot.analytics` (the ledger), drawn with the ECharts copy served from ``bot/static``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from markupsafe import Markup

from .. import keys
from ..context import CTX, Context
from ..jobs.base import last_run
from ..jobs.registry import JOBS
from ..rules.models import Refusal
from ..staff import StaffDesk
from ..templating import render_html
from .guard import client_address, health

COOKIE = "memberbot_admin"
SESSION_S = 8 * 3600
LOGIN_TRIES = 10  # failures per (account, client address) per 5 minutes
LOGIN_WINDOW = 300
FLASH_S = 300
COOKIE_SHAPE = re.compile(r"([A-Za-z0-9_-]{1,64})\.([0-9]{1,12})\.([0-9a-f]{64})")
EARLIEST = date(2000, 1, 1)  # analytics reach back from as_of: bound it both ways
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
    m = COOKIE_SHAPE.fullmatch(request.cookies.get(COOKIE, ""))
    if m is None:  # anything else (non-ASCII, '²', garbage) is simply no session
        return None
    sid, expires, mac = m.groups()
    if not hmac.compare_digest(_mac(ctx, f"{sid}.{expires}"), mac):
        return None
    return sid if int(expires) > time.time() else None


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
    # failures only, per account and client address: nobody can lock out everyone
    account = str(form.get("user") or "admin")[:64]
    failures = keys.admin_login_failures(account, client_address(request))
    if int(await ctx.members.cached(failures) or 0) >= LOGIN_TRIES:
        return page("login.html", status=429, error="尝试次数过多，请 5 分钟后再试 / too many "
                    "attempts, wait 5 minutes", next=target)
    given = str(form.get("password") or "").encode()
    if not hmac.compare_digest(hashlib.sha256(given).digest(),
                               hashlib.sha256(ctx.settings.admin_password.encode()).digest()):
        await ctx.members.count(failures, LOGIN_WINDOW)
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
    latest = today + timedelta(days=366)
    try:
        as_of = date.fromisoformat(request.query.get("as_of") or today.isoformat())
    except ValueError:
        as_of, error = today, "日期格式应为 YYYY-MM-DD / as_of must be YYYY-MM-DD"
    if not EARLIEST <= as_of <= latest:
        as_of, error = today, (f"日期应在 {EARLIEST} 至 {latest} 之间 / as_of must be between "
                               f"{EARLIEST} and {latest}")
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


async def _stock(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    for tpl in ctx.rules.coupons.values():
        remaining = await ctx.members.stock_left(tpl.key)
        rows.append({"key": tpl.key, "name": tpl.name, "label": tpl.label(), "total": tpl.stock,
                     "remaining": remaining,
                     "taken": None if remaining is None else tpl.stock - remaining})
    return rows


@guarded
async def dashboard(request: web.Request, sid: str) -> web.Response:
    ctx = request.app[CTX]
    as_of, days, error = _period(request, ctx)
    report = await ctx.members.report(as_of, days)
    return page("dashboard.html", r=report, data=_json_for_script(report), error=error,
                stock=await _stock(ctx), jobs=await _jobs(ctx), csrf=csrf_token(request, sid))


def mask_phone(phone: str | None) -> str:
    if not phone:
        return "—"
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****"


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
    # a notice only the server set (never text from the URL), shown once
    flash = keys.admin_flash(sid)
    message = await ctx.members.cached(flash)
    if message is not None:
        await ctx.members.forget(flash)
    return page("member.html", q=q, m=info, error=error, csrf=csrf_token(request, sid),
                message=message)


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

    await ctx.members.cache(keys.admin_flash(sid), msg, FLASH_S)
    raise web.HTTPSeeOther(f"/admin/members?{urlencode({'q': code})}")


@guarded
async def health_details(request: web.Request, sid: str) -> web.Response:
    """/healthz with what the public does not see: store status and paths, problems."""
    h = await health(request.app[CTX])
    resp = web.json_response(h, status=200 if h["ok"] else 503)
    resp.headers.update({"Cache-Control": "no-store"})
    return resp


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
    app.router.add_get("/admin/health", health_details)
    app.router.add_get("/admin/audit", audit)
    app.router.add_post("/admin/members/{member_code}/tags", edit_tags)
    app.router.add_static("/admin/static", STATIC, append_version=False)
