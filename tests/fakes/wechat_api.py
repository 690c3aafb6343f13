"""A fake Official Account API: a real aiohttp server on a local port (``WECHAT_API_BASE``).

It records every call, issues and checks access tokens, and can be told to fail the next
call with an errcode (42001 expires the current token as WeChat does; 45009 is a rate limit).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from .server import LoopbackServer


@dataclass
class Call:
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    raw: bytes = b""


@dataclass
class FakeWeChatAPI(LoopbackServer):
    appid: str = "wxtestappid"
    secret: str = "test-app-secret"
    calls: list[Call] = field(default_factory=list)
    unionids: dict[str, str] = field(default_factory=dict)  # openid -> unionid
    delay: float = 0.0  # seconds before each answer (an unreachable API)
    _fail: list[int] = field(default_factory=list)
    _tokens: set[str] = field(default_factory=set)
    _expired: set[str] = field(default_factory=set)
    _seq: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    base: str = ""
    # the card API (卡券): created cards, what each code's activation form holds, and each
    # code's state as WeChat shows it in the card wallet
    cards: dict[str, dict] = field(default_factory=dict)
    forms: dict[str, dict] = field(default_factory=dict)  # code -> {field flag: value}
    holders: dict[str, dict] = field(default_factory=dict)  # code -> bonus, field1, active
    invalid_codes: set[str] = field(default_factory=set)  # answer 40056
    pay_rules: list[dict] = field(default_factory=list)  # 支付即会员 rules added
    menu: dict[str, Any] | None = None  # what menu/create set, as menu/get answers it
    _loop: Any = None
    _thread: Any = None

    def fail_next(self, errcode: int) -> None:
        """The next API call (not a token fetch) answers ``errcode``."""
        self._fail.append(errcode)

    def expire_token(self) -> None:
        """The tokens issued so far answer 42001 from now on."""
        self._expired |= self._tokens
        self._tokens = set()

    def to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    @property
    def token_fetches(self) -> int:
        return len(self.to("/cgi-bin/token"))

    async def wait_for(self, path: str, n: int = 1, timeout: float = 5.0) -> list[Call]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while len(self.to(path)) < n:
            if loop.time() > end:
                raise AssertionError(f"{path} called {len(self.to(path))} times, wanted {n}")
            await asyncio.sleep(0.01)
        return self.to(path)

    # -- server -----------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self.token)
        for path in ("/cgi-bin/message/custom/send", "/cgi-bin/message/template/send",
                     "/cgi-bin/qrcode/create"):
            app.router.add_post(path, self.api)
        app.router.add_get("/cgi-bin/user/info", self.api)
        for path in CARD_PATHS:
            app.router.add_post(path, self.api)
        app.router.add_post("/cgi-bin/menu/create", self.api)
        app.router.add_get("/cgi-bin/menu/get", self.api)
        return app

    def set_form(self, code: str, *, mobile: str = "", birthday: str = "",
                 sex: str = "") -> None:
        """What a member typed into the card's activation form."""
        self.forms[code] = {k: v for k, v in (("USER_FORM_INFO_FLAG_MOBILE", mobile),
                                              ("USER_FORM_INFO_FLAG_BIRTHDAY", birthday),
                                              ("USER_FORM_INFO_FLAG_SEX", sex)) if v}

    async def _record(self, request: web.Request) -> Call:
        raw = await request.read()
        call = Call(request.path, dict(request.query), orjson.loads(raw) if raw else None, raw)
        self.calls.append(call)
        if self.delay:
            await asyncio.sleep(self.delay)
        return call

    def _create_menu(self, body: dict[str, Any]) -> dict[str, Any]:
        err = _check_menu(body)
        if err is not None:
            return err
        self.menu = _as_menu_get(body)
        return {"errcode": 0, "errmsg": "ok"}

    async def token(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        q = call.query
        if q.get("appid") != self.appid or q.get("secret") != self.secret:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        tok = f"TOKEN{next(self._seq)}"
        self._tokens = {tok}
        return web.json_response({"access_token": tok, "expires_in": 7200})

    async def api(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        token = call.query.get("access_token")
        if token in self._expired:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        if token not in self._tokens:
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        if self._fail:
            code = self._fail.pop(0)
            if code == 42001:
                self.expire_token()
            return web.json_response({"errcode": code, "errmsg": f"fake failure {code}"})
        if call.path == "/cgi-bin/user/info":
            openid = call.query.get("openid", "")
            info = {"subscribe": 1, "openid": openid, "nickname": "", "language": "zh_CN"}
            if openid in self.unionids:
                info["unionid"] = self.unionids[openid]
            return web.json_response(info)
        if call.path == "/cgi-bin/menu/create":
            return web.json_response(self._create_menu(call.body or {}))
        if call.path == "/cgi-bin/menu/get":
            if self.menu is None:
                return web.json_response({"errcode": 46003, "errmsg": "menu no exist"})
            return web.json_response({"menu": self.menu})
        if call.path == "/cgi-bin/qrcode/create":
            scene = call.body["action_info"]["scene"]["scene_str"]
            return web.json_response({"ticket": f"TICKET/{scene}==", "expire_seconds":
                                      call.body.get("expire_seconds", 0),
                                      "url": f"http://weixin.qq.com/q/{scene}"})
        if call.path.startswith("/card/"):
            return web.json_response(self.card(call))
        if call.path == "/cgi-bin/message/template/send":
            return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": 1000 + len(
                self.calls)})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    # -- the card API -----------------------------------------------------------------------
    def card(self, call: Call) -> dict:
        b = call.body or {}
        p = call.path
        ok = {"errcode": 0, "errmsg": "ok"}
        if p == "/card/create":
            card_id = f"pCARD{len(self.cards) + 1}"
            self.cards[card_id] = {"card": b["card"], "status": "CARD_STATUS_NOT_VERIFY"}
            return {**ok, "card_id": card_id}
        card_id = b.get("card_id") or b.get("action_info", {}).get("card", {}).get("card_id")
        if card_id not in self.cards and p != "/card/paygiftcard/add":
            return {"errcode": 40073, "errmsg": "invalid card id"}
        if p == "/card/membercard/activateuserform/set":
            self.cards[card_id]["form"] = b
            return ok
        if p == "/card/update":
            self.cards[card_id]["update"] = b
            return {**ok, "send_check": False}
        if p == "/card/get":
            c = self.cards[card_id]
            return {**ok, "card": {**c["card"], "status": c["status"]}}
        if p == "/card/qrcode/create":
            c = b["action_info"]["card"]
            tail = f"{c.get('outer_str', '')}-{c.get('code', '')}"
            return {**ok, "ticket": f"CARDTICKET{tail}", "url": f"http://weixin.qq.com/q/{tail}",
                    "show_qrcode_url": f"https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="
                                       f"CARDTICKET{tail}"}
        if p == "/card/paygiftcard/add":
            self.pay_rules.append(b)
            return {**ok, "rule_id": 1001, "succ_mchid_list": b["rule_info"]["base_info"][
                "mchid_list"], "fail_mchid_list": []}
        code = b.get("code", "")
        if code in self.invalid_codes:
            return {"errcode": 40056, "errmsg": "invalid serial code"}
        if p == "/card/membercard/userinfo/get":
            form = self.forms.get(code, {})
            return {**ok, "openid": "", "nickname": "", "membership_number": code, "bonus": 0,
                    "user_card_status": "NORMAL", "has_active": code in self.holders,
                    "user_info": {"common_field_list": [{"name": k, "value": v}
                                                        for k, v in form.items()],
                                  "custom_field_list": []}}
        if p == "/card/membercard/activate":
            self.holders[code] = {"active": True, "bonus": b.get("init_bonus", 0),
                                  "field1": b.get("init_custom_field_value1"),
                                  "number": b.get("membership_number")}
            return ok
        if p == "/card/membercard/updateuser":
            h = self.holders.setdefault(code, {"active": False, "bonus": 0, "field1": None})
            if "bonus" in b:
                h["bonus"] = b["bonus"]
            elif "add_bonus" in b:
                h["bonus"] += b["add_bonus"]
            if "custom_field_value1" in b:
                h["field1"] = b["custom_field_value1"]
            return {**ok, "result_bonus": h["bonus"], "result_balance": 0, "openid": ""}
        return ok


