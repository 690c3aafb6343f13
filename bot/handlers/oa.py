"""``/wechat``: the Official Account callback (GET verify, POST in plain and safe mode).

size limit → signature → defusedxml parse → decrypt → dedup key → command registry → use case
→ template → encrypt. A reply not ready within the budget is answered ``success`` and sent
afterwards as a customer-service message (:mod:`bot.handlers.late`). Retries (same dedup
key) get the first reply and change nothing: the reply is stored under the key in the same
store as the member.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime

from aiohttp import web

from storage import StoreError

from ..channels.wechat import WeChatClient
from ..context import CTX, MAX_BODY, Context
from ..rules.models import Refusal
from ..rules.timeutil import local_day
from ..settings import SettingsError
from ..templating import render
from . import card, commands
from .guard import nonce_once, nonce_stored, timestamp_fresh
from .late import LateReplies, Recomputed
from .ratelimit import CommandLimit
from .unionid import UnionIds
from .wxproto import (
    BadRequest,
    BadSignature,
    Incoming,
    SafeMode,
    incoming,
    parse_xml,
    signature_ok,
    text_reply,
)

log = logging.getLogger("memberbot.oa")

# Events answered through the router; every other event (VIEW, LOCATION, TEMPLATESENDJOBFINISH…)
# is acknowledged with "success" and changes nothing.
ROUTED_EVENTS = {"subscribe", "unsubscribe", "scan", "click", *card.EVENTS}
NOT_LIMITED = {"subscribe", "unsubscribe", "scan", *card.EVENTS}
CREATE_TIME_SLACK = 600  # seconds a retry may come after the message; older is not trusted


def message_time(msg: Incoming, now: datetime) -> datetime:
    """The message's own CreateTime when it is plausible (WeChat's retries carry the same
    one), so a retry after midnight still counts for the day the member sent it."""
    try:
        sent = int(msg.create_time)
    except (TypeError, ValueError):
        return now
    at = now.timestamp()
    if at - CREATE_TIME_SLACK <= sent <= at:
        return datetime.fromtimestamp(sent, now.tzinfo)
    return now


class OfficialAccount:
    """The callback and its background work (late replies, unionid look-ups, counts)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        s = ctx.settings
        self.token = s.wechat_token
        self.safe: SafeMode | None = None
        if s.wechat_aes_key:
            try:
                self.safe = SafeMode(s.wechat_token, s.wechat_aes_key, s.wechat_appid)
            except ValueError as e:
                raise SettingsError(str(e)) from e
        self._tasks: set[asyncio.Task] = set()
        self.late = LateReplies(ctx.members, lambda: self.ctx.wechat, self.spawn)
        self._openids: dict[str, str] = {}
        self.limit = CommandLimit(ctx.members, ctx.rules.rate_limit["commands_per_minute"],
                                  self.spawn)
        self.unionids = UnionIds(ctx, self.spawn)
        self._memo: dict[str, tuple] = {}  # facts that never change once stored (check-ins)
        self._touched: dict[str, str] = {}  # member -> day its activity was last recorded

    def _remember(self, openid: str, mid: str) -> None:
        # an openid, once claimed, belongs to its member for good: skip the look-up next time
        if len(self._openids) >= 200_000:
            self._openids.clear()
        self._openids[openid] = mid

    @property
    def wechat(self) -> WeChatClient | None:
        return self.ctx.wechat

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        yield
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=5)
            for t in pending:
                t.cancel()

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- HTTP -----------------------------------------------------------------------------------
    async def verify(self, request: web.Request) -> web.Response:
        q = request.query
        if not signature_ok(self.token, q.get("signature", ""), q.get("timestamp", ""),
                            q.get("nonce", "")):
            raise web.HTTPForbidden(text="bad signature")
        timestamp_fresh(request)
        return web.Response(text=q.get("echostr", ""))

    async def callback(self, request: web.Request) -> web.Response:
        # timed as memberbot_callback_seconds{route="/wechat"} by the metrics middleware
        size = request.content_length
        if size is not None and size > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=size)
        q = request.query
        ts, nonce = q.get("timestamp", ""), q.get("nonce", "")
        if not signature_ok(self.token, q.get("signature", ""), ts, nonce):
            raise web.HTTPForbidden(text="bad signature")
        body = await request.read()  # aiohttp answers 413 past client_max_size (chunked too)
        # plain mode signs the URL, not the body: a signed URL is good for one body, briefly
        pending = None
        try:
            pending = await nonce_once(request, "wechat", body)
            busy = False
        except StoreError as e:  # nothing is applied; the member gets the polite busy reply
            log.warning("wechat callback answered busy: the nonce was not checked: %s", e)
            busy = True
        encrypted = q.get("encrypt_type", "raw").lower() == "aes"
        if self.safe is not None and not encrypted:
            raise web.HTTPForbidden(text="safe mode: the message must be encrypted")
        try:
            fields = parse_xml(body)
            if encrypted:
                if self.safe is None:
                    raise BadRequest("encrypted message but WECHAT_AES_KEY is not set")
                fields = parse_xml(self.safe.decrypt(fields.get("Encrypt", ""),
                                                     q.get("msg_signature", ""), ts, nonce))
            msg = incoming(fields)
        except BadSignature:
            raise web.HTTPForbidden(text="bad msg_signature") from None
        except BadRequest as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        text = render("replies/busy.j2") if busy else await self.answer(msg)
        if not text:  # no reply leaves (or it goes out late): its nonce's write goes on
            return web.Response(text="success")
        await nonce_stored(pending)
        xml = text_reply(msg.from_user, msg.to_user, text, int(time.time()))
        if encrypted:
            xml = self.safe.encrypt(xml, str(int(time.time())), nonce)
        return web.Response(text=xml, content_type="application/xml")

    # -- answering --------------------------------------------------------------------------------
    async def answer(self, msg: Incoming) -> str | None:
        """The reply to ``msg`` if ready within the budget; else None (``success``), and it
        goes out later as a customer-service message (:mod:`bot.handlers.late`)."""
        return await self.late.answer(msg.dedup_key, msg.from_user, lambda: self.process(msg))

    @property
    def budget(self) -> float:
        return self.late.budget

    @budget.setter
    def budget(self, seconds: float) -> None:
        self.late.budget = seconds

    @property
    def late_retry_delays(self) -> tuple[float, ...]:
        return self.late.retry_delays

    @late_retry_delays.setter
    def late_retry_delays(self, delays: tuple[float, ...]) -> None:
        self.late.retry_delays = delays

    async def process(self, msg: Incoming) -> str | None:
        """Never raises: a store failure or a bug answers 系统繁忙 and commits nothing more."""
        try:
            return await self._process(msg)
        except (TimeoutError, StoreError, OSError) as e:
            log.warning("wechat callback answered busy: %s: %s", type(e).__name__, e)
        except Exception:
            log.exception("wechat callback failed; answered busy")
        return render("replies/busy.j2")

    async def _process(self, msg: Incoming) -> str | None:
        ctx = self.ctx
        kind = msg.event.strip().lower() if msg.msg_type == "event" else msg.msg_type
        if msg.msg_type == "event" and kind not in ROUTED_EVENTS:
            return None
        if kind in card.EVENTS and ctx.rules.card is None:
            return None  # no member card configured: nothing changes
        handler, arg, same = self.resolve(msg, kind)
        members, key, now = ctx.members, msg.dedup_key, message_time(msg, ctx.now())
        mid = self._openids.get(msg.from_user)
        if mid is None:
            mid = await members.resolve(openid=msg.from_user)
        if mid is not None:
            self._remember(msg.from_user, mid)
            if not same:
                done, stored = await members.seen(mid, key)
                if done:
                    return await self.late.stored(key, stored)
        text: str | None = None
        if (kind == "unsubscribe" or kind in card.NEEDS_MEMBER) and mid is None:
            return None
        if kind == "unsubscribe":
            await ctx.members.unfollow(mid, now)
        else:
            registration = None
            if mid is None or kind == "subscribe":
                reached, unionid = False, None
                if kind == "subscribe":
                    reached, unionid = await self.unionids.on_subscribe(msg.from_user, mid)
                registration = await ctx.members.register(msg.from_user, now, unionid=unionid)
                mid = registration["member_id"]
                self._remember(msg.from_user, mid)
                if reached:
                    self.unionids.answered(mid)
            else:
                self.unionids.later(mid, msg.from_user)
            if kind not in NOT_LIMITED and await self.limit.exceeded(mid):
                return render("replies/rate_limited.j2")  # not stored: a retry may pass
            turn = commands.Turn(ctx, msg, mid, now, arg=arg, registration=registration,
                                 memo=self._memo, spawn=self.spawn)
            try:
                text = await handler(turn)
            except Refusal as e:
                text = render("replies/refusal.j2", message=e.message)
            if handler is not commands.checkin and registration is None:  # those record it
                await self._touch(mid, now)
            if same:
                # the reply is a function of the use case's keyed result and this message's
                # key, so every copy computes the same text: nothing to store
                return Recomputed(text) if text else None
        stored = await members.reply_with_notices(
            mid, key, now, lambda notes: commands.with_notices(text, notes))
        return stored or None

    async def _touch(self, mid: str, now: datetime) -> None:
        """Any message is an interaction (no dormant push for a member who chats): recorded
        once per member and day."""
        day = local_day(now, self.ctx.rules.tz).isoformat()
        if self._touched.get(mid) == day:
            return
        try:
            await self.ctx.members.touch(mid, now)
        except (StoreError, Refusal) as e:  # the reply matters more than the activity mark
            log.warning("activity of %s not recorded: %s", mid, e)
            return
        if len(self._touched) >= 100_000:
            self._touched.clear()
        self._touched[mid] = day

    @staticmethod
    def resolve(msg: Incoming, kind: str) -> tuple[commands.Handler, str, bool]:
        """The handler, its argument, and whether every copy of the message computes the
        same reply (then it is not stored)."""
        r = commands.router
        cmd = None
        arg = ""
        if kind == "text":
            cmd, arg = r.match(msg.content)
        elif kind == "click":
            cmd = r.menu(msg.event_key)
        if cmd is not None:
            return cmd.fn, arg, cmd.same_on_retry
        return r.events.get(kind, commands.hint), "", False  # else a hint, never silence


OA = web.AppKey("oa", OfficialAccount)


def setup(app: web.Application) -> None:
    oa = OfficialAccount(app[CTX])
    app[OA] = oa
    app.cleanup_ctx.append(oa.lifespan)
    app.router.add_get("/wechat", oa.verify)
    app.router.add_post("/wechat", oa.callback)
