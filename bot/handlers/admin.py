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
import re
import secrets
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from aiohttp import web
from markupsafe import Markup

from .. import keys
from ..admins import BOOTSTRAP, allows
from ..channels.wechat_card import CardAPI
from ..context import CTX, Context
from ..jobs.base import last_run
from ..jobs.registry import JOBS
from ..jobs.runner import run_kind
from ..masking import mask_phone
from ..rules.models import Refusal
from ..staff import StaffDesk
from ..templating import render_html
from .guard import client_address, health

log = logging.getLogger("memberbot.admin")

COOKIE = "memberbot_admin"
ADMIN = web.RequestKey("admin", dict)  # the signed-in account: {"name", "role"}
SESSION_S = 8 * 3600
LOGIN_TRIES = 10  # failures per (account, client address) per 5 minutes
LOGIN_WINDOW = 300
FLASH_S = 300
# sid.expiry.account.mac: anything else (non-ASCII, '²', garbage) is simply no session
COOKIE_SHAPE = re.compile(r"([A-Za-z0-9_-]{1,64})\.([0-9]{1,12})\.([^.]{1,128})\.([0-9a-f]{64})")
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


def new_session(ctx: Context, now: float, user: str = BOOTSTRAP) -> str:
    sid = secrets.token_urlsafe(12)
    body = f"{sid}.{int(now) + SESSION_S}.{user}"
    return f"{body}.{_mac(ctx, body)}"


def _cookie(request: web.Request) -> tuple[str, str] | None:
    """(session id, account name) of a valid, unexpired cookie."""
    ctx = request.app[CTX]
    m = COOKIE_SHAPE.fullmatch(request.cookies.get(COOKIE, ""))
    if m is None:
        return None
    sid, expires, user, mac = m.groups()
    if not hmac.compare_digest(_mac(ctx, f"{sid}.{expires}.{user}").encode(), mac.encode()):
        return None
    return (sid, user) if int(expires) > time.time() else None


def session(request: web.Request) -> str | None:
    """The session id of a valid, unexpired cookie."""
    c = _cookie(request)
    return c[0] if c else None


async def enabled(ctx: Context) -> bool:
    """/admin opens with MEMBERBOT_ADMIN_PASSWORD or once an account exists."""
    return bool(ctx.settings.admin_password) or await ctx.accounts.any()


async def role_of(ctx: Context, user: str) -> str | None:
    """The role of a signed-in account now (None: disabled or gone): read on every request,
    so a disabled account or a changed role takes effect at once."""
    if user == BOOTSTRAP:
        return "admin" if ctx.settings.admin_password else None
    acc = await ctx.accounts.get(user)
    return None if acc is None or acc.disabled else acc.role


def csrf_token(request: web.Request, sid: str) -> str:
    return _mac(request.app[CTX], f"csrf|{sid}")


def page(name: str, status: int = 200, **ctx: Any) -> web.Response:
    resp = web.Response(text=render_html(f"admin/{name}", **ctx), status=status,
                        content_type="text/html", charset="utf-8")
    resp.headers.update(HEADERS)
    return resp


def guarded(fn: Any = None, *, role: str = "viewer") -> Any:
    """Disabled without a password or an account; to the login page without a valid
    session; 403 for a role below ``role``. The account is ``request[ADMIN]``."""
    if fn is None:
        return lambda f: guarded(f, role=role)

    async def handler(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CTX]
        if not await enabled(ctx):
            return page("disabled.html", status=403)
        c = _cookie(request)
        if c is not None and await ctx.members.cached(keys.admin_revoked(c[0])):
            c = None  # logged out: the cookie alone is no longer enough
        have = await role_of(ctx, c[1]) if c is not None else None
        if c is None or have is None:
            raise web.HTTPSeeOther(f"/admin/login?next={_safe_next(request.path_qs)}")
        request[ADMIN] = {"name": c[1], "role": have}
        if not allows(have, role):
            return page("forbidden.html", status=403, need=role, me=request[ADMIN])
        return await fn(request, c[0])

    return handler


def _safe_next(target: str) -> str:
    from urllib.parse import quote

    return quote(target if target.startswith("/admin") and "//" not in target else "/admin",
                 safe="/?=&")


