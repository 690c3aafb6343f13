"""Outbound webhooks: each endpoint gets the events it asked for, in order, signed like the
store API, once per event id, with retries and backoff.

``MEMBERBOT_WEBHOOKS`` is a JSON list of ``{"name", "url", "secret", "events"}``. The events
come from the ledger (:mod:`bot.changes`), which is committed with every change: the ledger is
the outbox. Each endpoint keeps its cursor in the store (``keys.webhook_cursor``); an event is
passed only after the receiver answered 2xx, and the cursor is moved past it at once, so an
event id is never sent again after it was accepted. (A process that dies between the 2xx and
moving the cursor sends that one event again on restart, with the same id: receivers drop an
id they have seen.) A lock with expiry in the store lets one process deliver per endpoint.

Headers: ``X-Memberbot-Timestamp``, ``X-Memberbot-Signature`` (hex HMAC-SHA256 of
``timestamp + "\\n" + "POST" + "\\n" + path + "\\n" + body`` with the endpoint's secret),
``X-Memberbot-Event`` and ``X-Memberbot-Event-Id``. The body is one event as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import aiohttp
import orjson

from storage import Store

from . import changes, keys
from .settings import SettingsError

log = logging.getLogger("memberbot.webhooks")

BATCH = 50
BACKOFF = (1, 2, 5, 15, 30, 60, 120, 300, 600)  # seconds before the 1st, 2nd, … retry
MAX_ATTEMPTS = 12  # then the event is recorded as failed and the endpoint moves on
LOCK_S = 30.0
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    secret: str
    events: tuple[str, ...]

    def wants(self, kind: str) -> bool:
        return kind in self.events


def parse(raw: str) -> list[Endpoint]:
    """``MEMBERBOT_WEBHOOKS``; a mistake is a :class:`SettingsError` naming the entry."""
    if not raw.strip():
        return []
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise SettingsError(f"MEMBERBOT_WEBHOOKS is not JSON: {e}") from e
    if not isinstance(data, list):
        raise SettingsError("MEMBERBOT_WEBHOOKS must be a JSON list of {name, url, secret, "
                            "events}")
    out: list[Endpoint] = []
    for i, d in enumerate(data, 1):
        where = f"MEMBERBOT_WEBHOOKS entry {i}"
        if not isinstance(d, dict):
            raise SettingsError(f"{where}: expected an object")
        name = str(d.get("name") or f"webhook{i}")
        url = d.get("url")
        if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https") \
                or not urlparse(url).netloc:
            raise SettingsError(f"{where} ({name}): url must be an http(s) address")
        secret = d.get("secret")
        if not isinstance(secret, str) or len(secret) < 16:
            raise SettingsError(f"{where} ({name}): secret must be at least 16 characters")
        events = d.get("events") or list(changes.EVENTS)
        if events == "*" or events == ["*"]:
            events = list(changes.EVENTS)
        unknown = [e for e in events if e not in changes.EVENTS]
        if unknown:
            raise SettingsError(f"{where} ({name}): unknown event {unknown[0]!r} (one of "
                                f"{', '.join(changes.EVENTS)})")
        if name in {e.name for e in out}:
            raise SettingsError(f"{where}: the name {name!r} is used twice")
        out.append(Endpoint(name, url, secret, tuple(events)))
    return out


def setup(app: Any, ctx: Any) -> None:
    """Deliver to the endpoints of ``MEMBERBOT_WEBHOOKS`` while the server runs."""
    endpoints = parse(ctx.settings.webhooks)
    if not endpoints:
        return

    async def lifespan(_app: Any) -> Any:
        async with aiohttp.ClientSession() as session:
            delivery = Delivery(ctx.store, ctx.rules.tz, endpoints, session)
            ctx.webhooks = delivery
            task = asyncio.create_task(delivery.loop())
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            ctx.webhooks = None

    app.cleanup_ctx.append(lifespan)


def sign(secret: str, timestamp: str, path: str, body: bytes) -> str:
    msg = b"\n".join((timestamp.encode(), b"POST", path.encode(), body))
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def backoff(attempt: int) -> float:
    return float(BACKOFF[min(attempt, len(BACKOFF)) - 1])


class Delivery:
    """The delivery loop of every endpoint, run by ``memberbot serve``."""

    def __init__(self, store: Store, tz: ZoneInfo, endpoints: list[Endpoint],
                 session: aiohttp.ClientSession, *, wall: Callable[[], float] = time.time,
                 backoff: Callable[[int], float] = backoff) -> None:
        self.store = store
        self.tz = tz
        self.endpoints = endpoints
        self.session = session
        self.wall = wall
        self.backoff = backoff
        self.owner = secrets.token_hex(6)
        self.codes: dict[str, str] = {}

    async def state(self, ep: Endpoint) -> dict[str, Any]:
        raw = await self.store.kv_get(keys.webhook_state(ep.name))
        return orjson.loads(raw) if raw else {"cursor": 0, "delivered": 0, "failed": 0,
                                              "attempts": 0}

    async def _save(self, ep: Endpoint, st: dict[str, Any]) -> None:
        await self.store.kv_set(keys.webhook_state(ep.name), orjson.dumps(st).decode())

    async def run_once(self, ep: Endpoint) -> int:
        """Deliver what is due for ``ep`` now; returns how many events were accepted."""
        lock = keys.webhook_lock(ep.name)
        if not await self.store.kv_set(lock, self.owner, ttl=LOCK_S, only_new=True):
            return 0  # another process delivers to this endpoint
        try:
            return await self._deliver(ep)
        finally:
            await self.store.kv_delete(lock, expect=self.owner)

    async def _deliver(self, ep: Endpoint) -> int:
        st = await self.state(ep)
        if st.get("retry_at", 0) > self.wall():
            return 0
        events, after = await changes.read(self.store, self.tz, int(st["cursor"]), BATCH,
                                           ep.wants, self.codes)
        done = 0
        for ev in events:
            ok, error = await self._post(ep, ev)
            if ok:
                st.update(cursor=int(ev["id"][4:]), attempts=0, retry_at=0, last_error="",
                          delivered=st.get("delivered", 0) + 1, last_event=ev["id"],
                          last_at=self.wall())
                await self._save(ep, st)
                done += 1
                continue
            st["attempts"] = st.get("attempts", 0) + 1
            st["last_error"] = error
            if st["attempts"] >= MAX_ATTEMPTS:
                log.error("webhook %s: event %s given up after %d attempts: %s", ep.name,
                          ev["id"], st["attempts"], error)
                st.update(cursor=int(ev["id"][4:]), attempts=0, retry_at=0,
                          failed=st.get("failed", 0) + 1, last_failed=ev["id"])
                await self._save(ep, st)
                continue
            st["retry_at"] = self.wall() + self.backoff(st["attempts"])
            await self._save(ep, st)
            return done
        if not events and after > int(st["cursor"]):
            st["cursor"] = after  # rows that are no event for this endpoint
            await self._save(ep, st)
        return done

    async def _post(self, ep: Endpoint, ev: dict[str, Any]) -> tuple[bool, str]:
        body = orjson.dumps(ev)
        ts = str(int(self.wall()))
        path = urlparse(ep.url).path or "/"
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "X-Memberbot-Timestamp": ts,
                   "X-Memberbot-Signature": sign(ep.secret, ts, path, body),
                   "X-Memberbot-Event": ev["type"], "X-Memberbot-Event-Id": ev["id"]}
        try:
            async with self.session.post(ep.url, data=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
                                         allow_redirects=False) as r:
                if 200 <= r.status < 300:
                    return True, ""
                return False, f"HTTP {r.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return False, f"{type(e).__name__}: {e}"[:200]

    async def loop(self, interval: float = 1.0) -> None:
        while True:
            for ep in self.endpoints:
                try:
                    while await self.run_once(ep) >= BATCH:
                        pass
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the store blinked: try again next round
                    log.warning("webhook %s: %s", ep.name, e)
            await asyncio.sleep(interval)