CARD_PATHS = ("/card/create", "/card/membercard/activateuserform/set", "/card/update",
              "/card/get", "/card/qrcode/create", "/card/paygiftcard/add",
              "/card/membercard/userinfo/get", "/card/membercard/activate",
              "/card/membercard/updateuser")

def _button_error(b: dict[str, Any], sub: bool) -> dict[str, Any] | None:
    """WeChat's documented limits: name ≤ 16 bytes (top) / 60 bytes (sub), click key ≤ 128
    bytes, view url ≤ 1024 bytes."""
    name = str(b.get("name", ""))
    if not name or len(name.encode()) > (60 if sub else 16):
        return {"errcode": 40018, "errmsg": "invalid button name size"}
    kind = b.get("type")
    if kind == "click" and not 0 < len(str(b.get("key", "")).encode()) <= 128:
        return {"errcode": 40019, "errmsg": "invalid button key size"}
    if kind == "view" and not 0 < len(str(b.get("url", "")).encode()) <= 1024:
        return {"errcode": 40055, "errmsg": "invalid button url domain"}
    if kind not in ("click", "view", "miniprogram"):
        return {"errcode": 40017, "errmsg": "invalid button type"}
    return None


def _check_menu(body: dict[str, Any]) -> dict[str, Any] | None:
    buttons = body.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return {"errcode": 40016, "errmsg": "invalid button size"}
    for b in buttons:
        subs = b.get("sub_button")
        if subs:
            if len(subs) > 5:
                return {"errcode": 40023, "errmsg": "invalid sub button size"}
            if not b.get("name") or len(str(b["name"]).encode()) > 16:
                return {"errcode": 40018, "errmsg": "invalid button name size"}
            for sb in subs:
                err = _button_error(sb, True)
                if err:
                    return err
        else:
            err = _button_error(b, False)
            if err:
                return err
    return None


def _as_menu_get(body: dict[str, Any]) -> dict[str, Any]:
    # menu/get answers every button with a sub_button list (empty for a leaf)
    return {"button": [{**b, "sub_button": [dict(sb) for sb in b.get("sub_button") or []]}
                       for b in body["button"]]}