# -- login ------------------------------------------------------------------------------------
async def login_form(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    if not await enabled(ctx):
        return page("disabled.html", status=403)
    return page("login.html", error=None, next=request.query.get("next", "/admin"),
                bootstrap=bool(ctx.settings.admin_password))


async def login(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    if not await enabled(ctx):
        return page("disabled.html", status=403)
    form = await request.post()
    target = str(form.get("next") or "/admin")
    if not target.startswith("/admin") or "//" in target:
        target = "/admin"
    name = str(form.get("name") or "").strip().lower()[:64] or BOOTSTRAP
    # failures only, per account and client address: nobody can lock out everyone
    failures = keys.admin_login_failures(name, client_address(request))
    if int(await ctx.members.cached(failures) or 0) >= LOGIN_TRIES:
        return page("login.html", status=429, error="尝试次数过多，请 5 分钟后再试 / too many "
                    "attempts, wait 5 minutes", next=target)
    password = str(form.get("password") or "")
    user = None
    if name == BOOTSTRAP:
        pw = ctx.settings.admin_password
        if pw and hmac.compare_digest(hashlib.sha256(password.encode()).digest(),
                                      hashlib.sha256(pw.encode()).digest()):
            user = BOOTSTRAP
    else:
        acc = await ctx.accounts.verify(name, password)
        user = acc.name if acc is not None else None
    if user is None:
        await ctx.members.count(failures, LOGIN_WINDOW)
        return page("login.html", status=401, error="账号或密码错误 / wrong name or password",
                    next=target, bootstrap=bool(ctx.settings.admin_password))
    resp = web.HTTPSeeOther(target)
    resp.set_cookie(COOKIE, new_session(ctx, time.time(), user), max_age=SESSION_S,
                    httponly=True, samesite="Strict", path="/admin", secure=request.secure)
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


async def _webhooks(ctx: Context) -> list[dict[str, Any]]:
    delivery = ctx.webhooks
    if delivery is None:
        return []
    out = []
    for ep in delivery.endpoints:
        st = await delivery.state(ep)
        u = urlparse(ep.url)
        # a webhook that delivered nothing yet (or only failed) has no last event
        out.append({"name": ep.name, "url": f"{u.scheme}://{u.netloc}{u.path}",
                    "events": ep.events, "last_event": None, "last_error": "", **st})
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
                webhooks=await _webhooks(ctx), csrf=csrf_token(request, sid),
                can_run=allows(request[ADMIN]["role"], "operator"))


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
            try:
                pg = max(1, min(int(request.query.get("page") or 1), 10_000))
            except ValueError:
                pg = 1
            info["ledger"], info["more"] = await ctx.members.ledger_page(m.id, pg)
            info["page"] = pg
            me = request[ADMIN]
            info["can_edit"] = allows(me["role"], "operator")
            if info["can_edit"]:
                role = StaffDesk(ctx.members, ctx.settings).admin_staff(me["name"], me["role"])
                info["templates"] = [{"key": k, "name": ctx.rules.coupons[k].name}
                                     for k in role.role.coupons if k in ctx.rules.coupons]
                info["cap"] = role.role.adjust_per_action
    # a notice only the server set (never text from the URL), shown once
    flash = keys.admin_flash(sid)
    message = await ctx.members.cached(flash)
    if message is not None:
        await ctx.members.forget(flash)
    return page("member.html", q=q, m=info, error=error, csrf=csrf_token(request, sid),
                message=message, me=request.get(ADMIN),
                request_id=secrets.token_urlsafe(12))


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


async def _member_form(request: web.Request, sid: str) -> tuple[Any, str, Any]:
    """The posted form (CSRF checked), the member code and the member id."""
    ctx = request.app[CTX]
    form = await request.post()
    if not hmac.compare_digest(str(form.get("csrf", "")), csrf_token(request, sid)):
        raise web.HTTPForbidden(text="invalid form token; reload the page")
    code = request.match_info["member_code"]
    mid = await ctx.members.resolve(member_code=code)
    if mid is None:
        raise web.HTTPNotFound(text="no such member")
    return form, code, mid


async def _back(request: web.Request, sid: str, code: str, msg: str) -> web.HTTPSeeOther:
    """Back to the member's page with ``msg`` as a flash: kept under the session, shown once,
    never carried in the URL (where anyone could write one into a link)."""
    from urllib.parse import urlencode

    await request.app[CTX].members.cache(keys.admin_flash(sid), msg, FLASH_S)
    return web.HTTPSeeOther(f"/admin/members?{urlencode({'q': code})}")


@guarded(role="operator")
async def adjust_points(request: web.Request, sid: str) -> web.StreamResponse:
    """Points up or down with a reason, within the role's caps: the sidebar's use case, so
    the audit trail (/admin/audit) shows it like any staff adjustment."""
    ctx = request.app[CTX]
    form, code, _mid = await _member_form(request, sid)
    me = request[ADMIN]
    desk = StaffDesk(ctx.members, ctx.settings)
    try:
        delta = int(str(form.get("delta", "")).strip())
    except ValueError:
        raise await _back(request, sid, code,
                          "积分须为整数 / points must be a whole number") from None
    try:
        res = await desk.adjust_points(desk.admin_staff(me["name"], me["role"]), delta,
                                       str(form.get("reason", "")),
                                       str(form.get("request_id", "")), ctx.now(),
                                       member_code=code)
        msg = f"已调整 {delta:+d} 积分，余额 {res['balance']} / adjusted"
    except Refusal as e:
        msg = e.message
    raise await _back(request, sid, code, msg)


@guarded(role="operator")
async def issue_coupon(request: web.Request, sid: str) -> web.StreamResponse:
    ctx = request.app[CTX]
    form, code, _mid = await _member_form(request, sid)
    me = request[ADMIN]
    desk = StaffDesk(ctx.members, ctx.settings)
    try:
        res = await desk.issue_coupon(desk.admin_staff(me["name"], me["role"]),
                                      str(form.get("template", "")),
                                      str(form.get("request_id", "")), ctx.now(),
                                      member_code=code)
        msg = f"已发放 {res['name']} {res['code']} / issued"
    except Refusal as e:
        msg = e.message
    raise await _back(request, sid, code, msg)


@guarded(role="operator")
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
                              by=f"admin:{request[ADMIN]['name']}")
    except Refusal as e:
        msg = e.message
    raise await _back(request, sid, code, msg)


