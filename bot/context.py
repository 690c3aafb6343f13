"""The typed app context that handlers and jobs receive: settings, rules, the store, the use
cases, the clock and the OA and WeCom API clients. It imports no handler, so nothing needs a
lazy import to dodge a cycle; :func:`bot.web.create_app` builds it and opens and closes its
resources in ``cleanup_ctx`` (:func:`open_clients`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from storage import Store

from .channels.wechat import WeChatClient
from .channels.wecom import WeComClient
from .members import Members
from .rules.config import Rules
from .settings import Settings


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
    problems: dict[str, str] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()

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
        if own_wechat:
            ctx.wechat = WeChatClient(ctx.store, ctx.settings, session)
        if own_wecom:
            ctx.wecom = make_wecom(ctx.store, ctx.settings, session, ctx.problems)
        try:
            yield ctx
        finally:
            if own_wechat:
                ctx.wechat = None
            if own_wecom:
                ctx.wecom = None
