"""A fake WeCom API (and the two OA paths of the template fallback): a real aiohttp server on a
local port (``WECOM_API_BASE``, ``WECHAT_API_BASE``).

It records every call with its answer, issues and checks access tokens (an expired one gets
42001, an unknown one 40014), keeps add_msg_template tasks for get_groupmsg_send_result, lets
a WelcomeCode be used once (then 41051), and can be told to answer the next N calls with an
errcode (42001 also expires the token, as WeCom does), to put contacts in the fail_list, or
to hold the Nth add_msg_template call forever (a sender killed mid-call). It runs in the test's
event loop (``await start()``) or in a thread of its own (``start_thread()``) for tests that
drive ``memberbot`` in a subprocess.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

WECOM_PATHS = ("/cgi-bin/externalcontact/add_msg_template",
               "/cgi-bin/externalcontact/send_welcome_msg",
               "/cgi-bin/externalcontact/get_groupmsg_send_result",
               "/cgi-bin/message/template/send")
USERINFO = "/cgi-bin/auth/getuserinfo"
JSAPI_TICKET = "/cgi-bin/get_jsapi_ticket"
AGENT_TICKET = "/cgi-bin/ticket/get"
SIDEBAR_PATHS = (USERINFO, JSAPI_TICKET, AGENT_TICKET)
ADD = "/cgi-bin/externalcontact/add_msg_template"
WELCOME = "/cgi-bin/externalcontact/send_welcome_msg"
OA_SEND = "/cgi-bin/message/template/send"


@dataclass
class Call:
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    answer: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.answer.get("errcode", 0) == 0


@dataclass
class FakeWeComAPI:
    corp_id: str = "wwtestcorp"
    secret: str = "test-contact-secret"
    oa_appid: str = "wxtestappid"
    oa_secret: str = "test-app-secret"
    agent_secret: str = "test-agent-secret"  # the sidebar app's secret (WECOM_AGENT_SECRET)
    oauth_codes: dict[str, str] = field(default_factory=dict)  # OAuth2 code -> staff userid
    tickets: dict[str, str] = field(default_factory=dict)  # "jsapi"/"agent_config" -> current
    calls: list[Call] = field(default_factory=list)
    contacts: dict[str, dict] = field(default_factory=dict)  # external_userid -> get answer
    fail_ids: set[str] = field(default_factory=set)  # always in add_msg_template's fail_list
    refuse: dict[str, int] = field(default_factory=dict)  # a call to this contact: errcode
    hang_on: int | None = None  # the Nth add_msg_template call never answers
    base: str = ""
    tasks: dict[str, dict] = field(default_factory=dict)
    _fail: list[tuple[int, str | None]] = field(default_factory=list)
    _tokens: set[str] = field(default_factory=set)
    _expired: set[str] = field(default_factory=set)
    _codes: set[str] = field(default_factory=set)
    _seq: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _hold: asyncio.Event | None = None

    # -- controls -------------------------------------------------------------------------------
    def fail_next(self, errcode: int, n: int = 1, path: str | None = None) -> None:
        """The next ``n`` API calls (to ``path`` if given; token fetches only when named)
        answer ``errcode``."""
        self._fail.extend([(errcode, path)] * n)

    def expire_tokens(self) -> None:
        self._expired |= self._tokens
        self._tokens.clear()

    def oauth_code(self, userid: str) -> str:
        """A code WeCom would append to the redirect after the staff member authorised; it
        works once, as WeCom's do."""
        code = f"code-{next(self._seq)}"
        self.oauth_codes[code] = userid
        return code

    def to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    @property
    def token_fetches(self) -> int:
        return len(self.to("/cgi-bin/gettoken"))

    def delivered(self) -> Counter:
        """How many accepted tasks (and OA template messages) reached each contact."""
        out: Counter = Counter()
        for c in self.to(ADD):
            if c.ok:
                fail = set(c.answer.get("fail_list", ()))
                out.update(e for e in c.body["external_userid"] if e not in fail)
        for c in self.to(OA_SEND):
            if c.ok:
                out[c.body["touser"]] += 1
        return out

    def reached(self) -> Counter:
        """Every contact a request was made for, answered or not (a held call counts)."""
        out: Counter = Counter()
        for c in self.to(ADD):
            if c.answer.get("errcode") in (0, None):
                out.update(c.body["external_userid"])
        return out

    # -- server ---------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/gettoken", self.gettoken)
        app.router.add_get("/cgi-bin/token", self.oa_token)
        app.router.add_get("/cgi-bin/externalcontact/get", self.api)
        for path in SIDEBAR_PATHS:
            app.router.add_get(path, self.api)
        for path in WECOM_PATHS:
            app.router.add_post(path, self.api)
        return app

    async def start(self) -> str:
        self._hold = asyncio.Event()
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        return self.base

    async def close(self) -> None:
        if self._hold is not None:
            self._hold.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_thread(self) -> str:
        ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.close())
            self._loop.close()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self.base

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # -- handlers -------------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> Call:
        raw = await request.read()
        call = Call(request.path, dict(request.query), orjson.loads(raw) if raw else None)
        self.calls.append(call)
        return call

    def _injected(self, path: str, token_path: bool = False) -> int | None:
        for i, (code, p) in enumerate(self._fail):
            if p == path or (p is None and not token_path):
                del self._fail[i]
                return code
        return None

    def _answer(self, call: Call, answer: dict) -> web.Response:
        call.answer = answer
        return web.json_response(answer)

    async def gettoken(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        q = request.query
        code = self._injected(request.path, token_path=True)
        if code:
            return self._answer(call, {"errcode": code, "errmsg": "injected"})
        if q.get("corpid") != self.corp_id:
            return self._answer(call, {"errcode": 40013, "errmsg": "invalid corpid"})
        if q.get("corpsecret") not in (self.secret, self.agent_secret):
            return self._answer(call, {"errcode": 40001, "errmsg": "invalid credential"})
        token = f"wecom-token-{next(self._seq)}"
        self._tokens.add(token)
        return self._answer(call, {"errcode": 0, "errmsg": "ok", "access_token": token,
                                   "expires_in": 7200})

    async def oa_token(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if (request.query.get("appid"), request.query.get("secret")) != (self.oa_appid,
                                                                         self.oa_secret):
            return self._answer(call, {"errcode": 40001, "errmsg": "invalid credential"})
        token = f"oa-token-{next(self._seq)}"
        self._tokens.add(token)
        return self._answer(call, {"access_token": token, "expires_in": 7200})

    async def api(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        token = request.query.get("access_token", "")
        if token in self._expired:
            return self._answer(call, {"errcode": 42001, "errmsg": "access_token expired"})
        if token not in self._tokens:
            return self._answer(call, {"errcode": 40014, "errmsg": "invalid access_token"})
        code = self._injected(request.path)
        if code:
            if code == 42001:
                self._tokens.discard(token)
                self._expired.add(token)
            return self._answer(call, {"errcode": code, "errmsg": "injected"})
        body = call.body or {}
        if request.path == ADD:
            n = len(self.to(ADD))
            if self.hang_on is not None and n == self.hang_on:
                call.answer = {"errcode": None, "held": True}
                await self._hold.wait()  # the sender dies waiting for this answer
                raise web.HTTPServiceUnavailable()
            refused = [self.refuse[e] for e in body["external_userid"] if e in self.refuse]
            if refused:
                return self._answer(call, {"errcode": refused[0], "errmsg": "refused"})
            msgid = f"msg{next(self._seq)}"
            fail = [e for e in body["external_userid"] if e in self.fail_ids]
            self.tasks[msgid] = {"sender": body["sender"], "to": body["external_userid"],
                                 "fail": fail}
            return self._answer(call, {"errcode": 0, "errmsg": "ok", "fail_list": fail,
                                       "msgid": msgid})
        if request.path == WELCOME:
            if body.get("welcome_code") in self._codes:
                return self._answer(call, {"errcode": 41051, "errmsg": "code used"})
            self._codes.add(body.get("welcome_code"))
            return self._answer(call, {"errcode": 0, "errmsg": "ok"})
        if request.path == "/cgi-bin/externalcontact/get_groupmsg_send_result":
            task = self.tasks.get(body.get("msgid"), {"to": [], "fail": [], "sender": ""})
            sent = [{"external_userid": e, "userid": task["sender"], "status": 0}
                    for e in task["to"] if e not in task["fail"]]
            return self._answer(call, {"errcode": 0, "errmsg": "ok", "next_cursor": "",
                                       "send_list": sent})
        if request.path == "/cgi-bin/externalcontact/get":
            eu = request.query.get("external_userid", "")
            if eu not in self.contacts:
                return self._answer(call, {"errcode": 84061, "errmsg": "not external contact"})
            return self._answer(call, {"errcode": 0, "errmsg": "ok", **self.contacts[eu]})
        if request.path == USERINFO:
            userid = self.oauth_codes.pop(request.query.get("code", ""), None)
            if userid is None:
                return self._answer(call, {"errcode": 40029, "errmsg": "invalid code"})
            return self._answer(call, {"errcode": 0, "errmsg": "ok", "userid": userid,
                                       "user_ticket": f"ut-{next(self._seq)}"})
        if request.path in (JSAPI_TICKET, AGENT_TICKET):
            kind = "jsapi" if request.path == JSAPI_TICKET else request.query.get("type", "")
            if kind not in ("jsapi", "agent_config"):
                return self._answer(call, {"errcode": 40097, "errmsg": "invalid args"})
            ticket = f"{kind}-ticket-{next(self._seq)}"
            self.tickets[kind] = ticket
            return self._answer(call, {"errcode": 0, "errmsg": "ok", "ticket": ticket,
                                       "expires_in": 7200})
        if request.path == OA_SEND:
            return self._answer(call, {"errcode": 0, "errmsg": "ok", "msgid": next(self._seq)})
        return self._answer(call, {"errcode": 0, "errmsg": "ok"})
