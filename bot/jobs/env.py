"""What a job run needs: store, use cases, rules, API clients, a wall clock for leases.

The server builds it from the app's context (:func:`from_context`); ``memberbot jobs`` opens
its own (:func:`open_env`).
"""

from __future__ import annotations

import importlib.util
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from storage import Store, open_store

from .. import templating
from ..channels.wecom import WeComClient
from ..members import Members
from ..rules.config import Rules
from ..settings import Settings, rules_for


@dataclass
class Env:
    settings: Settings
    rules: Rules
    store: Store
    members: Members
    wecom: WeComClient | None = None
    oa: Any = None  # bot.channels.wechat.WeChatClient (send_template) when configured
    problems: dict[str, str] = field(default_factory=dict)
    wall: Callable[[], float] = time.time  # leases compare real time, never a job's as-of
    lease: float = 60.0  # seconds a batch in flight is presumed alive (MEMBERBOT_OUTBOX_LEASE)
    concurrency: int = 8  # batches in flight at once; member steps are 32 at a time
    sid: str = field(default_factory=lambda: secrets.token_hex(6))

    @property
    def oa_template(self) -> str:
        return self.settings.wechat_template_id if self.oa is not None else ""


def make_wecom(store: Store, settings: Settings, session: aiohttp.ClientSession,
               problems: dict[str, str]) -> WeComClient | None:
    if not (settings.wecom_corp_id and settings.wecom_secret):
        return None
    return WeComClient(store, settings, session, problems=problems)


def make_oa(store: Store, settings: Settings, session: aiohttp.ClientSession) -> Any:
    """The Official Account client for the template-message fallback, when configured."""
    if not (settings.wechat_appid and settings.wechat_appsecret and settings.wechat_template_id):
        return None
    if importlib.util.find_spec("bot.channels.wechat") is None:
        return None
    from ..channels.wechat import WeChatClient

    return WeChatClient(store, settings, session)


def from_context(ctx: Any, session: aiohttp.ClientSession) -> Env:
    """An Env sharing the server's store, use cases, problems and API clients."""
    wecom = ctx.extras.get("wecom") or make_wecom(ctx.store, ctx.settings, session,
                                                  ctx.problems)
    oa = None
    if ctx.settings.wechat_template_id:
        oa = ctx.extras.get("wechat") or make_oa(ctx.store, ctx.settings, session)
    return Env(ctx.settings, ctx.rules, ctx.store, ctx.members, wecom, oa, ctx.problems,
               lease=ctx.settings.outbox_lease)


@asynccontextmanager
async def open_env(settings: Settings, *, store: Store | None = None,
                   rules: Rules | None = None) -> AsyncIterator[Env]:
    """Open the store and API clients of ``settings`` for one command."""
    rules = rules or rules_for(settings)
    templating.use(settings.templates)
    own = store is None
    store = store or open_store(settings.store_url, settings.data_key)
    if own:
        await store.open()
    try:
        async with aiohttp.ClientSession() as session:
            problems: dict[str, str] = {}
            yield Env(settings, rules, store, Members(store, rules),
                      make_wecom(store, settings, session, problems),
                      make_oa(store, settings, session), problems,
                      lease=settings.outbox_lease)
    finally:
        if own:
            await store.close()
