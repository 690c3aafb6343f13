"""A store-system client that signs requests exactly as PRODUCT.md section 6 says.

Written from the spec, not from the server's code, so a server that signs differently fails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

SECRET = "test-api-secret"


def sign(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    msg = f"{timestamp}\n{method}\n{path}\n".encode() + body
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


class Clock:
    """The app's clock, movable by tests."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


class Api:
    """Signed calls; returns ``(status, json)``."""

    def __init__(self, client: Any, clock: Clock, secret: str = SECRET) -> None:
        self.client = client
        self.clock = clock
        self.secret = secret
        self.last_text = ""  # the raw body of the last answer

    def headers(self, method: str, path: str, body: bytes, *, skew: int = 0,
                secret: str | None = None) -> dict[str, str]:
        ts = str(int(self.clock.now.timestamp()) + skew)
        return {"X-Memberbot-Timestamp": ts,
                "X-Memberbot-Signature": sign(secret or self.secret, ts, method, path, body),
                "Content-Type": "application/json"}

    async def call(self, method: str, path: str, payload: Any = None, *, raw: bytes | None = None,
                   skew: int = 0, secret: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        body = raw if raw is not None else (
            b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode())
        h = self.headers(method, path, body, skew=skew, secret=secret)
        if headers is not None:
            h = headers
        resp = await self.client.request(method, path, data=body, headers=h)
        self.last_text = await resp.text()
        return resp.status, json.loads(self.last_text)

    async def post(self, path: str, payload: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.call("POST", path, payload, **kw)

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **kw)

    async def order(self, **body: Any) -> tuple[int, Any]:
        return await self.post("/api/orders", body)


def order_body(order_id: str, member_code: str, amount_fen: int, paid_at: datetime,
               **more: Any) -> dict[str, Any]:
    return {"order_id": order_id, "member_code": member_code, "amount_fen": amount_fen,
            "paid_at": paid_at.isoformat(), "store_id": "SH-001", **more}
