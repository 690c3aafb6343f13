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
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from .server import LoopbackServer

EC = "/cgi-bin/externalcontact/"
TASK = EC + "get_groupmsg_task"
RESULT = EC + "get_groupmsg_send_result"
REMIND = EC + "remind_groupmsg_send"
LIST_V2 = EC + "get_groupmsg_list_v2"
TAG_LIST = EC + "get_corp_tag_list"
ADD_TAG = EC + "add_corp_tag"
MARK_TAG = EC + "mark_tag"
ADD_WAY = EC + "add_contact_way"
TRANSFER = EC + "transfer_customer"
TRANSFER_RESULT = EC + "transfer_result"
R_TRANSFER = EC + "resigned/transfer_customer"
R_TRANSFER_RESULT = EC + "resigned/transfer_result"
WECOM_PATHS = ("/cgi-bin/externalcontact/add_msg_template",
               "/cgi-bin/externalcontact/send_welcome_msg",
               RESULT, TASK, REMIND, LIST_V2, TAG_LIST, ADD_TAG, MARK_TAG, ADD_WAY, TRANSFER,
               TRANSFER_RESULT, R_TRANSFER, R_TRANSFER_RESULT,
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
class FakeWeComAPI(LoopbackServer):
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
    create_before_hang: bool = False  # ... after WeCom created its task (the answer is lost)
    page_size: int | None = None  # send results / task lists in pages of this many
    tag_groups: list[dict] = field(default_factory=list)  # get_corp_tag_list
    mark_gate: asyncio.Event | None = None  # when set: mark_tag calls wait for it to open
    marking: int = 0  # mark_tag calls in flight now, and the most at once
    most_marking: int = 0
    ways: dict[str, dict] = field(default_factory=dict)  # config_id -> add_contact_way body
    transfers: dict[tuple[str, str, str], int] = field(default_factory=dict)  # status
    transfer_refuse: set[str] = field(default_factory=set)  # customers who refuse: status 3
    now: Any = None  # the fake's clock (unix seconds) when set, else time.time()
    base: str = ""
    tasks: dict[str, dict] = field(default_factory=dict)
    _fail: list[tuple[int, str | None]] = field(default_factory=list)
    _tokens: set[str] = field(default_factory=set)
    _expired: set[str] = field(default_factory=set)
    _codes: set[str] = field(default_factory=set)
    _seq: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    _thread: Any = None
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

    def confirm(self, msgid: str, statuses: dict[str, int] | None = None) -> None:
        """The staff member confirms task ``msgid`` in the app: each customer gets status 1,
        or the one given (2 not a friend, 3 received another message)."""
        task = self.tasks[msgid]
        task["staff_status"] = 2
        for e in task["to"]:
            if e not in task["fail"]:
                task["status"][e] = (statuses or {}).get(e, 1)

    def clock(self) -> int:
        return int(self.now if self.now is not None else time.time())

    def finish_transfers(self, status: int = 1) -> None:
        """The customers waiting (2) for their takeover are taken over (1) or not."""
        for k, v in self.transfers.items():
            if v == 2:
                self.transfers[k] = status

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
        return await super().start()

    async def close(self) -> None:
        if self._hold is not None:
            self._hold.set()
        await super().close()

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
                if self.create_before_hang:
                    self._new_task(body)
                await self._hold.wait()  # the sender dies waiting for this answer
                raise web.HTTPServiceUnavailable()
            refused = [self.refuse[e] for e in body["external_userid"] if e in self.refuse]
            if refused:
                return self._answer(call, {"errcode": refused[0], "errmsg": "refused"})
            msgid, fail = self._new_task(body)
            return self._answer(call, {"errcode": 0, "errmsg": "ok", "fail_list": fail,
                                       "msgid": msgid})
        if request.path == MARK_TAG and self.mark_gate is not None:
            self.marking += 1
            self.most_marking = max(self.most_marking, self.marking)
            try:
                await self.mark_gate.wait()
            finally:
                self.marking -= 1
        handler = self._more.get(request.path)
        if handler is not None:
            return self._answer(call, handler(self, body))
        if request.path == WELCOME:
            if body.get("welcome_code") in self._codes:
                return self._answer(call, {"errcode": 41051, "errmsg": "code used"})
            self._codes.add(body.get("welcome_code"))
            return self._answer(call, {"errcode": 0, "errmsg": "ok"})
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

    # -- WeCom in depth: tasks, tags, contact ways, transfers ---------------------------------
    def _new_task(self, body: dict) -> tuple[str, list[str]]:
        msgid = f"msg{next(self._seq)}"
        fail = [e for e in body["external_userid"] if e in self.fail_ids]
        self.tasks[msgid] = {"sender": body["sender"], "to": body["external_userid"],
                             "fail": fail, "text": (body.get("text") or {}).get("content", ""),
                             "create_time": self.clock(), "staff_status": 0,
                             "status": {e: 0 for e in body["external_userid"] if e not in fail}}
        return msgid, fail

    def _page(self, items: list, body: dict, field: str, limit: int) -> dict:
        if body.get("limit", limit) > limit:
            return {"errcode": 40058, "errmsg": f"limit exceeds {limit}"}
        size = self.page_size or body.get("limit") or limit
        start = int(body.get("cursor") or 0)
        nxt = start + size
        return {"errcode": 0, "errmsg": "ok", field: items[start:nxt],
                "next_cursor": str(nxt) if nxt < len(items) else ""}

    def _send_result(self, body: dict) -> dict:
        task = self.tasks.get(body.get("msgid"))
        if task is None:
            return {"errcode": 41063, "errmsg": "msgid not found"}
        sent = [{"external_userid": e, "userid": task["sender"], "status": st,
                 **({"send_time": self.clock()} if st else {})}
                for e, st in task["status"].items()]
        return self._page(sent, body, "send_list", 1000)

    def _task(self, body: dict) -> dict:
        task = self.tasks.get(body.get("msgid"))
        if task is None:
            return {"errcode": 41063, "errmsg": "msgid not found"}
        return self._page([{"userid": task["sender"], "status": task["staff_status"]}], body,
                          "task_list", 1000)

    def _remind(self, body: dict) -> dict:
        task = self.tasks.get(body.get("msgid"))
        if task is None:
            return {"errcode": 41063, "errmsg": "msgid not found"}
        task.setdefault("reminded", [])
        if len([t for t in task["reminded"] if t > self.clock() - 86400]) >= 3:
            return {"errcode": 41096, "errmsg": "remind limit reached"}
        task["reminded"].append(self.clock())
        return {"errcode": 0, "errmsg": "ok"}

    def _list_v2(self, body: dict) -> dict:
        if body.get("end_time", 0) - body.get("start_time", 0) > 31 * 86400:
            return {"errcode": 40058, "errmsg": "time range over a month"}
        out = [{"msgid": k, "creator": t["sender"], "create_type": 0,
                "create_time": t["create_time"], "text": {"content": t["text"]}}
               for k, t in self.tasks.items()
               if t["sender"] == body.get("creator")
               and body["start_time"] <= t["create_time"] <= body["end_time"]]
        return self._page(out, body, "group_msg_list", 100)

    def _tag_list(self, body: dict) -> dict:
        return {"errcode": 0, "errmsg": "ok", "tag_group": self.tag_groups}

    def _add_tag(self, body: dict) -> dict:
        gid = body.get("group_id")
        group = next((g for g in self.tag_groups if g["group_id"] == gid), None)
        if group is None:
            group = {"group_id": f"et-group-{next(self._seq)}", "group_name": body["group_name"],
                     "tag": []}
            self.tag_groups.append(group)
        for t in body.get("tag", []):
            if any(x["name"] == t["name"] for x in group["tag"]):
                return {"errcode": 40071, "errmsg": "tag name exists"}
            group["tag"].append({"id": f"et-tag-{next(self._seq)}", "name": t["name"]})
        return {"errcode": 0, "errmsg": "ok", "tag_group": group}

    def _mark(self, body: dict) -> dict:
        known = {t["id"] for g in self.tag_groups for t in g["tag"]}
        if not set(body.get("add_tag", [])) <= known:
            return {"errcode": 40068, "errmsg": "invalid tagid"}
        return {"errcode": 0, "errmsg": "ok"}

    def _add_way(self, body: dict) -> dict:
        if len(body.get("state", "")) > 30:
            return {"errcode": 40058, "errmsg": "state too long"}
        cid = f"cfg{next(self._seq)}"
        self.ways[cid] = body
        return {"errcode": 0, "errmsg": "ok", "config_id": cid,
                "qr_code": f"https://wework.qpic.cn/wwpic/{cid}/0"}

    def _transfer(self, body: dict) -> dict:
        ids = body.get("external_userid", [])
        if len(ids) > 100:
            return {"errcode": 40058, "errmsg": "too many external_userid"}
        for e in ids:
            self.transfers[(body["handover_userid"], body["takeover_userid"], e)] = (
                3 if e in self.transfer_refuse else 2)
        return {"errcode": 0, "errmsg": "ok",
                "customer": [{"external_userid": e, "errcode": 0} for e in ids]}

    def _transfer_result(self, body: dict) -> dict:
        out = [{"external_userid": e, "status": st, "takeover_time": self.clock()}
               for (h, t, e), st in self.transfers.items()
               if (h, t) == (body.get("handover_userid"), body.get("takeover_userid"))]
        return self._page(out, {**body, "limit": 1000}, "customer", 1000)

    _more = {RESULT: _send_result, TASK: _task, REMIND: _remind, LIST_V2: _list_v2,
             TAG_LIST: _tag_list, ADD_TAG: _add_tag, MARK_TAG: _mark, ADD_WAY: _add_way,
             TRANSFER: _transfer, R_TRANSFER: _transfer, TRANSFER_RESULT: _transfer_result,
             R_TRANSFER_RESULT: _transfer_result}
