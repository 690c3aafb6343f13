"""The card sync: sends the card outbox (rules/card.py) to WeChat, exactly once and in order.

Card rows are committed with the change that caused them (status ``card_pending``). A sender
runs in every serving process (with or without the scheduler), is woken by a commit and also
looks every ``interval`` seconds, and drains what a crashed process left when it starts.

Per member, one sender at a time (a kv lock with a lease): it takes the member's pending rows
after the highest sequence sent, coalesces them into one call carrying the latest absolute
state (``bonus``) and the sum of their deltas (``add_bonus``), and records the sequence sent,
so an update is never sent twice and the card never goes backwards. Rows a dead sender left
``card_sending`` are sent again with the absolute state only (no delta: WeChat may have shown
it already). 40014/42001 refresh the token once (the client does); 45009 pauses the sync;
40056/40127 (the code is gone) unbind the card and stop; other errors are recorded as failed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp

from storage import OutboxRow, Store, StoreError

from . import keys
from .channels.wechat import WeChatAPIError
from .channels.wechat_card import CARD_RATE_LIMITED, CODE_INVALID, CardAPI
from .rules.card import OUTBOX_STATUS, RECORD_DEFAULT

log = logging.getLogger("memberbot.card")

PENDING, SENDING = OUTBOX_STATUS, "card_sending"
SENT, FAILED, SKIPPED = "card_sent", "card_failed", "card_skipped"
STATUSES = (PENDING, SENDING, SENT, FAILED, SKIPPED)
PAGE = 10_000


class CardSync:
    def __init__(self, store: Store, members: Any, api: CardAPI, *, notify_points: bool = True,
                 clock: Callable[[], datetime], interval: float = 1.0, lease: float = 30.0,
                 backoff: float = 60.0, concurrency: int = 8) -> None:
        self.store, self.members, self.api = store, members, api
        self.notify_points = notify_points
        self.clock = clock
        self.interval, self.lease, self.backoff = interval, lease, backoff
        self.sid = secrets.token_hex(6)
        self.stats: Counter = Counter()
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task | None = None

    # -- life cycle ----------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        while True:
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except (StoreError, aiohttp.ClientError, TimeoutError) as e:  # down: look again
                log.warning("card sync waits: %s", e)
            except Exception:  # a bug: say so, and keep the server serving
                log.exception("card sync failed; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()

    # -- draining ------------------------------------------------------------------------------
    async def paused(self) -> bool:
        until = await self.store.kv_get(keys.CARD_PAUSED)
        return bool(until) and float(until) > time.time()

    async def drain(self) -> Counter:
        """Send every member's pending card updates once; returns what happened."""
        done: Counter = Counter()
        if await self.paused():
            return done
        rows = await self.store.outbox(status=PENDING, limit=PAGE)
        rows += await self.store.outbox(status=SENDING, limit=PAGE)
        by_member: dict[str, list[OutboxRow]] = {}
        for r in rows:
            by_member.setdefault(r.member_id, []).append(r)

        async def one(mid: str, mine: list[OutboxRow]) -> None:
            async with self._sem:
                done[await self._member(mid, mine)] += 1

        await asyncio.gather(*(one(mid, mine) for mid, mine in by_member.items()))
        self.stats.update(done)
        return done

    async def _member(self, mid: str, rows: list[OutboxRow]) -> str:
        lock = keys.card_sync_lock(mid)
        if not await self.store.kv_set(lock, self.sid, ttl=self.lease, only_new=True):
            return "busy"  # another sender has this member; it sends in order
        try:
            return await self._send_member(mid, rows)
        finally:
            await self.store.kv_delete(lock, expect=self.sid)

    async def _settle(self, rows: list[OutboxRow], status: str, data: dict) -> None:
        for r in rows:
            for exp in (SENDING, PENDING):
                if await self.store.outbox_set(r.id, status, data, expect=exp):
                    break

    async def _claim(self, rows: list[OutboxRow]) -> list[OutboxRow]:
        """Take the rows (compare-and-set): one a sender that held the lock before us has
        settled meanwhile is not taken again."""
        out = []
        for r in rows:
            if r.status == PENDING:
                ok = await self.store.outbox_set(r.id, SENDING, {"by": self.sid},
                                                 expect=PENDING)
            else:  # left in flight by a sender that died: WeChat may have shown its delta
                ok = await self.store.outbox_set(r.id, SENDING, {"by": self.sid,
                                                                 "uncertain": True},
                                                 expect=SENDING)
                r.data["uncertain"] = True
            if ok:
                out.append(r)
        return out

    async def _send_member(self, mid: str, rows: list[OutboxRow]) -> str:
        rows = await self._claim(sorted(rows, key=lambda r: r.data["seq"]))
        if not rows:
            return "none"
        sent = int(await self.store.kv_get(keys.card_sync_sent(mid)) or 0)
        old = [r for r in rows if r.data["seq"] <= sent]
        if old:
            await self._settle(old, SKIPPED, {"reason": "superseded"})
        rows = [r for r in rows if r.data["seq"] > sent]
        if not rows:
            return "superseded"
        m = await self.store.get(mid)
        last = rows[-1]
        if m is None or m.card_code != last.data["code"]:
            await self._settle(rows, SKIPPED, {"reason": "unbound"})
            return "unbound"
        activate = any(r.data.get("activate") for r in rows)
        try:
            if activate:
                await self.api.activate(self._activation(last))
            else:
                await self.api.update_user(self._update(rows))
        except WeChatAPIError as e:
            return await self._failed(m, rows, e)
        except (aiohttp.ClientError, TimeoutError) as e:
            # it may have reached WeChat: send again later, the absolute state only
            log.warning("card update of %s: API unreachable (%s); retrying", mid, e)
            await self._settle(rows, PENDING, {"uncertain": True})
            return "retry"
        await self.store.kv_set(keys.card_sync_sent(mid), str(last.data["seq"]))
        await self._settle(rows[:-1], SENT, {"coalesced_into": last.id})
        await self._settle([last], SENT, {"coalesced": len(rows)})
        return "activated" if activate else "sent"

    def _activation(self, last: OutboxRow) -> dict:
        d = last.data
        return {"membership_number": d.get("membership_number") or d["code"], "code": d["code"],
                "card_id": d["card_id"], "init_bonus": d["bonus"],
                "init_bonus_record": "开卡积分同步", "init_custom_field_value1": d["tier_name"]}

    def _update(self, rows: list[OutboxRow]) -> dict:
        last = rows[-1].data
        delta = sum(r.data["add_bonus"] for r in rows if not r.data.get("uncertain"))
        records = {r.data["record"] for r in rows if r.data["add_bonus"]}
        tier = any(r.data.get("tier_changed") for r in rows)
        body: dict[str, Any] = {"code": last["code"], "card_id": last["card_id"],
                                "bonus": last["bonus"], "add_bonus": delta,
                                "record_bonus": (records.pop() if len(records) == 1
                                                 else RECORD_DEFAULT if delta else last["record"]),
                                "notify_optional": {
                                    "is_notify_bonus": self.notify_points and delta != 0,
                                    "is_notify_custom_field1": tier}}
        if tier:
            body["custom_field_value1"] = last["tier_name"]
        pend = [r.data["pending"] for r in rows if r.data.get("pending_changed")]
        if pend:  # the card's second field: pending purchase points (card.pending_field_name)
            body["custom_field_value2"] = f"{pend[-1]}分"
        return body

    async def _failed(self, m: Any, rows: list[OutboxRow], e: WeChatAPIError) -> str:
        code = e.errcode
        if code in CARD_RATE_LIMITED:
            log.warning("card sync rate limited (%s): pausing %.0f s", code, self.backoff)
            await self.store.kv_set(keys.CARD_PAUSED, str(time.time() + self.backoff),
                                    ttl=self.backoff)
            await self._settle(rows, PENDING, {})
            return "rate_limited"
        await self._settle(rows, FAILED, {"error": code, "errmsg": e.errmsg[:200]})
        if code in CODE_INVALID:
            log.warning("card of member %s is gone (%s): unbound", m.id, code)
            await self.members.unbind_card(m.id, rows[-1].data["code"], self.clock(),
                                           key=f"sync:{rows[-1].id}", reason=f"errcode {code}")
            return "unbound"
        log.error("card update of member %s failed: %s", m.id, e)
        return "failed"


async def backlog(store: Store) -> dict[str, int]:
    """Card rows per status (the admin's sync backlog and failures)."""
    return {s: len(await store.outbox(status=s, limit=10**9)) for s in (PENDING, SENDING,
                                                                         FAILED)}
