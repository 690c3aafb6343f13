"""``/metrics``: Prometheus text from :data:`bot.metrics.REGISTRY`, and the request middleware
that counts requests by route and status and times the WeChat/WeCom callbacks. The store's
latency and conflicts arrive through its metrics hooks (:data:`bot.metrics.STORE_METRICS`)."""

from __future__ import annotations

import functools
import hmac
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..metrics import CALLBACK_LATENCY, REGISTRY, REQUESTS
from .guard import GUARD, client_address, direct_loopback, ip_of

CALLBACK_ROUTES = ("/wechat", "/wecom")


def route_of(request: web.Request) -> str:
    """The route template (``/api/orders/{order_id}/refund``), never the raw path, so member
    codes and order ids stay out of the labels."""
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return "unmatched"
    return info.route.resource.canonical


@functools.lru_cache(maxsize=4096)
def _counter(route: str, method: str, status: int):  # labels() costs a lock and a dict build
    return REQUESTS.labels(route, method, str(status))


@functools.lru_cache(maxsize=16)
def _latency(route: str):
    return CALLBACK_LATENCY.labels(route)


@web.middleware
async def count_requests(request: web.Request, handler: Callable) -> web.StreamResponse:
    t0 = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        route = route_of(request)
        _counter(route, request.method, status).inc()
        if route in CALLBACK_ROUTES:
            _latency(route).observe(time.perf_counter() - t0)


def allowed(request: web.Request) -> bool:
    """Loopback (not through a proxy), a configured network, or the configured token."""
    g = request.app[GUARD]
    if direct_loopback(request):
        return True
    if g.metrics_networks:
        ip = ip_of(client_address(request))
        if ip is not None and any(ip in n for n in g.metrics_networks):
            return True
    given = request.headers.get("Authorization", "")
    return bool(g.metrics_token) and hmac.compare_digest(
        given.encode("utf-8", "replace"), f"Bearer {g.metrics_token}".encode())


async def metrics(request: web.Request) -> web.Response:
    if not allowed(request):
        raise web.HTTPForbidden(text="metrics are served to loopback, to "
                                     "MEMBERBOT_METRICS_NETWORKS or with the bearer token "
                                     "MEMBERBOT_METRICS_TOKEN")
    resp = web.Response(body=generate_latest(REGISTRY))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    resp.charset = "utf-8"
    return resp


def setup(app: web.Application) -> None:
    # outermost, so that statuses set by the error middleware (503, 500) are counted too
    app.middlewares.insert(0, count_requests)
    app.router.add_get("/metrics", metrics)
