"""The aiohttp application: ``create_app(settings, store)``; resources live in ``cleanup_ctx``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from storage import Store, StoreError, StoreUnavailable, open_store

from .members import Members
from .rules.config import Rules
from .settings import Settings, rules_for

log = logging.getLogger("memberbot")

MAX_BODY = 64 * 1024

@dataclass
class Context:
    """What handlers share: settings, rules, the store, use cases, the clock, API clients."""

    settings: Settings
    rules: Rules
    store: Store
    members: Members
    clock: Callable[[], datetime]
    extras: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # shown on /healthz

    def now(self) -> datetime:
        return self.clock()


CTX = web.AppKey("ctx", Context)


def system_clock(tz: ZoneInfo) -> Callable[[], datetime]:
    return lambda: datetime.now(tz)


@web.middleware
async def errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Nobody sees a stack trace: store outages are 503, anything else a plain 500."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except StoreUnavailable as e:
        log.warning("store unavailable on %s: %s", request.path, e)
        return web.json_response({"code": "store_unavailable",
                                  "message": "系统繁忙，请稍后再试 / service busy, retry later"},
                                 status=503)
    except Exception:
        log.exception("unhandled error on %s", request.path)
        return web.json_response({"code": "internal_error",
                                  "message": "系统繁忙，请稍后再试 / internal error"}, status=500)


async def health(ctx: Context) -> dict[str, Any]:
    """Everything /healthz knows; the public sees ``public_health`` of it, admins all."""
    from .jobs.scheduler import LEADER_KEY

    store = await ctx.store.ping()
    try:
        leader = await ctx.store.kv_get(LEADER_KEY)
    except StoreError:
        leader = None
    here = ctx.extras.get("scheduler")
    return {"ok": bool(store.get("ok")) and not ctx.problems, "store": ctx.store.kind,
            "scheduler": {"leader": leader, "this_process": getattr(here, "sid", None)},
            "store_status": store, "problems": ctx.problems}


async def healthz(request: web.Request) -> web.Response:
    """Public: ok, the store kind and the scheduler's leader; no paths, no settings."""
    h = await health(request.app[CTX])
    return web.json_response({k: h[k] for k in ("ok", "store", "scheduler")},
                             status=200 if h["ok"] else 503)


def create_app(settings: Settings, store: Store | None = None, *, rules: Rules | None = None,
               clock: Callable[[], datetime] | None = None) -> web.Application:
    """The whole HTTP service. Without ``store``, it is opened from ``settings`` on start."""
    rules = rules or rules_for(settings)
    tz = rules.tz
    own_store = store is None
    store = store or open_store(settings.store_url, settings.data_key)
    members = Members(store, rules)
    ctx = Context(settings, rules, store, members, clock or system_clock(tz))
    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors])
    app[CTX] = ctx

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        if own_store:
            await store.open()
        await members.ensure_stock()
        yield
        if own_store:
            await store.close()

    app.cleanup_ctx.append(store_ctx)
    app.router.add_get("/healthz", healthz)
    from .handlers import admin, api, guard, metrics, oa, wecom  # they import this module

    # each adds its routes (and middleware); guard's body deadline sits inside api's errors
    for mod in (oa, wecom, api, guard, admin, metrics):
        mod.setup(app)
    return app


__all__ = ["CTX", "Context", "StoreError", "create_app"]
