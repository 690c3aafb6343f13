"""``/wecom``: the WeCom callback — URL verification (GET) and encrypted events (POST).

size limit (64 KiB, 413) → defusedxml parse (400) → msg_signature over Encrypt (403) → decrypt
with WECOM_AES_KEY / WECOM_CORP_ID (wechatpy's enterprise PrpCrypto, 400) → parse → event.

``change_external_contact``: on add_external_contact / add_half_external_contact the contact is
looked up (externalcontact/get), linked to the OA member by unionid (or created), its staff
recorded, and the welcome sent with the event's WelcomeCode right here, before answering —
the code lives 20 s. del_external_contact (the staff member deleted the customer) and
del_follow_user (the customer deleted the staff member) drop the staff relation.
``change_contact`` / ``delete_user`` (the address book: a staff member left the company) makes
the pushes of its customers wait for a new owner (a handover, 离职继承, or a new
add_external_contact). Every step is idempotent, so WeCom's retries change nothing twice.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Coroutine

from aiohttp import web
from wechatpy.enterprise.crypto import PrpCrypto

from ..channels.wecom import WeComClient, WeComError
from ..context import CTX, MAX_BODY, Context
from ..jobs import welcome
from .guard import nonce_once, nonce_stored, timestamp_fresh
from .wxproto import DECRYPT_FAILED, BadRequest, parse_xml, signature_ok

log = logging.getLogger("memberbot.wecom")

ADDED = ("add_external_contact", "add_half_external_contact")
REMOVED = ("del_external_contact", "del_follow_user")


class WeComCallback:
    lookup_timeout = 3.0  # of the 20 s a WelcomeCode lives
    link_retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        s = ctx.settings
        self.token, self.corp_id = s.wecom_token, s.wecom_corp_id
        self.key: bytes | None = None
        if s.wecom_aes_key:
            try:
                key = base64.b64decode(s.wecom_aes_key + "=", validate=True)
            except ValueError:
                key = b""
            if len(key) == 32:
                self.key = key
            else:
                ctx.problems["wecom_callback"] = ("WECOM_AES_KEY must be the 43-character "
                                                  "EncodingAESKey of the WeCom callback")
        self._tasks: set[asyncio.Task] = set()

    @property
    def configured(self) -> bool:
        return bool(self.token and self.key and self.corp_id)

    @property
    def wecom(self) -> WeComClient | None:
        return self.ctx.wecom

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        yield
        # link retries (the next event links again) and departures (the handover job ends them)
        for t in set(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)

    def spawn(self, coro: Coroutine) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- HTTP -----------------------------------------------------------------------------------
    def _check_signature(self, encrypt: str, q: dict) -> None:
        if not signature_ok(self.token, q.get("msg_signature", ""), q.get("timestamp", ""),
                            q.get("nonce", ""), encrypt):
            raise web.HTTPForbidden(text="bad msg_signature")

    def _decrypt(self, encrypt: str, q: dict) -> str:
        self._check_signature(encrypt, q)
        try:
            return PrpCrypto(self.key).decrypt(encrypt, self.corp_id)
        except Exception:  # wrong key or corp id: padding, length, utf-8, corp id errors
            raise web.HTTPBadRequest(text=DECRYPT_FAILED) from None

    async def verify(self, request: web.Request) -> web.Response:
        if not self.configured:
            raise web.HTTPServiceUnavailable(text="WeCom callback not configured: set "
                                                  "WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID")
        q = request.query
        echo = self._decrypt(q.get("echostr", ""), q)
        timestamp_fresh(request)
        return web.Response(text=echo)

    async def callback(self, request: web.Request) -> web.Response:
        # timed once, as memberbot_callback_seconds{route="/wecom"}, by the metrics middleware
        size = request.content_length
        if size is not None and size > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=size)
        if not self.configured:
            raise web.HTTPServiceUnavailable(text="WeCom callback not configured")
        body = await request.read()  # aiohttp answers 413 past client_max_size (chunked too)
        try:
            encrypt = parse_xml(body).get("Encrypt", "")
            if not encrypt:
                raise BadRequest("no <Encrypt>")
        except BadRequest as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        self._check_signature(encrypt, request.query)
        pending = await nonce_once(request, "wecom", body)
        try:
            event = parse_xml(self._decrypt(encrypt, request.query))
        except BadRequest as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        if event.get("MsgType") == "event" and event.get("Event") == "change_external_contact":
            await self.contact_changed(event)
        elif (event.get("MsgType") == "event" and event.get("Event") == "change_contact"
              and event.get("ChangeType") == "delete_user" and event.get("UserID")):
            await self.staff_left(event["UserID"])
        await nonce_stored(pending)
        return web.Response(text="success")

    # -- events -----------------------------------------------------------------------------------
    async def contact_changed(self, ev: dict[str, str]) -> None:
        change, eu, staff = ev.get("ChangeType", ""), ev.get("ExternalUserID", ""), \
            ev.get("UserID", "")
        if not eu or not staff:
            return
        now = self.ctx.now()
        if change in REMOVED:
            await self.ctx.members.unlink_wecom(eu, staff, now)
        elif change in ADDED:
            await self.added(eu, staff, ev.get("WelcomeCode", ""), ev.get("State", ""))
        elif change == "transfer_fail":  # UserID is the staff member who was to take over
            mid = await self.ctx.members.resolve(external_userid=eu)
            if mid is not None:
                await self.ctx.members.end_handover(mid, staff, now, taken_over=False,
                                                    reason=ev.get("FailReason", ""))
        elif change == "edit_external_contact" and (contact := await self._contact(eu)):
            await self._link(eu, staff, contact)

    async def staff_left(self, staff: str) -> None:
        """Noted before answering; its customers are marked in the background (a crash
        midway is finished by the handover job)."""
        now = self.ctx.now()
        await self.ctx.members.note_departure(staff, now)
        self.spawn(self.ctx.members.staff_left(staff, now))

    async def _contact(self, eu: str) -> dict | None:
        if self.wecom is None:
            return None
        try:
            return await asyncio.wait_for(self.wecom.get_external_contact(eu),
                                          self.lookup_timeout)
        except (TimeoutError, WeComError) as e:
            log.warning("externalcontact/get failed for a new contact: %s", e)
            return None

    async def _link(self, eu: str, staff: str, contact: dict) -> dict:
        ext = contact.get("external_contact") or {}
        follow = [f["userid"] for f in contact.get("follow_user") or () if f.get("userid")]
        return await self.ctx.members.link_wecom(
            eu, self.ctx.now(), staff=staff, unionid=ext.get("unionid") or None,
            follow_users=follow or None, nickname=ext.get("name") or None)

    async def added(self, eu: str, staff: str, code: str, state: str = "") -> None:
        contact = await self._contact(eu)
        if contact is None and self.wecom is not None:
            # without the unionid a link could duplicate an OA member: greet now, link later
            if code:
                await welcome.send(self.ctx.members, self.wecom, member_id=None,
                                   welcome_code=code, staff=staff, now=self.ctx.now(),
                                   linked=False)
            self.spawn(self._link_later(eu, staff, state))
            return
        res = await self._link(eu, staff, contact or {})
        if code and self.wecom is None:
            log.warning("a WelcomeCode arrived but WECOM_SECRET is not set: no welcome sent")
        elif code:
            await welcome.send(self.ctx.members, self.wecom, member_id=res["member_id"],
                               welcome_code=code, staff=staff, now=self.ctx.now(),
                               linked=res["linked"], coupon=res.get("coupon"))
        await self._attribute(res["member_id"], state)  # after the welcome: its code lives 20 s

    async def _attribute(self, member_id: str, state: str) -> None:
        if state:
            res = await self.ctx.members.attribute_contact(member_id, state, self.ctx.now())
            if "refused" in res:
                log.info("contact way state of member %s refused: %s", member_id,
                         res["refused"])

    async def _link_later(self, eu: str, staff: str, state: str = "") -> None:
        for delay in self.link_retry_delays:
            await asyncio.sleep(delay)
            contact = await self._contact(eu)
            if contact is not None:
                res = await self._link(eu, staff, contact)
                await self._attribute(res["member_id"], state)
                return
        # linking without the unionid could duplicate an OA member: leave it to the next
        # event for this contact (every event links again)
        log.error("could not look up a new WeCom contact after %d tries: not linked yet",
                  len(self.link_retry_delays))


WECOM = web.AppKey("wecom_callback", WeComCallback)


def setup(app: web.Application) -> None:
    cb = WeComCallback(app[CTX])
    app[WECOM] = cb
    app.cleanup_ctx.append(cb.lifespan)
    app.router.add_get("/wecom", cb.verify)
    app.router.add_post("/wecom", cb.callback)
