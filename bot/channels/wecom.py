"""The WeCom (企业微信) customer-contact API client (``WECOM_API_BASE``), over aiohttp.

wechatpy's enterprise client fetches its token from Tencent's host whatever the base URL, so
this is a small client of our own. The access token lives in the store (``kv_*``): every
process shares it, and one that WeCom calls expired (40014, 42001) is refreshed once across
processes — the refresher holds a short kv lock, the others wait for its token.

Errors: 40001/40013 are a configuration problem (``problems["wecom"]``, shown on /healthz, and
the log), never retried; 45009/45033 back off exponentially (delays injectable) and then raise
:class:`WeComRateLimited`; anything else raises :class:`WeComError` with its errcode.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from storage import Store

from .. import keys
from ..settings import Settings
from .tokens import SharedToken

log = logging.getLogger("memberbot.wecom")

TOKEN_EXPIRED = (40014, 42001)
CONFIG_ERRORS = (40001, 40013)
RATE_LIMITED = (45009, 45033)
WELCOME_CODE_USED = 41051
MAX_RECIPIENTS = 10_000  # external_userids per add_msg_template call
MAX_TRANSFER = 100  # external_userids per transfer_customer call
CONFIG_PROBLEM = ("WeCom refused the credentials (errcode {code} {msg}): check WECOM_CORP_ID "
                  "and WECOM_SECRET (the customer-contact secret)")

Sleep = Callable[[float], Awaitable[Any]]


class WeComError(Exception):
    """A non-zero ``errcode`` (or a transport failure, errcode -1) from the WeCom API.

    ``maybe_sent`` is True when a request may have reached WeCom without an answer (a timeout
    after sending): the caller must not assume it was not delivered."""

    def __init__(self, errcode: int, errmsg: str = "", path: str = "", *,
                 maybe_sent: bool = False) -> None:
        super().__init__(f"WeCom {path} errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path
        self.maybe_sent = maybe_sent


class WeComConfigError(WeComError):
    """Invalid corp id or secret (40001, 40013): a configuration error, never retried."""


class WeComRateLimited(WeComError):
    """Still rate-limited (45009, 45033) after backing off: retry later."""


@dataclass(frozen=True)
class Backoff:
    """Exponential delays for rate limits: base, 2×base, … capped, ``tries`` of them."""

    base: float = 1.0
    cap: float = 30.0
    tries: int = 5

    def delays(self) -> list[float]:
        return [min(self.base * 2 ** i, self.cap) for i in range(self.tries)]


class WeComClient:
    """gettoken, externalcontact/get, add_msg_template, send_welcome_msg,
    get_groupmsg_send_result."""

    config_pause = 300.0  # after 40001, no call for this long: it would only fail again

    def __init__(self, store: Store, settings: Settings, session: aiohttp.ClientSession, *,
                 problems: dict[str, str] | None = None, sleep: Sleep = asyncio.sleep,
                 backoff: Backoff = Backoff(), timeout: float = 15.0) -> None:
        self.store = store
        self.settings = settings
        self.session = session
        self.base = settings.wecom_api_base.rstrip("/")
        self.corp_id = settings.wecom_corp_id
        self.problems = problems if problems is not None else {}
        self.sleep = sleep
        self.backoff = backoff
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        # one token per (corp, secret): the contact secret and an app secret differ
        tag = hashlib.sha256(settings.wecom_secret.encode()).hexdigest()[:12]
        self._token = SharedToken(store, keys.wecom_token(self.corp_id, tag))
        self._refused: tuple[float, WeComConfigError] | None = None
        self._tickets: dict[str, SharedToken] = {}

    @property
    def configured(self) -> bool:
        return bool(self.corp_id and self.settings.wecom_secret)

    # -- token ------------------------------------------------------------------------------
    async def access_token(self, *, stale: str | None = None) -> str:
        """The shared token; with ``stale`` (a token WeCom refused) a new one, unless another
        process has replaced the refused one already."""
        if not self.configured:
            raise WeComConfigError(-1, "WECOM_CORP_ID / WECOM_SECRET are not configured",
                                   "/cgi-bin/gettoken")
        if self._refused is not None and time.monotonic() < self._refused[0]:
            raise self._refused[1]  # a configuration error is not retried
        return await self._token.get(self._fetch_token, stale=stale)

    @property
    def refreshes(self) -> int:
        return self._token.refreshes

    async def _fetch_token(self) -> tuple[str, int]:
        path = "/cgi-bin/gettoken"
        data = await self._request("GET", path, {"corpid": self.corp_id,
                                                 "corpsecret": self.settings.wecom_secret})
        code = int(data.get("errcode", 0) or 0)
        if code or "access_token" not in data:
            raise self._error(code or -1, str(data.get("errmsg", "no access_token")), path)
        self._refused = None
        self.problems.pop("wecom", None)
        return str(data["access_token"]), int(data.get("expires_in", 7200))

    # -- transport --------------------------------------------------------------------------
    async def _request(self, method: str, path: str, params: dict[str, str],
                       body: dict | None = None) -> dict:
        """One HTTP exchange. A failure before the request left is not 'maybe sent'."""
        kw: dict[str, Any] = {"params": params, "timeout": self.timeout}
        if body is not None:  # UTF-8 as is: WeCom shows \\uXXXX escapes literally
            kw.update(data=orjson.dumps(body), headers={"Content-Type": "application/json"})
        try:
            async with self.session.request(method, self.base + path, **kw) as r:
                raw = await r.read()
                if r.status != 200:
                    raise WeComError(-1, f"HTTP {r.status}", path, maybe_sent=True)
        except aiohttp.ClientConnectorError as e:
            raise WeComError(-1, f"cannot connect: {e}", path) from e
        except (TimeoutError, aiohttp.ClientError) as e:
            raise WeComError(-1, f"{type(e).__name__}: {e}", path, maybe_sent=True) from e
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise WeComError(-1, "answer is not JSON", path, maybe_sent=True) from e

    def _error(self, code: int, msg: str, path: str) -> WeComError:
        if code in CONFIG_ERRORS:
            text = CONFIG_PROBLEM.format(code=code, msg=msg)
            self.problems["wecom"] = text
            log.error("%s", text)
            err = WeComConfigError(code, msg, path)
            self._refused = (time.monotonic() + self.config_pause, err)
            return err
        if code in RATE_LIMITED:
            return WeComRateLimited(code, msg, path)
        return WeComError(code, msg, path)

    async def call(self, method: str, path: str, *, params: dict[str, str] | None = None,
                   body: dict | None = None, backoff: Backoff | None = None) -> dict:
        """One API call with the token: 40014/42001 refresh once and retry; 45009/45033 back
        off and retry; other errcodes raise."""
        delays = list((backoff or self.backoff).delays())
        refreshed = False
        token = await self.access_token()
        while True:
            data = await self._request(method, path, {**(params or {}), "access_token": token},
                                       body)
            code = int(data.get("errcode", 0) or 0)
            if code == 0:
                return data
            msg = str(data.get("errmsg", ""))
            if code in TOKEN_EXPIRED and not refreshed:
                log.info("wecom token expired (%s): refreshing once", code)
                token = await self.access_token(stale=token)
                refreshed = True
                continue
            if code in RATE_LIMITED and delays:
                delay = delays.pop(0)
                log.warning("wecom rate limit %s on %s: retrying in %.1fs", code, path, delay)
                await self.sleep(delay)
                continue
            raise self._error(code, msg, path)

    # -- the calls memberbot makes ----------------------------------------------------------
    async def get_external_contact(self, external_userid: str) -> dict:
        """``external_contact`` (with ``unionid`` when the OA is bound) and ``follow_user``."""
        return await self.call("GET", "/cgi-bin/externalcontact/get",
                               params={"external_userid": external_userid})

    async def add_msg_template(self, sender: str, external_userids: list[str],
                               text: str) -> dict:
        """A 1v1 (``chat_type: single``) task for staff ``sender``: ``msgid``, ``fail_list``."""
        if not 0 < len(external_userids) <= MAX_RECIPIENTS:
            raise ValueError(f"add_msg_template takes 1..{MAX_RECIPIENTS} external_userids")
        data = await self.call("POST", "/cgi-bin/externalcontact/add_msg_template", body={
            "chat_type": "single", "external_userid": list(external_userids),
            "sender": sender, "text": {"content": text}})
        return {"msgid": data.get("msgid", ""), "fail_list": list(data.get("fail_list") or [])}

    async def send_welcome_msg(self, welcome_code: str, text: str) -> dict:
        """The welcome message for a new contact; the code is valid 20 s and only once, so a
        rate limit is retried briefly only."""
        return await self.call("POST", "/cgi-bin/externalcontact/send_welcome_msg",
                               body={"welcome_code": welcome_code, "text": {"content": text}},
                               backoff=Backoff(base=0.5, cap=2.0, tries=3))

    # -- the sidebar app (WECOM_AGENT_ID): OAuth2 and JS-SDK tickets -----------------------
    async def get_user_info(self, code: str) -> dict:
        """The staff member an OAuth2 ``code`` belongs to: ``userid`` (a member of the corp),
        or ``openid`` for someone outside it. Raises :class:`WeComError` (40029: bad code)."""
        return await self.call("GET", "/cgi-bin/auth/getuserinfo", params={"code": code})

    def _ticket(self, kind: str) -> SharedToken:
        if kind not in self._tickets:
            self._tickets[kind] = SharedToken(self.store, keys.wecom_ticket(
                self.corp_id, self.settings.wecom_agent_id, kind))
        return self._tickets[kind]

    async def jsapi_ticket(self, kind: str = "jsapi") -> str:
        """The corp ``jsapi`` ticket (wx.config) or the app's ``agent_config`` ticket
        (wx.agentConfig), cached in the store and fetched once across processes."""
        if kind == "jsapi":
            path, params = "/cgi-bin/get_jsapi_ticket", {}
        elif kind == "agent_config":
            path, params = "/cgi-bin/ticket/get", {"type": "agent_config"}
        else:
            raise ValueError(f"unknown ticket kind {kind!r}")

        async def fetch() -> tuple[str, int]:
            data = await self.call("GET", path, params=params)
            if not data.get("ticket"):
                raise WeComError(-1, "no ticket in the answer", path)
            return str(data["ticket"]), int(data.get("expires_in", 7200))

        return await self._ticket(kind).get(fetch)

    async def get_groupmsg_send_result(self, msgid: str, userid: str) -> list[dict]:
        """Per-recipient status of a task (0 not sent yet, 1 sent, 2 not a contact, 3 got
        another message), every page."""
        out: list[dict] = []
        cursor = ""
        while True:
            data = await self.call("POST", "/cgi-bin/externalcontact/get_groupmsg_send_result",
                                   body={"msgid": msgid, "userid": userid, "limit": 1000,
                                         "cursor": cursor})
            out.extend(data.get("send_list") or [])
            cursor = data.get("next_cursor") or ""
            if not cursor:
                return out

    # -- confirmation of 1v1 tasks (企业群发) -----------------------------------------------
    async def _pages(self, path: str, body: dict, field: str) -> list[dict]:
        out: list[dict] = []
        cursor = ""
        while True:
            data = await self.call("POST", path, body={**body, "cursor": cursor})
            out.extend(data.get(field) or [])
            cursor = data.get("next_cursor") or ""
            if not cursor:
                return out

    async def get_groupmsg_task(self, msgid: str) -> list[dict]:
        """The staff of a task and whether each confirmed it: ``userid``, ``status`` (0 not
        yet, 2 sent), ``send_time``; every page (limit 1000)."""
        return await self._pages("/cgi-bin/externalcontact/get_groupmsg_task",
                                 {"msgid": msgid, "limit": 1000}, "task_list")

    async def remind_groupmsg_send(self, msgid: str) -> None:
        """Remind the staff of a task who have not confirmed it (WeCom: ≤ 3 a day)."""
        await self.call("POST", "/cgi-bin/externalcontact/remind_groupmsg_send",
                        body={"msgid": msgid})

    async def get_groupmsg_list_v2(self, creator: str, start: int, end: int) -> list[dict]:
        """Tasks ``creator`` created (企业发表, 1v1) between ``start`` and ``end`` (unix
        seconds, at most a month apart): ``msgid``, ``create_time``, ``text``; every page
        (limit 100)."""
        if not 0 <= end - start <= 31 * 86400:
            raise ValueError("get_groupmsg_list_v2 takes a window of at most one month")
        return await self._pages("/cgi-bin/externalcontact/get_groupmsg_list_v2", {
            "chat_type": "single", "start_time": start, "end_time": end, "creator": creator,
            "filter_type": 0, "limit": 100}, "group_msg_list")

    # -- corp tags ---------------------------------------------------------------------------
    async def get_corp_tag_list(self) -> list[dict]:
        """Every corp tag group with its tags (``group_name``, ``tag``: ``id``, ``name``)."""
        data = await self.call("POST", "/cgi-bin/externalcontact/get_corp_tag_list", body={})
        return list(data.get("tag_group") or [])

    async def add_corp_tag(self, group_name: str, names: list[str],
                           group_id: str = "") -> dict:
        """Tags ``names`` in group ``group_name`` (created unless ``group_id``): the group."""
        body: dict[str, Any] = {"tag": [{"name": n} for n in names]}
        body.update({"group_id": group_id} if group_id else {"group_name": group_name})
        data = await self.call("POST", "/cgi-bin/externalcontact/add_corp_tag", body=body)
        return dict(data.get("tag_group") or {})

    async def mark_tag(self, userid: str, external_userid: str, add: list[str],
                       remove: list[str]) -> None:
        await self.call("POST", "/cgi-bin/externalcontact/mark_tag", body={
            "userid": userid, "external_userid": external_userid, "add_tag": add,
            "remove_tag": remove})

    # -- channel QR codes (联系我) ---------------------------------------------------------
    async def add_contact_way(self, staff: str, state: str, remark: str = "") -> dict:
        """A single-staff QR code (type 1, scene 2) carrying ``state``: ``config_id``,
        ``qr_code``."""
        data = await self.call("POST", "/cgi-bin/externalcontact/add_contact_way", body={
            "type": 1, "scene": 2, "user": [staff], "state": state, "remark": remark,
            "skip_verify": True})
        return {"config_id": data.get("config_id", ""), "qr_code": data.get("qr_code", "")}

    # -- customer handover (在职继承 / 离职继承) ----------------------------------------------
    async def transfer_customer(self, handover: str, takeover: str, external_userids: list[str],
                                *, resigned: bool, message: str = "") -> list[dict]:
        """Hand ≤ 100 customers over: per customer ``external_userid``, ``errcode``."""
        if not 0 < len(external_userids) <= MAX_TRANSFER:
            raise ValueError(f"transfer_customer takes 1..{MAX_TRANSFER} external_userids")
        body: dict[str, Any] = {"handover_userid": handover, "takeover_userid": takeover,
                                "external_userid": list(external_userids)}
        if not resigned and message:
            body["transfer_success_msg"] = message
        path = ("/cgi-bin/externalcontact/resigned/transfer_customer" if resigned else
                "/cgi-bin/externalcontact/transfer_customer")
        data = await self.call("POST", path, body=body)
        return list(data.get("customer") or [])

    async def transfer_result(self, handover: str, takeover: str, *,
                              resigned: bool) -> list[dict]:
        """Where each handed-over customer stands: ``external_userid``, ``status`` (1 done,
        2 waiting, 3 refused, 4 over the limit, 5 no such transfer); every page."""
        path = ("/cgi-bin/externalcontact/resigned/transfer_result" if resigned else
                "/cgi-bin/externalcontact/transfer_result")
        return await self._pages(path, {"handover_userid": handover,
                                        "takeover_userid": takeover}, "customer")


def jsapi_signature(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    """The JS-SDK signature: SHA-1 of ``jsapi_ticket=…&noncestr=…&timestamp=…&url=…`` (the
    page URL without its ``#`` fragment), the same for wx.config and wx.agentConfig."""
    url = url.split("#", 1)[0]
    text = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - the JS-SDK's algorithm
