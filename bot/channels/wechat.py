"""The Official Account API client (``WECHAT_API_BASE``): one per process, in ctx.extras.

The access token is cached in the store (``kv_*``), so every process shares one token, and a
token the API calls expired (40014, 42001) is refreshed once across processes: the refresher
holds a short kv lock; the others wait for the new token instead of fetching their own.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from storage import Store

from .. import keys
from ..settings import Settings
from .tokens import SharedToken

log = logging.getLogger("memberbot.wechat")

TOKEN_EXPIRED = (40014, 42001)
RATE_LIMITED = (45009, 45033, 45047)
SHOWQRCODE = "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="
INVITE_QR_SECONDS = 30 * 86400  # the longest a temporary (unlimited-count) QR code lives
MENU_NONE = 46003  # menu/get: no menu has been set


class WeChatAPIError(Exception):
    """A non-zero ``errcode`` from the OA API (after the one token refresh)."""

    def __init__(self, errcode: int, errmsg: str = "") -> None:
        super().__init__(f"WeChat API error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class WeChatClient:
    """``access_token``, customer-service and template messages, user info, invite QR codes."""

    def __init__(self, store: Store, settings: Settings, session: aiohttp.ClientSession,
                 *, timeout: float = 5.0) -> None:
        self.store = store
        self.settings = settings
        self.session = session
        self.base = settings.wechat_api_base.rstrip("/")
        self.appid = settings.wechat_appid
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._token = SharedToken(store, keys.wechat_token(self.appid))

    @property
    def configured(self) -> bool:
        return bool(self.appid and self.settings.wechat_appsecret)

    # -- token ------------------------------------------------------------------------------
    async def access_token(self, force: bool = False, *, stale: str | None = None) -> str:
        """The shared token. ``force`` (or ``stale``, the token the API just refused) gets a
        new one, unless another process has already replaced the refused one."""
        if not self.configured:
            raise WeChatAPIError(-1, "WECHAT_APPID / WECHAT_APPSECRET are not configured")
        if force and stale is None:
            stale = await self.store.kv_get(self._token.key)
        return await self._token.get(self._fetch_token, stale=stale)

    @property
    def refreshes(self) -> int:
        return self._token.refreshes

    async def _fetch_token(self) -> tuple[str, int]:
        data = await self._get_json("/cgi-bin/token", {
            "grant_type": "client_credential", "appid": self.appid,
            "secret": self.settings.wechat_appsecret})
        if data.get("errcode"):
            log.error("wechat token refused (%s %s): check WECHAT_APPID/WECHAT_APPSECRET",
                      data.get("errcode"), data.get("errmsg"))
            raise WeChatAPIError(int(data["errcode"]), str(data.get("errmsg", "")))
        return str(data["access_token"]), int(data.get("expires_in", 7200))

    # -- transport --------------------------------------------------------------------------
    async def _get_json(self, path: str, params: dict[str, str]) -> dict:
        async with self.session.get(self.base + path, params=params,
                                    timeout=self.timeout) as r:
            return orjson.loads(await r.read())

    async def _post_json(self, path: str, params: dict[str, str], body: dict) -> dict:
        # WeChat shows \\uXXXX escapes literally: send UTF-8 as is (orjson does)
        async with self.session.post(self.base + path, params=params, data=orjson.dumps(body),
                                     headers={"Content-Type": "application/json"},
                                     timeout=self.timeout) as r:
            return orjson.loads(await r.read())

    async def call(self, method: str, path: str, *, params: dict[str, str] | None = None,
                   body: dict | None = None) -> dict:
        """One API call with the token; on 40014/42001 refresh once and retry once."""
        token = await self.access_token()
        for attempt in (1, 2):
            q = {**(params or {}), "access_token": token}
            if method == "GET":
                data = await self._get_json(path, q)
            else:
                data = await self._post_json(path, q, body or {})
            code = int(data.get("errcode", 0) or 0)
            if code == 0:
                return data
            if code in TOKEN_EXPIRED and attempt == 1:
                log.info("wechat token expired (%s): refreshing once", code)
                token = await self.access_token(force=True, stale=token)
                continue
            raise WeChatAPIError(code, str(data.get("errmsg", "")))
        raise AssertionError("unreachable")

    # -- the calls memberbot makes ----------------------------------------------------------
    async def send_text(self, openid: str, text: str) -> dict:
        """A customer-service text message (allowed within 48 h of the member's last message)."""
        return await self.call("POST", "/cgi-bin/message/custom/send", body={
            "touser": openid, "msgtype": "text", "text": {"content": text}})

    async def send_template(self, openid: str, template_id: str, data: dict,
                            url: str | None = None) -> dict:
        body: dict[str, Any] = {"touser": openid, "template_id": template_id,
                                "data": {k: v if isinstance(v, dict) else {"value": str(v)}
                                         for k, v in data.items()}}
        if url:
            body["url"] = url
        return await self.call("POST", "/cgi-bin/message/template/send", body=body)

    async def create_menu(self, menu: dict) -> dict:
        """Set the Official Account's custom menu (``{"button": [...]}``)."""
        return await self.call("POST", "/cgi-bin/menu/create", body=menu)

    async def get_menu(self) -> dict | None:
        """The menu as set through the API (``{"button": [...]}``); None when there is none."""
        try:
            data = await self.call("GET", "/cgi-bin/menu/get")
        except WeChatAPIError as e:
            if e.errcode == MENU_NONE:
                return None
            raise
        return data.get("menu")

    async def user_info(self, openid: str) -> dict:
        return await self.call("GET", "/cgi-bin/user/info",
                               params={"openid": openid, "lang": "zh_CN"})

    async def create_invite_qr(self, scene: str) -> str:
        """A temporary parametric QR code for ``scene``; returns its showqrcode URL."""
        data = await self.call("POST", "/cgi-bin/qrcode/create", body={
            "expire_seconds": INVITE_QR_SECONDS, "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene}}})
        return SHOWQRCODE + quote(str(data["ticket"]), safe="")
