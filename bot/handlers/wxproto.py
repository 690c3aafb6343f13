"""The Official Account callback protocol: signatures, safe-mode crypto, XML in and out.

The crypto is wechatpy's (``WeChatSigner``, ``PrpCrypto``); the XML is read with defusedxml's
ElementTree, because wechatpy's xmltodict-based parsing and message objects cost more per
message than everything else on the callback path (PERFORMANCE.md). Both sides live here:
the server (``bot/handlers/oa.py``) and ``memberbot chat``, which speaks as WeChat does.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from dataclasses import dataclass, field
from xml.etree.ElementTree import ParseError
from xml.etree.ElementTree import fromstring as _plain_fromstring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from wechatpy.crypto import PrpCrypto
from wechatpy.utils import WeChatSigner

from .. import keys

DECRYPT_FAILED = ("cannot decrypt the message: it was not encrypted with this account's "
                  "EncodingAESKey and AppID (or corp id)")


class BadRequest(Exception):
    """The body is not a WeChat message we accept (malformed, entities, undecryptable): 400."""


class BadSignature(Exception):
    """A signature does not match the token: 403."""


def signature(token: str, *parts: str) -> str:
    """WeChat's sha1 over the sorted token, timestamp, nonce (and, in safe mode, Encrypt)."""
    signer = WeChatSigner()
    signer.add_data(token, *parts)
    return signer.signature


def signature_ok(token: str, given: str, *parts: str) -> bool:
    if not token or not given:
        return False
    return hmac.compare_digest(signature(token, *parts).encode(), given.encode())


@dataclass(slots=True)
class Incoming:
    """One callback: a message (text, image, ...) or an event (subscribe, CLICK, ...)."""

    to_user: str
    from_user: str
    create_time: str
    msg_type: str
    content: str = ""
    msg_id: str = ""
    event: str = ""
    event_key: str = ""
    fields: dict[str, str] = field(default_factory=dict, repr=False)  # every element, as sent

    @property
    def dedup_key(self) -> str:
        if self.msg_type != "event":
            return keys.wechat_message(self.from_user, self.msg_id, self.create_time, None)
        # a retry repeats the EventKey too; two menu taps in one second do not
        event = f"{self.event}:{self.event_key}" if self.event_key else self.event
        return keys.wechat_message(self.from_user, None, self.create_time, event)


def _starts_with_root(body: bytes | str) -> bool:
    """The document begins with its ``<xml>`` element (after white space): it has no prolog,
    so no DTD, so no entity but XML's five and character references can appear in it."""
    head = body[:64].lstrip()
    return head[:5] == (b"<xml>" if isinstance(body, bytes) else "<xml>")


def parse_xml(body: bytes | str) -> dict[str, str]:
    """A flat ``<xml>`` document as a dict; DTDs, entities and bad XML raise BadRequest.

    What WeChat sends begins with ``<xml>``: that cannot declare anything, and the standard
    library's C parser reads it (defusedxml's parser runs its callbacks in Python, about
    half the callback's XML cost, PERFORMANCE.md). Anything else (a prolog, a DTD, another
    encoding) goes through defusedxml, which refuses DTDs and entities."""
    try:
        if _starts_with_root(body):
            root = _plain_fromstring(body)
        else:
            root = fromstring(body, forbid_dtd=True, forbid_entities=True,
                              forbid_external=True)
    except DefusedXmlException as e:
        raise BadRequest("the XML declares a DTD or entities, which are refused") from e
    except ParseError as e:  # "not well-formed (invalid token): line 1, column 5"
        raise BadRequest(f"the body is not well-formed XML ({e})") from e
    except (ValueError, LookupError) as e:  # undecodable bytes, an unknown encoding
        raise BadRequest("the body is not XML text in a supported encoding") from e
    if root.tag != "xml":
        raise BadRequest("the root element is not <xml>")
    return {child.tag: (child.text or "") for child in root}


def incoming(fields: dict[str, str]) -> Incoming:
    try:
        msg = Incoming(fields["ToUserName"], fields["FromUserName"], fields["CreateTime"],
                       fields["MsgType"].strip().lower())
    except KeyError as e:
        raise BadRequest(f"missing <{e.args[0]}>") from e
    if not msg.from_user:
        raise BadRequest("empty <FromUserName>")
    msg.content = fields.get("Content", "")
    msg.msg_id = fields.get("MsgId", "")
    msg.event = fields.get("Event", "")
    msg.event_key = fields.get("EventKey", "")
    msg.fields = fields
    if msg.msg_type == "event" and msg.event.strip().lower() in CARD_EVENTS:
        for name in ("CardId", "UserCardCode"):  # a card event names its card and code
            if not fields.get(name, "").strip():
                raise BadRequest(f"missing <{name}>")
    return msg


