"""What every request passes before its handler (PRODUCT.md 9, SECURITY.md).

- Bodies arrive within a deadline (``MEMBERBOT_READ_TIMEOUT``, 10 s) or get 408, and at most
  ``MEMBERBOT_MAX_PENDING_BODIES`` are being received at once (503 past that): a body is read
  before anyone knows who sent it, so slow senders must not pin connections or memory.
  Headers have the same deadline (``server_options``: aiohttp closes a connection whose
  request has not fully arrived when its keep-alive timer fires).
- A client that goes away is one quiet log line and a 499 in ``/metrics``, not a 500.
- Signed callbacks (``/wechat``, ``/wecom``) carry a timestamp within
  ``MEMBERBOT_CALLBACK_WINDOW`` (300 s) of now and a nonce used by one body only: a retry
  repeats both with the same body, a replay with another body is refused.
- The client address honours ``X-Forwarded-For`` only from ``MEMBERBOT_TRUSTED_PROXIES``.
- No ``Server`` header naming Python or aiohttp; bad HTTP is one log line, not a traceback.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web, web_response
from aiohttp.http_exceptions import HttpProcessingError

from storage import StoreError

from .. import keys
from ..context import CTX, Context
from ..settings import Settings, SettingsError

log = logging.getLogger("memberbot.http")

SERVER = "memberbot"
CLIENT_GONE = 499  # nginx's "client closed request": never sent, only counted
TIMESTAMP = re.compile(r"[0-9]{1,12}")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(spec: str, name: str) -> tuple[Network, ...]:
    """``10.0.0.0/8, 127.0.0.1`` -> networks; a bad entry is a configuration error."""
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError as e:
            raise SettingsError(f"{name}: {part!r} is not an IP address or network") from e
    return tuple(out)


def ip_of(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None


@dataclass
class Guard:
    read_timeout: float
    max_pending: int
    window: int
    trusted: tuple[Network, ...]
    metrics_networks: tuple[Network, ...]
    metrics_token: str
    pending: int = 0
    nonces: Nonces = field(default_factory=lambda: Nonces())

    @classmethod
    def from_settings(cls, s: Settings) -> Guard:
        return cls(s.read_timeout, s.max_pending_bodies, s.callback_window,
                   networks(s.trusted_proxies, "MEMBERBOT_TRUSTED_PROXIES"),
                   networks(s.metrics_networks, "MEMBERBOT_METRICS_NETWORKS"),
                   s.metrics_token)

    def is_trusted(self, addr: str | None) -> bool:
        ip = ip_of(addr)
        return ip is not None and any(ip in n for n in self.trusted)


GUARD = web.AppKey("guard", Guard)


def client_address(request: web.Request) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the nearest
    address in ``X-Forwarded-For`` that is not one (a client can prepend anything)."""
    g = request.app[GUARD]
    addr = request.remote or ""
    if not g.is_trusted(addr):
        return addr
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed(hops):
        if ip_of(hop) is None:
            break  # garbage: stop at the last address a trusted proxy vouched for
        addr = hop
        if not g.is_trusted(hop):
            break
    return addr


def direct_loopback(request: web.Request) -> bool:
    """A request from this machine that no proxy forwarded."""
    ip = ip_of(request.remote)
    return bool(ip is not None and ip.is_loopback and "X-Forwarded-For" not in request.headers
                and "Forwarded" not in request.headers)


# -- bodies -------------------------------------------------------------------------------
def _refuse(status: int, text: str) -> web.Response:
    resp = web.Response(status=status, text=text)
    resp.force_close()
    return resp


