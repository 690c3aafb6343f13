"""A test WeChat: builds, signs and encrypts callbacks exactly as WeChat's servers do, posts them
to ``/wechat`` (through aiohttp's test client or a real socket), and opens the replies.

It shares no code with memberbot's protocol module: signatures are computed here from the
documented rule, and the AES envelope comes from wechatpy's ``WeChatCrypto`` or, with
``crypto="werobot"``, from WeRoBot's ``MessageCrypt`` — so both libraries cross-check memberbot.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

_msg_ids = itertools.count(random.randrange(10**17, 10**18))
_times = itertools.count(int(time.time()))

GH = "gh_0123456789ab"


def sign(token: str, *parts: str) -> str:
    """WeChat's rule: sha1 of the sorted strings, concatenated."""
    return hashlib.sha1("".join(sorted([token, *parts])).encode()).hexdigest()


def cdata(s: str) -> str:
    return f"<![CDATA[{s}]]>"


def text_xml(openid: str, content: str, msg_id: int | None = None,
             create_time: int | None = None) -> str:
    return (f"<xml><ToUserName>{cdata(GH)}</ToUserName><FromUserName>{cdata(openid)}"
            f"</FromUserName><CreateTime>{create_time or next(_times)}</CreateTime>"
            f"<MsgType>{cdata('text')}</MsgType><Content>{cdata(content)}</Content>"
            f"<MsgId>{msg_id or next(_msg_ids)}</MsgId></xml>")


def event_xml(openid: str, event: str, key: str = "", create_time: int | None = None) -> str:
    k = f"<EventKey>{cdata(key)}</EventKey>" if key else ""
    return (f"<xml><ToUserName>{cdata(GH)}</ToUserName><FromUserName>{cdata(openid)}"
            f"</FromUserName><CreateTime>{create_time or next(_times)}</CreateTime>"
            f"<MsgType>{cdata('event')}</MsgType><Event>{cdata(event)}</Event>{k}</xml>")


@dataclass
class Reply:
    status: int
    body: str
    content: str | None = None  # the text content of a passive reply
    fields: dict[str, str] | None = None

    @property
    def success(self) -> bool:
        return self.status == 200 and self.body == "success"


class Crypto:
    """The safe-mode envelope, by one of two libraries."""

    def __init__(self, token: str, aes_key: str, appid: str, lib: str = "wechatpy") -> None:
        self.lib = lib
        if lib == "wechatpy":
            from wechatpy.crypto import WeChatCrypto

            self.impl: Any = WeChatCrypto(token, aes_key, appid)
        else:
            from werobot.crypto import MessageCrypt

            self.impl = MessageCrypt(token, aes_key, appid)

    def encrypt(self, xml: str, timestamp: str, nonce: str) -> str:
        if self.lib == "wechatpy":
            return self.impl.encrypt_message(xml, nonce, timestamp)
        return self.impl.encrypt_message(xml, timestamp, nonce)

    def decrypt(self, envelope: str) -> str:
        f = {c.tag: c.text or "" for c in ET.fromstring(envelope)}
        if self.lib == "wechatpy":
            return self.impl.decrypt_message(envelope, f["MsgSignature"], f["TimeStamp"],
                                             f["Nonce"])
        out = self.impl.decrypt_message(f["TimeStamp"], f["Nonce"], f["MsgSignature"],
                                        f["Encrypt"])
        return out.decode() if isinstance(out, bytes) else out


class WeChat:
    """Posts callbacks for members. ``http`` is an aiohttp TestClient (``base=""``) or a
    ClientSession (``base="http://127.0.0.1:PORT"``)."""

    def __init__(self, http: Any, token: str, *, aes_key: str = "", appid: str = "",
                 base: str = "", crypto: str = "wechatpy") -> None:
        self.http = http
        self.token = token
        self.url = base + "/wechat"
        self.crypto = Crypto(token, aes_key, appid, crypto) if aes_key else None

    def query(self, openid: str, timestamp: str | None = None,
              nonce: str | None = None) -> dict[str, str]:
        ts = timestamp or str(int(time.time()))
        nn = nonce or secrets.token_hex(4)
        return {"signature": sign(self.token, ts, nn), "timestamp": ts, "nonce": nn,
                "openid": openid}

    def envelope(self, xml: str, query: dict[str, str]) -> tuple[dict[str, str], str]:
        """What WeChat posts for ``xml``: as is, or the encrypted envelope in safe mode."""
        if self.crypto is None:
            return query, xml
        env = self.crypto.encrypt(xml, query["timestamp"], query["nonce"])
        f = {c.tag: c.text or "" for c in ET.fromstring(env)}
        body = (f"<xml><ToUserName>{cdata(GH)}</ToUserName>"
                f"<Encrypt>{cdata(f['Encrypt'])}</Encrypt></xml>")
        return {**query, "encrypt_type": "aes", "msg_signature": f["MsgSignature"]}, body

    async def post_raw(self, params: dict[str, str], body: str | bytes) -> Reply:
        async with self.http.post(self.url, params=params, data=body) as r:
            return Reply(r.status, await r.text())

    async def post(self, xml: str, openid: str = "") -> Reply:
        params, body = self.envelope(xml, self.query(openid))
        reply = await self.post_raw(params, body)
        if reply.status != 200 or reply.success:
            return reply
        inner = reply.body
        if self.crypto is not None:
            inner = self.crypto.decrypt(reply.body)
        f = {c.tag: c.text or "" for c in ET.fromstring(inner)}
        reply.fields = f
        reply.content = f.get("Content")
        return reply

    async def text(self, openid: str, content: str, msg_id: int | None = None) -> Reply:
        return await self.post(text_xml(openid, content, msg_id), openid)

    async def event(self, openid: str, event: str, key: str = "",
                    create_time: int | None = None) -> Reply:
        return await self.post(event_xml(openid, event, key, create_time), openid)

    async def follow(self, openid: str, scene: str = "") -> Reply:
        return await self.event(openid, "subscribe", f"qrscene_{scene}" if scene else "")

    async def click(self, openid: str, key: str) -> Reply:
        return await self.event(openid, "CLICK", key)

    async def verify(self, echostr: str = "echo123", *, good: bool = True) -> tuple[int, str]:
        q = self.query("")
        if not good:
            q["signature"] = "0" * 40
        async with self.http.get(self.url, params={**q, "echostr": echostr}) as r:
            return r.status, await r.text()
