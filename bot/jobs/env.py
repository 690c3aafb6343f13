"""What a job run needs: store, use cases, rules, API clients, a wall clock for leases.

The server builds it from the app's context (:func:`from_context`); ``memberbot jobs`` opens
its own (:func:`bot.jobs.cli.open_env`).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from storage import Store

from ..channels.wecom import WeComClient
from ..members import Members
from ..rules.config import Rules
from ..settings import Settings


def default_lease() -> float:
    """Seconds a batch in flight is presumed alive before another sender resolves it."""
    return float(os.environ.get("MEMBERBOT_OUTBOX_LEASE", "60"))


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
    lease: float = field(default_factory=default_lease)
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
    return Env(ctx.settings, ctx.rules, ctx.store, ctx.members, wecom, oa, ctx.problems)
