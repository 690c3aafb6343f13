"""Member <-> bytes, with personal data (phone, birthday) sealed by AES-GCM at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bot.rules.models import Member

from .base import StoreError

SEALED = ("phone", "birthday")


class Codec:
    """Encodes aggregates for one data key. The member id is the AES-GCM associated data, so
    a sealed field copied onto another member does not decrypt."""

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != 32:
            raise StoreError("MEMBERBOT_DATA_KEY must be 32 bytes, base64-encoded")
        self._aead = AESGCM(data_key)
        self._hash_key = hmac.new(data_key, b"memberbot lookup v1", hashlib.sha256).digest()

    @classmethod
    def from_b64(cls, key_b64: str) -> Codec:
        try:
            raw = base64.b64decode(key_b64, validate=True)
        except ValueError as e:
            raise StoreError("MEMBERBOT_DATA_KEY is not valid base64") from e
        return cls(raw)

    def seal(self, member_id: str, text: str) -> str:
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, text.encode(), member_id.encode())
        return "v1:" + base64.b64encode(nonce + ct).decode()

    def open(self, member_id: str, sealed: str) -> str:
        if not sealed.startswith("v1:"):
            raise StoreError("personal data is not sealed with a known scheme")
        raw = base64.b64decode(sealed[3:])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], member_id.encode()).decode()
        except InvalidTag as e:
            raise StoreError("personal data cannot be decrypted: wrong MEMBERBOT_DATA_KEY?") from e

    def lookup_hash(self, value: str) -> str:
        """Keyed hash for equality look-ups (phone) without storing the value in clear."""
        return hmac.new(self._hash_key, value.encode(), hashlib.sha256).hexdigest()

    def encode(self, m: Member) -> bytes:
        d = m.to_dict()
        for f in SEALED:
            if d[f] is not None:
                d[f] = self.seal(m.id, d[f])
        return orjson.dumps(d)

    def decode(self, raw: bytes | str, version: int) -> Member:
        d = orjson.loads(raw)
        for f in SEALED:
            if d.get(f) is not None:
                d[f] = self.open(d["id"], d[f])
        d["version"] = version
        return Member.from_dict(d)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads(raw: bytes | str | None) -> Any:
    return None if raw is None else orjson.loads(raw)