@guarded(role="admin")
async def health_details(request: web.Request, sid: str) -> web.Response:
    """/healthz with what the public does not see: store status and paths, problems."""
    h = await health(request.app[CTX])
    resp = web.json_response(h, status=200 if h["ok"] else 503)
    resp.headers.update({"Cache-Control": "no-store"})
    return resp


@guarded(role="operator")
async def run_job(request: web.Request, sid: str) -> web.Response:
    """Preview a job (a dry run showing 3 rendered messages, members masked) or run it now,
    as ``memberbot jobs run KIND [--dry-run --show 3]`` would; a real run is audited."""
    ctx = request.app[CTX]
    form = await request.post()
    if not hmac.compare_digest(str(form.get("csrf", "")), csrf_token(request, sid)):
        raise web.HTTPForbidden(text="invalid form token; reload the page")
    kind = request.match_info["kind"]
    if kind not in JOBS or kind == "welcome":
        raise web.HTTPNotFound(text="no such job to run")
    preview = str(form.get("mode", "preview")) != "run"
    now = ctx.now()
    if not preview:
        await ctx.members.ensure_stock()
    summary = await run_kind(ctx, kind, now, dry_run=preview, show=3 if preview else 0)
    me = request[ADMIN]
    if not preview:
        info = ", ".join(f"{k}={v}" for k, v in summary.result().items())
        await ctx.accounts.log(now, "run job", kind, "—", info, by=f"admin:{me['name']}")
    return page("job_result.html", kind=kind, preview=preview,
                lines=summary.lines() + summary.previews())


@guarded(role="admin")
async def audit(request: web.Request, sid: str) -> web.Response:
    """Staff actions from the sidebar (points adjustments, coupons), newest first."""
    ctx = request.app[CTX]
    try:
        days = max(1, min(int(request.query.get("days") or 30), 3660))
    except ValueError:
        days = 30
    staff = request.query.get("staff", "").strip()
    rows = await StaffDesk(ctx.members, ctx.settings).audit(ctx.now(), days=days, staff=staff)
    return page("audit.html", rows=rows, days=days, staff=staff,
                accounts=await ctx.accounts.history())


def setup(app: web.Application) -> None:
    app.router.add_get("/admin", dashboard)
    app.router.add_get("/admin/login", login_form)
    app.router.add_post("/admin/login", login)
    app.router.add_post("/admin/logout", logout)
    app.router.add_get("/admin/members", member_lookup)
    app.router.add_get("/admin/health", health_details)
    app.router.add_get("/admin/audit", audit)
    app.router.add_post("/admin/members/{member_code}/tags", edit_tags)
    app.router.add_post("/admin/members/{member_code}/points", adjust_points)
    app.router.add_post("/admin/jobs/{kind}", run_job)
    app.router.add_post("/admin/members/{member_code}/coupons", issue_coupon)
    app.router.add_static("/admin/static", STATIC, append_version=False)
