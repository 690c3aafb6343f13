"""A load of check-ins (signed /wechat callbacks, plain mode) and orders (signed /api/orders)
against a served memberbot, as WeChat and a POS system send them; which were acknowledged."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp

TOKEN = "fault-token"
SECRET = "fault-api-secret"
DATA_KEY = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="  # b"k" * 32
ENV = {"WECHAT_TOKEN": TOKEN, "MEMBERBOT_API_SECRET": SECRET, "MEMBERBOT_DATA_KEY": DATA_KEY}
BUSY = "系统繁忙"
PAID = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()  # the same on resends


def sign_wechat(ts: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([TOKEN, ts, nonce])).encode()).hexdigest()


def xml(openid: str, msg_type: str, *, content: str = "", event: str = "",
        msg_id: int = 0) -> str:
    body = (f"<Event>{event}</Event>" if msg_type == "event"
            else f"<Content>{content}</Content><MsgId>{msg_id}</MsgId>")
    return (f"<xml><ToUserName>gh_fault</ToUserName><FromUserName>{openid}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{msg_type}</MsgType>"
            f"{body}</xml>")


@dataclass
class Load:
    base: str
    members: int = 20
    orders_each: int = 5
    acked_checkins: set[str] = field(default_factory=set)
    acked_orders: set[str] = field(default_factory=set)
    sent_orders: set[str] = field(default_factory=set)
    replies: list[tuple[int, str]] = field(default_factory=list)

    def openid(self, i: int) -> str:
        return f"o_fault_{i}"

    async def wechat(self, http: aiohttp.ClientSession, body: str) -> tuple[int, str]:
        ts, nonce = str(int(time.time())), secrets.token_hex(6)
        q = {"timestamp": ts, "nonce": nonce, "signature": sign_wechat(ts, nonce)}
        async with http.post(self.base + "/wechat", params=q, data=body.encode()) as r:
            return r.status, await r.text()

    async def api(self, http: aiohttp.ClientSession, path: str, payload: dict
                  ) -> tuple[int, str]:
        body = json.dumps(payload).encode()
        ts = str(int(time.time()))
        sig = hmac.new(SECRET.encode(), b"\n".join((ts.encode(), b"POST", path.encode(), body)),
                       hashlib.sha256).hexdigest()
        async with http.post(self.base + path, data=body, headers={
                "X-Memberbot-Timestamp": ts, "X-Memberbot-Signature": sig,
                "Content-Type": "application/json"}) as r:
            return r.status, await r.text()

    async def follow_all(self, http: aiohttp.ClientSession) -> None:
        for i in range(self.members):
            status, text = await self.wechat(http, xml(self.openid(i), "event",
                                                       event="subscribe"))
            assert status == 200 and "欢迎" in text, (status, text)

    async def checkin(self, http: aiohttp.ClientSession, i: int, msg_id: int) -> None:
        status, text = await self.wechat(http, xml(self.openid(i), "text", content="签到",
                                                   msg_id=msg_id))
        self.replies.append((status, text))
        if status == 200 and ("签到成功" in text or "已签到" in text or "已经签到" in text):
            self.acked_checkins.add(self.openid(i))

    async def order(self, http: aiohttp.ClientSession, i: int, n: int) -> None:
        oid = f"F-{i}-{n}"
        self.sent_orders.add(oid)
        status, text = await self.api(http, "/api/orders", {
            "order_id": oid, "openid": self.openid(i), "amount_fen": 1000 + n,
            "paid_at": PAID, "store_id": "S1"})
        self.replies.append((status, text))
        if status == 200:
            self.acked_orders.add(oid)

    async def burst(self, http: aiohttp.ClientSession, msg_base: int = 7_000_000) -> None:
        """Every member's check-in and orders at once; errors (a dead server) are kept."""
        jobs = [self.checkin(http, i, msg_base + i) for i in range(self.members)]
        jobs += [self.order(http, i, n) for i in range(self.members)
                 for n in range(self.orders_each)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(
                    r, aiohttp.ClientError | asyncio.TimeoutError | ConnectionError):
                raise r