# the member card's events (handlers/card.py); each must name the card and the code
CARD_EVENTS = ("user_get_card", "submit_membercard_user_info", "user_del_card",
               "update_member_card")


class _Prp(PrpCrypto):
    """wechatpy's PrpCrypto, with its 16-character random prefix drawn from ``secrets``
    (wechatpy uses ``random``). One instance per account: each call makes its own cipher
    context."""

    def get_random_string(self) -> str:
        return secrets.token_hex(8)


class SafeMode:
    """Safe-mode (encrypt_type=aes) crypto for one account: token, EncodingAESKey, AppID."""

    def __init__(self, token: str, aes_key: str, appid: str) -> None:
        try:
            key = base64.b64decode(aes_key + "=", validate=True)
        except ValueError as e:
            raise ValueError("WECHAT_AES_KEY must be the 43-character EncodingAESKey") from e
        if len(key) != 32:
            raise ValueError("WECHAT_AES_KEY must be the 43-character EncodingAESKey")
        self.token, self.appid, self.key = token, appid, key
        self._prp = _Prp(key)

    def decrypt(self, encrypt: str, msg_signature: str, timestamp: str, nonce: str) -> str:
        if not signature_ok(self.token, msg_signature, timestamp, nonce, encrypt):
            raise BadSignature("msg_signature")
        try:
            return self._prp.decrypt(encrypt, self.appid)
        except Exception as e:  # wrong key or appid: padding, length, utf-8, appid errors
            raise BadRequest(DECRYPT_FAILED) from e

    def encrypt(self, xml: str, timestamp: str, nonce: str) -> str:
        """The ``<xml><Encrypt>…`` envelope WeChat expects around a reply (or a callback)."""
        enc = self._prp.encrypt(xml, self.appid).decode()
        sig = signature(self.token, timestamp, nonce, enc)
        return (f"<xml><Encrypt><![CDATA[{enc}]]></Encrypt>"
                f"<MsgSignature><![CDATA[{sig}]]></MsgSignature>"
                f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>")

    def open_envelope(self, body: bytes | str) -> str:
        """Client side: check and decrypt an encrypted reply envelope."""
        f = parse_xml(body)
        return self.decrypt(f.get("Encrypt", ""), f.get("MsgSignature", ""),
                            f.get("TimeStamp", ""), f.get("Nonce", ""))


def cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(to_user: str, from_user: str, content: str, create_time: int) -> str:
    return (f"<xml><ToUserName>{cdata(to_user)}</ToUserName>"
            f"<FromUserName>{cdata(from_user)}</FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{cdata(content)}</Content></xml>")


# -- the WeChat side (memberbot chat, tests) ------------------------------------------------
def nonce() -> str:
    return secrets.token_hex(5)


def callback_xml(to_user: str, from_user: str, msg_type: str, *, content: str = "",
                 event: str = "", event_key: str = "", msg_id: str = "",
                 create_time: int | None = None, extra: dict[str, str] | None = None) -> str:
    """A callback body as WeChat builds it (plain text of the message)."""
    parts = [f"<xml><ToUserName>{cdata(to_user)}</ToUserName>",
             f"<FromUserName>{cdata(from_user)}</FromUserName>",
             f"<CreateTime>{create_time or int(time.time())}</CreateTime>",
             f"<MsgType>{cdata(msg_type)}</MsgType>"]
    if msg_type == "event":
        parts.append(f"<Event>{cdata(event)}</Event>")
        if event_key:
            parts.append(f"<EventKey>{cdata(event_key)}</EventKey>")
        parts += [f"<{k}>{cdata(v)}</{k}>" for k, v in (extra or {}).items()]
    else:
        parts.append(f"<Content>{cdata(content)}</Content><MsgId>{msg_id}</MsgId>")
    parts.append("</xml>")
    return "".join(parts)


def signed_query(token: str, openid: str, safe: SafeMode | None, body: str,
                 timestamp: str | None = None, nonce_: str | None = None) -> tuple[dict, str]:
    """Query parameters and body of a callback POST, signed (and encrypted) as WeChat does."""
    ts = timestamp or str(int(time.time()))
    nn = nonce_ or nonce()
    query = {"signature": signature(token, ts, nn), "timestamp": ts, "nonce": nn,
             "openid": openid}
    if safe is None:
        return query, body
    envelope = safe.encrypt(body, ts, nn)
    f = parse_xml(envelope)
    query.update(encrypt_type="aes", msg_signature=f["MsgSignature"])
    # WeChat sends ToUserName and Encrypt only; the signature is over Encrypt
    to_user = parse_xml(body).get("ToUserName", "")
    return query, (f"<xml><ToUserName>{cdata(to_user)}</ToUserName>"
                   f"<Encrypt>{cdata(f['Encrypt'])}</Encrypt></xml>")
