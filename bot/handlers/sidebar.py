"""``/sidebar``: the sales-staff page in WeCom's chat toolbar (聊天工具栏), PRODUCT.md 5.

Staff identity by WeCom OAuth2: without a session the page answers 302 to WeCom's authorize
URL with a signed, single-use ``state``; the ``code`` it comes back with is exchanged at
``auth/getuserinfo`` for the userid, kept in a signed, expiring (8 h), HttpOnly, SameSite
cookie. The page then asks ``/sidebar/jsapi`` for the wx.config / wx.agentConfig signatures,
learns the customer with ``getCurExternalContact`` and shows ``/sidebar/api/customer``.
Actions are JSON POSTs with a ``request_id`` and the session's CSRF token in
``X-CSRF-Token``. Everything else is in :mod:`bot.staff`.

Preview (``MEMBERBOT_SIDEBAR_PREVIEW=1``, never in production):
``/sidebar?preview_member=<member code>&preview_staff=<userid>`` opens the page without WeCom.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from markupsafe import Markup
from yarl import URL

from ..channels.wecom import WeComClient, WeComError
from ..context import CTX, Context
from ..rules.models import Refusal
from ..staff import STATE_TTL, StaffDesk
from ..templating import render_html
from .admin import STATIC

log = logging.getLogger("memberbot.sidebar")

COOKIE = "memberbot_staff"
SESSION_S = 8 * 3600
AUTHORIZE = "https://open.weixin.qq.com/connect/oauth2/authorize"
JSSDK = ("https://res.wx.qq.com/open/js/jweixin-1.2.0.js",
         "https://open.work.weixin.qq.com/wwopen/js/jwxwork-1.0.0.js")
FORBIDDEN = {"not_your_customer", "role_coupon", "role_adjust", "adjust_cap",
             "adjust_daily_cap"}
BAD_INPUT = {"adjust_reason", "request_id", "bad_field", "coupon_unknown_template"}


def _headers(preview: bool) -> dict[str, str]:
    scripts = "'self'" if preview else "'self' " + " ".join(
        f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" for u in JSSDK)
    return {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": f"default-src 'self'; script-src {scripts}; "
                                       "style-src 'self' 'unsafe-inline'; "
                                       "img-src 'self' data:; connect-src 'self'; "
                                       "form-action 'self'; frame-ancestors 'none'"}


@dataclasses.dataclass
class Session:
    sid: str
    userid: str
    preview: bool


class Sidebar:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.desk = StaffDesk(ctx.members, ctx.settings)
        self.wall = time.time  # the session clock (tests move it)
        self.key = hashlib.sha256(f"memberbot sidebar v1|{ctx.settings.data_key}"
                                  .encode()).digest()

    @property
    def wecom(self) -> WeComClient | None:
        return self.ctx.sidebar_wecom

    # -- signing ---------------------------------------------------------------------------------
    def _mac(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def new_cookie(self, userid: str, preview: bool, now: float) -> str:
        sid = secrets.token_urlsafe(9)
        uid = base64.urlsafe_b64encode(userid.encode()).decode().rstrip("=")
        body = f"{sid}.{uid}.{int(now) + SESSION_S}.{'p' if preview else 'w'}"
        return f"{body}.{self._mac(body)}"

    def session(self, request: web.Request) -> Session | None:
        parts = request.cookies.get(COOKIE, "").split(".")
        if len(parts) != 5 or not parts[2].isdigit():
            return None
        if not hmac.compare_digest(self._mac(".".join(parts[:4])), parts[4]):
            return None
        if int(parts[2]) <= self.wall():
            return None
        preview = parts[3] == "p"
        if preview and not self.ctx.settings.sidebar_preview:
            return None
        try:
            userid = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode()
        except ValueError:
            return None
        return Session(parts[0], userid, preview)

    def csrf(self, s: Session) -> str:
        return self._mac(f"csrf|{s.sid}|{s.userid}")

    def _set_cookie(self, resp: web.StreamResponse, request: web.Request, userid: str,
                    preview: bool) -> None:
        secure = request.secure or self.ctx.settings.public_url.startswith("https://")
        resp.set_cookie(COOKIE, self.new_cookie(userid, preview, self.wall()),
                        max_age=SESSION_S, httponly=True, samesite="Lax", path="/sidebar",
                        secure=secure)

    # -- OAuth2 ----------------------------------------------------------------------------------
    def page_url(self, request: web.Request) -> str:
        base = self.ctx.settings.public_url or f"{request.scheme}://{request.host}"
        return f"{base}/sidebar"

    def authorize_url(self, request: web.Request, state: str) -> str:
        s = self.ctx.settings
        return (f"{AUTHORIZE}?appid={quote(s.wecom_corp_id, safe='')}"
                f"&redirect_uri={quote(self.page_url(request), safe='')}"
                f"&response_type=code&scope=snsapi_base&state={quote(state, safe='')}"
                f"&agentid={quote(s.wecom_agent_id, safe='')}#wechat_redirect")

    def new_state(self) -> str:
        """A signed nonce with its expiry: nothing is stored until it comes back."""
        body = f"{self.desk.new_nonce()}.{int(self.wall()) + STATE_TTL}"
        return f"{body}.{self._mac('state|' + body)[:32]}"

    async def take_state(self, state: str) -> bool:
        """True once for a state this service signed that has not expired."""
        parts = state.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return False
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._mac("state|" + body)[:32], parts[2]):
            return False
        left = int(parts[1]) - self.wall()
        return left > 0 and await self.desk.use_nonce(parts[0], left)

    # -- the page --------------------------------------------------------------------------------
    def _page(self, status: int = 200, **kw: Any) -> web.Response:
        kw.setdefault("preview", False)
        kw.setdefault("problem", None)
        resp = web.Response(text=render_html("sidebar/page.html", jssdk=JSSDK, **kw),
                            status=status, content_type="text/html", charset="utf-8")
        resp.headers.update(_headers(kw["preview"]))
        return resp

    def _render(self, s: Session, preview_member: str = "") -> web.Response:
        cfg = {"csrf": self.csrf(s), "preview": s.preview, "preview_member": preview_member,
               "staff": s.userid}
        return self._page(preview=s.preview, cfg=_json_for_script(cfg), staff=s.userid,
                          preview_member=preview_member)

    async def page(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        settings = self.ctx.settings
        if "preview_member" in q or "preview_staff" in q:
            if not settings.sidebar_preview:
                return self._page(403, problem="预览模式未开启：设置 MEMBERBOT_SIDEBAR_PREVIEW=1"
                                  "（生产环境不可用） / preview mode is off")
            staff = q.get("preview_staff", "").strip()
            member = q.get("preview_member", "").strip()
            if not staff or not member:
                return self._page(400, problem="preview_member 和 preview_staff 都需要 / "
                                  "preview needs preview_member and preview_staff")
            s = self.session(request)
            if s is None or s.userid != staff or not s.preview:
                # the CSRF token belongs to the cookie's session: set it, load the page again
                resp = web.HTTPFound(request.path_qs)
                self._set_cookie(resp, request, staff, True)
                raise resp
            return self._render(s, member)
        if "code" in q or "state" in q:
            return await self._oauth_return(request)
        s = self.session(request)
        if s is not None and not s.preview:
            return self._render(s)
        if not (settings.wecom_corp_id and settings.wecom_agent_id):
            return self._page(503, problem="侧边栏未配置：需要 WECOM_CORP_ID 和 WECOM_AGENT_ID / "
                              "set WECOM_CORP_ID and WECOM_AGENT_ID")
        state = self.new_state()
        # as built: the redirect_uri stays percent-encoded, as WeCom requires
        raise web.HTTPFound(URL(self.authorize_url(request, state), encoded=True))

    async def _oauth_return(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if not await self.take_state(q.get("state", "")):
            return self._page(403, problem="登录链接无效或已使用，请从企业微信侧边栏重新打开 / "
                              "invalid or reused state")
        if self.wecom is None:
            return self._page(503, problem="WECOM_CORP_ID / WECOM_AGENT_SECRET 未配置")
        try:
            userid = await self.desk.login(self.wecom, q.get("code", ""))
        except Refusal as e:
            return self._page(403, problem=e.message)
        resp = web.HTTPFound("/sidebar")
        self._set_cookie(resp, request, userid, False)
        raise resp

    # -- JSON ------------------------------------------------------------------------------------
    def _require(self, request: web.Request) -> Session:
        s = self.session(request)
        if s is None:
            raise _json_error(401, "no_session", "登录已过期，请重新打开侧边栏")
        return s

    def _customer(self, s: Session, data: Any) -> dict[str, str]:
        eu = str(data.get("external_userid") or "").strip()
        code = str(data.get("member_code") or "").strip()
        if s.preview and code:
            return {"member_code": code}
        if not eu:
            raise _json_error(400, "bad_field", "external_userid is required",
                              field="external_userid")
        return {"external_userid": eu}

    async def jsapi(self, request: web.Request) -> web.Response:
        self._require(request)
        url = request.query.get("url", "")
        page = self.page_url(request)
        if not (url == page or url.startswith(page + "?") or url.startswith(page + "#")):
            raise _json_error(400, "bad_field", f"url must be this page ({page}…)", field="url")
        if self.wecom is None:
            raise _json_error(503, "wecom_not_configured", "WECOM_CORP_ID / secret not set")
        try:
            data = await self.desk.signatures(self.wecom, url, self.ctx.now())
        except WeComError as e:
            log.warning("jsapi ticket failed: %s", e)
            raise _json_error(502, "wecom_error", f"WeCom errcode {e.errcode}") from None
        return web.json_response(data, headers={"Cache-Control": "no-store"})

    async def customer(self, request: web.Request) -> web.Response:
        s = self._require(request)
        who = self._customer(s, request.query)
        staff = self.desk.staff(s.userid)
        try:
            card = await self.desk.customer(staff, self.ctx.now(), **who)
        except Refusal as e:
            raise self._refused(e) from None
        return web.json_response(card, dumps=_dumps, headers={"Cache-Control": "no-store"})

    async def _action(self, request: web.Request) -> tuple[Session, dict]:
        s = self._require(request)
        token = request.headers.get("X-CSRF-Token", "")
        if not hmac.compare_digest(token, self.csrf(s)):
            raise _json_error(403, "csrf", "invalid CSRF token: reload the page")
        try:
            data = await request.json()
        except ValueError:
            raise _json_error(400, "bad_json", "the body must be JSON") from None
        if not isinstance(data, dict):
            raise _json_error(400, "bad_json", "the body must be a JSON object")
        return s, data

    async def coupons(self, request: web.Request) -> web.Response:
        s, data = await self._action(request)
        who = self._customer(s, data)
        try:
            res = await self.desk.issue_coupon(self.desk.staff(s.userid),
                                               str(data.get("template") or ""),
                                               str(data.get("request_id") or ""),
                                               self.ctx.now(), **who)
        except Refusal as e:
            raise self._refused(e) from None
        return web.json_response(res, dumps=_dumps)

    async def points(self, request: web.Request) -> web.Response:
        s, data = await self._action(request)
        who = self._customer(s, data)
        pts = data.get("points")
        if isinstance(pts, bool) or not isinstance(pts, int):
            raise _json_error(400, "bad_field", "points must be a whole number", field="points")
        try:
            res = await self.desk.adjust_points(self.desk.staff(s.userid), pts,
                                                str(data.get("reason") or ""),
                                                str(data.get("request_id") or ""),
                                                self.ctx.now(), **who)
        except Refusal as e:
            raise self._refused(e) from None
        return web.json_response(res, dumps=_dumps)

    def _refused(self, e: Refusal) -> web.HTTPException:
        if e.code == "not_member":
            return _json_error(404, e.code, e.message, **{
                k: v for k, v in self.desk.join_hint().items() if k not in ("code", "message")})
        status = 403 if e.code in FORBIDDEN else 400 if e.code in BAD_INPUT else 409
        return _json_error(status, e.code, e.message, **{
            k: v for k, v in e.data.items() if isinstance(v, str | int)})


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _json_error(status: int, code: str, message: str, **extra: Any) -> web.HTTPException:
    body = _dumps({**extra, "code": code, "message": message})
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
           404: web.HTTPNotFound, 409: web.HTTPConflict, 502: web.HTTPBadGateway,
           503: web.HTTPServiceUnavailable}[status]
    return cls(text=body, content_type="application/json")


def _json_for_script(data: Any) -> Markup:
    text = json.dumps(data, ensure_ascii=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


SIDEBAR = web.AppKey("sidebar", Sidebar)


def setup(app: web.Application) -> None:
    sb = Sidebar(app[CTX])
    app[SIDEBAR] = sb
    app.router.add_get("/sidebar", sb.page)
    app.router.add_get("/sidebar/jsapi", sb.jsapi)
    app.router.add_get("/sidebar/api/customer", sb.customer)
    app.router.add_post("/sidebar/api/coupons", sb.coupons)
    app.router.add_post("/sidebar/api/points", sb.points)
    app.router.add_static("/sidebar/static", STATIC, append_version=False)
