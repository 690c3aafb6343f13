"""What a job run needs: store, use cases, rules, API clients, a wall clock for leases.

The server builds it from the app's context (:func:`from_context`); ``memberbot jobs`` opens
its own (:func:`bot.jobs.cli.open_env`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from storage import Store

from ..channels.wechat import WeChatClient
from ..channels.wecom import WeComClient
from ..context import Context
from ..members import Members
from ..rules.config import Rules
from ..settings import Settings


@dataclass
class Env:
    settings: Settings
    rules: Rules
    store: Store
    members: Members
    wecom: WeComClient | None = None
    oa: WeChatClient | None = None  # send_template, when the OA fallback is configured
    problems: dict[str, str] = field(default_factory=dict)
    wall: Callable[[], float] = time.time  # leases compare real time, never a job's as-of
    lease: float = 60.0  # seconds a batch in flight is presumed alive (MEMBERBOT_OUTBOX_LEASE)
    concurrency: int = 8  # batches in flight at once; member steps are 32 at a time
    sid: str = field(default_factory=lambda: secrets.token_hex(6))

    @property
    def oa_template(self) -> str:
        return self.settings.wechat_template_id if self.oa is not None else ""


def make_oa(store: Store, settings: Settings,
            session: aiohttp.ClientSession) -> WeChatClient | None:
    """The Official Account client for the template-message fallback, when configured."""
    if not (settings.wechat_appid and settings.wechat_appsecret and settings.wechat_template_id):
        return None
    return WeChatClient(store, settings, session)


def from_context(ctx: Context) -> Env:
    """An Env sharing the server's store, use cases, problems and API clients."""
    oa = ctx.oa if ctx.settings.wechat_template_id else None
    return Env(ctx.settings, ctx.rules, ctx.store, ctx.members, ctx.wecom, oa, ctx.problems,
               lease=ctx.settings.outbox_lease)