@web.middleware
async def read_body(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Receive the body within the deadline before any handler runs (they then read it from
    memory); 413 past 64 KiB is aiohttp's ``client_max_size``."""
    if not request.body_exists or request.match_info.http_exception is not None:
        return await handler(request)
    g = request.app[GUARD]
    if g.pending >= g.max_pending:
        log.warning("%d request bodies are being received: refused one to %s", g.pending,
                    request.path)
        return _refuse(503, "too many requests in progress; retry later")
    g.pending += 1
    try:
        async with asyncio.timeout(g.read_timeout):
            await request.read()
    except TimeoutError:
        log.info("a request body to %s did not arrive within %g s: connection closed",
                 request.path, g.read_timeout)
        return _refuse(408, f"the request body did not arrive within {g.read_timeout:g} s")
    except ConnectionError:
        log.info("the client went away while sending a request body to %s", request.path)
        return _refuse(CLIENT_GONE, "")
    finally:
        g.pending -= 1
    return await handler(request)


# -- signed callbacks --------------------------------------------------------------------
def timestamp_fresh(request: web.Request) -> None:
    """403 unless the query's ``timestamp`` is unix seconds within the window of now."""
    g = request.app[GUARD]
    ts = request.query.get("timestamp", "")
    if not TIMESTAMP.fullmatch(ts) or abs(int(ts) - time.time()) > g.window:
        raise web.HTTPForbidden(text=f"the timestamp is missing or more than {g.window} s "
                                     "from now")


class Nonces:
    """The callback nonces this process saw within the window: (digest, expiry, the store's
    pending write or None), oldest first. Two copies in one process are told apart here at
    once, without waiting for the store."""

    MAX = 20_000  # seconds of WeChat's retries even at 1,000 callbacks/s; older: the store

    def __init__(self) -> None:
        self._seen: OrderedDict[str, tuple[str, float, asyncio.Future | None]] = OrderedDict()

    def get(self, key: str) -> tuple[str, float, asyncio.Future | None] | None:
        now = time.monotonic()
        while self._seen:  # expired ones first out
            k, v = next(iter(self._seen.items()))
            if v[1] > now and len(self._seen) <= self.MAX:
                break
            del self._seen[k]
        return self._seen.get(key)

    def put(self, key: str, digest: str, ttl: float, pending: asyncio.Future | None) -> None:
        self._seen[key] = (digest, time.monotonic() + ttl, pending)

    def settled(self, key: str) -> None:
        """The store's write of ``key`` is done: keep no task (nor its result) alive."""
        v = self._seen.get(key)
        if v is not None and v[2] is not None:
            self._seen[key] = (v[0], v[1], None)


async def nonce_once(request: web.Request, channel: str, body: bytes) -> asyncio.Future | None:
    """403 when the (timestamp, nonce) of this callback came before with another body.

    Kept in the store, so it holds across processes and restarts. The same body again is
    WeChat's or WeCom's retry, which the dedup keys answer once. On a store only this process
    writes (``one_process``: SQLite), this process's memory and a read of the store decide at
    once and the nonce's write is returned pending: it usually shares the group commit of
    the message's own update, and the caller awaits it before it answers (so a nonce is durable
    before any reply to its callback leaves). Elsewhere the write is awaited here."""
    timestamp_fresh(request)
    g = request.app[GUARD]
    members = request.app[CTX].members
    key = keys.callback_nonce(channel, request.query["timestamp"],
                              request.query.get("nonce", "")[:64])
    digest = hashlib.sha256(body).hexdigest()[:32]
    ttl = 2 * g.window + 60
    if not members.one_process:
        if await members.cache(key, digest, ttl, only_new=True):
            return None
        if await members.cached(key) != digest:
            raise web.HTTPForbidden(text="this nonce was already used")
        return None
    known = g.nonces.get(key)
    if known is not None:
        if known[0] != digest:
            raise web.HTTPForbidden(text="this nonce was already used")
        return known[2]
    g.nonces.put(key, digest, ttl, None)  # before any await: a concurrent copy finds it
    stored = await members.cached(key)  # stored before this process started
    if stored is not None:
        g.nonces.put(key, stored, ttl, None)
        if stored != digest:
            raise web.HTTPForbidden(text="this nonce was already used")
        return None
    pending = asyncio.ensure_future(members.cache(key, digest, ttl, only_new=True))
    g.nonces.put(key, digest, ttl, pending)

    def done(f: asyncio.Future) -> None:
        if not f.cancelled():
            f.exception()  # retrieved, so an unawaited failure is not logged as lost
        g.nonces.settled(key)

    pending.add_done_callback(done)
    return pending


async def nonce_stored(pending: asyncio.Future | None) -> None:
    """Wait for the nonce write ``nonce_once`` returned pending (before answering)."""
    if pending is None:
        return
    try:
        if not await pending:
            log.warning("a callback nonce was stored meanwhile by another process")
    except StoreError as e:
        log.warning("a callback nonce was not stored: %s", e)


# -- what the server says about itself ----------------------------------------------------
PUBLIC_HEALTH = ("ok", "pid", "scheduler_leader", "store")


async def health(ctx: Context) -> dict[str, Any]:
    """Health of this process (``pid``: which of ``--workers N`` answered) and of the store,
    and which process leads the scheduler (``scheduler_leader``: its pid and host, or null).
    The public sees ``PUBLIC_HEALTH`` of it (/healthz); admins all (/admin/health)."""
    store = await ctx.members.health()
    leader = None
    if store.get("ok"):
        try:
            sid = await ctx.members.cached(keys.SCHEDULER_LEADER)
            leader = keys.parse_scheduler_id(sid) if sid else None
        except StoreError as e:
            store = {**store, "ok": False, "error": str(e)}
    ok = bool(store.get("ok")) and not ctx.problems
    return {"ok": ok, "pid": os.getpid(), "scheduler_leader": leader,
            "store": ctx.members.store_kind,
            "store_status": store, "problems": ctx.problems}


async def server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER


class QuietProtocolErrors(logging.Filter):
    """aiohttp logs malformed HTTP (an over-long request line, a bad method) and clients
    that vanish with a traceback at ERROR: keep one line at INFO instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError | ConnectionError):
            what = getattr(exc, "message", "") or str(exc) or type(exc).__name__
            record.args = (record.getMessage(), " ".join(str(what).split())[:200])
            record.msg = "%s: %s"
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_QUIET = QuietProtocolErrors()


def server_options(settings: Settings) -> dict:
    """``web.run_app`` options of a serving process: the header deadline, a short linger.
    Also names the
    server in the replies aiohttp makes before any application code runs (malformed HTTP),
    which ``server_header`` cannot reach: aiohttp reads this module global per response."""
    web_response.SERVER_SOFTWARE = SERVER
    # after a 408/413/503 the unread rest of a body is drained for a second, not aiohttp's 10
    return {"keepalive_timeout": settings.read_timeout, "lingering_time": 1.0}


def setup(app: web.Application) -> None:
    app[GUARD] = Guard.from_settings(app[CTX].settings)
    app.middlewares.append(read_body)  # innermost of the shared ones: after routing
    app.on_response_prepare.append(server_header)
    server_log = logging.getLogger("aiohttp.server")
    if _QUIET not in server_log.filters:
        server_log.addFilter(_QUIET)
