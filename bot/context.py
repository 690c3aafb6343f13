"""The typed app context that handlers and jobs receive: settings, rules, the store, the use
cases, the clock and the OA and WeCom API clients, and what a job run needs besides (a wall
clock for leases, the lease, how many batches in flight, this process's id). It imports no
handler, so nothing needs a lazy import to dodge a cycle; :func:`bot.web.create_app` builds
it and opens and closes its resources in ``cleanup_ctx`` (:func:`open_clients`);
``memberbot jobs`` opens one of its own (:func:`bot.jobs.cli.open_context`).
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from storage import Store

from .admins import Accounts
from .card_sync import CardSync
from .channels.wechat import WeChatClient
from .channels.wechat_card import CardAPI
from .channels.wecom import WeComClient
from .members import Members
from .metrics import STORE_METRICS
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
    # jobs: leases compare real time (``wall``), never a job's as-of time
    wall: Callable[[], float] = time.time
    lease: float = 0.0  # seconds a batch in flight is presumed alive (0: the settings')
    concurrency: int = 8  # batches in flight at once; member steps are 32 at a time
    sid: str = field(default_factory=lambda: secrets.token_hex(6))

    def __post_init__(self) -> None:
        self.lease = self.lease or self.settings.outbox_lease
        self.store.metrics = STORE_METRICS  # its latency and conflicts on /metrics

    def now(self) -> datetime:
        return self.clock()

    @functools.cached_property
    def accounts(self) -> Accounts:
        """The /admin accounts and their audit log (use cases over the store)."""
        return Accounts(self.store)

    def new_card_sync(self, api: CardAPI) -> CardSync:
        """A sender of the member-card outbox over this context's store and use cases."""
        notify = self.rules.card.notify_points if self.rules.card is not None else True
        return CardSync(self.store, self.members, api, notify_points=notify, clock=self.now)

    @property
    def oa_template(self) -> str:
        """The OA template of the push fallback, when it is configured and the OA can call."""
        return self.settings.wechat_template_id if self.oa is not None else ""

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
