"""The typed app context that handlers and jobs receive: settings, rules, the store, the use
cases, the clock and the OA and WeCom API clients. It imports no handler, so nothing needs a
lazy import to dodge a cycle; :func:`bot.web.create_app` builds it and opens and closes its
resources in ``cleanup_ctx`` (:func:`open_clients`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from storage import Store

from .card_sync import CardSync
from .channels.wechat import WeChatClient
from .channels.wecom import WeComClient
from .members import Members
from .rules.config import Rules
from .settings import Settings
from .webhooks import Delivery


@dataclass
class Context:
    """What handlers share. ``wechat`` is the OA client (``configured`` says whether it can
    call the API); ``wecom`` exists only when WeCom is configured; ``problems`` are shown on
    /healthz."""

    settings: Settings
    rules: Rules
    store: Store
    members: Members
    clock: Callable[[], datetime]
    wechat: WeChatClient | None = None
    wecom: WeComClient | None = None
    wecom_agent: WeComClient | None = None  # the sidebar app's (WECOM_AGENT_SECRET)
    card_sync: CardSync | None = None  # the member card's sender, when [card] is configured
    problems: dict[str, str] = field(default_factory=dict)
    webhooks: Delivery | None = None  # delivering to MEMBERBOT_WEBHOOKS while serving

    def now(self) -> datetime:
        return self.clock()

    @property
    def sidebar_wecom(self) -> WeComClient | None:
        """The client of the sidebar app: OAuth2 (getuserinfo) and the JS-SDK tickets, with
        the app's own secret when WECOM_AGENT_SECRET is set, else the contact client."""
        return self.wecom_agent or self.wecom

    @property
    def oa(self) -> WeChatClient | None:
        """The OA client when it can call the API."""
        return self.wechat if self.wechat is not None and self.wechat.configured else None


CTX = web.AppKey("ctx", Context)
MAX_BODY = 64 * 1024  # bytes of a request body: WeChat's and WeCom's callbacks, the store API


def system_clock(tz: ZoneInfo) -> Callable[[], datetime]:
    return lambda: datetime.now(tz)


def make_wecom(store: Store, settings: Settings, session: aiohttp.ClientSession,
               problems: dict[str, str]) -> WeComClient | None:
    if not (settings.wecom_corp_id and settings.wecom_secret):
        return None
    return WeComClient(store, settings, session, problems=problems)


@asynccontextmanager
async def open_clients(ctx: Context) -> AsyncIterator[Context]:
    """The OA and WeCom clients of ``ctx`` on one HTTP session, for as long as it is open;
    clients set already (tests, a shared session) are kept."""
    async with aiohttp.ClientSession() as session:
        own_wechat, own_wecom = ctx.wechat is None, ctx.wecom is None
        own_agent = ctx.wecom_agent is None
        if own_wechat:
            ctx.wechat = WeChatClient(ctx.store, ctx.settings, session)
        if own_wecom:
            ctx.wecom = make_wecom(ctx.store, ctx.settings, session, ctx.problems)
        if own_agent and ctx.settings.wecom_agent_secret:  # a token per secret, shared
            ctx.wecom_agent = make_wecom(ctx.store, dataclasses.replace(
                ctx.settings, wecom_secret=ctx.settings.wecom_agent_secret), session,
                ctx.problems)
        try:
            yield ctx
        finally:
            if own_wechat:
                ctx.wechat = None
            if own_wecom:
                ctx.wecom = None
            if own_agent:
                ctx.wecom_agent = None
