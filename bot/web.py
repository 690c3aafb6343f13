"""The aiohttp application: ``create_app(settings, store)``; resources live in ``cleanup_ctx``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from aiohttp import web

from storage import Store, StoreError, StoreUnavailable, open_store

from . import templating, webhooks
from .context import CTX, MAX_BODY, Context, open_clients, system_clock
from .handlers import admin, api, card, guard, metrics, oa, sidebar, wecom
from .jobs.registry import load_rules
from .jsonout import json_response
from .members import Members
from .rules.config import Rules
from .settings import Settings

log = logging.getLogger("memberbot")


@web.middleware
async def errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Nobody sees a stack trace: store outages are 503, anything else a plain 500."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except StoreUnavailable as e:
        log.warning("store unavailable on %s: %s", request.path, e)
        return json_response({"code": "store_unavailable",
                                  "message": "系统繁忙，请稍后再试 / service busy, retry later"},
                                 status=503)
    except Exception:
        log.exception("unhandled error on %s", request.path)
        return json_response({"code": "internal_error",
                                  "message": "系统繁忙，请稍后再试 / internal error"}, status=500)


async def healthz(request: web.Request) -> web.Response:
    """Public: ok, the store kind, which process answered and which leads the scheduler; no
    paths, no settings, no problems (those are for admins)."""
    h = await guard.health(request.app[CTX])
    return json_response({k: h[k] for k in guard.PUBLIC_HEALTH},
                         status=200 if h["ok"] else 503)


def create_app(settings: Settings, store: Store | None = None, *, rules: Rules | None = None,
               clock: Callable[[], datetime] | None = None) -> web.Application:
    """The whole HTTP service. Without ``store``, it is opened from ``settings`` on start."""
    rules = rules or load_rules(settings)
    templating.use(settings.templates)
    tz = rules.tz
    own_store = store is None
    store = store or open_store(settings.store_url, settings.data_key)
    members = Members(store, rules)
    ctx = Context(settings, rules, store, members, clock or system_clock(tz))
    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors])
    app[CTX] = ctx

    async def resources(app: web.Application) -> AsyncIterator[None]:
        if own_store:
            await store.open()
        try:
            await members.ensure_stock()
            async with open_clients(ctx):
                yield
        finally:
            if own_store:
                await store.close()

    app.cleanup_ctx.append(resources)
    app.router.add_get("/healthz", healthz)
    # each adds its routes (and middleware); guard's body deadline sits inside api's errors
    for mod in (oa, card, wecom, api, guard, admin, sidebar, metrics):
        mod.setup(app)
    webhooks.setup(app, ctx)  # after the store's resources: its lifespan uses the store
    return app


__all__ = ["CTX", "MAX_BODY", "Context", "StoreError", "create_app", "system_clock"]
