"""The /admin session: a signed, expiring cookie after a password login (the bootstrap
``admin`` with MEMBERBOT_ADMIN_PASSWORD, or an account of :mod:`bot.admins`), its CSRF token,
the role check of every page, and the page frame with its security headers."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web

from ... import keys
from ...admins import BOOTSTRAP, allows
from ...context import CTX, Context
from ...templating import render_html
from ..guard import client_address

COOKIE = "memberbot_admin"
ADMIN = web.RequestKey("admin", dict)  # the signed-in account: {"name", "role"}
SESSION_S = 8 * 3600
LOGIN_TRIES = 10  # failures per (account, client address) per 5 minutes
LOGIN_WINDOW = 300
FLASH_S = 300
# sid.expiry.account.mac: anything else (non-ASCII, '²', garbage) is simply no session
COOKIE_SHAPE = re.compile(r"([A-Za-z0-9_-]{1,64})\.([0-9]{1,12})\.([^.]{1,128})\.([0-9a-f]{64})")
EARLIEST = date(2000, 1, 1)  # analytics reach back from as_of: bound it both ways
STATIC = Path(__file__).resolve().parent.parent.parent / "static"
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


async def posted_form(request: web.Request, sid: str) -> Any:
    """The posted form, once its CSRF token is this session's (403 otherwise)."""
    form = await request.post()
    if not hmac.compare_digest(str(form.get("csrf", "")), csrf_token(request, sid)):
        raise web.HTTPForbidden(text="invalid form token; reload the page")
    return form


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
