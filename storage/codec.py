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

    def __init__(self, data_key: bytes, previous: tuple[bytes, ...] = ()) -> None:
        for k in (data_key, *previous):
            if len(k) != 32:
                raise StoreError("MEMBERBOT_DATA_KEY must be 32 bytes, base64-encoded")
        # sealing and new look-ups use the first key; the previous ones (a key rotation in
        # progress) still open what they sealed and find what they hashed
        self._aeads = [AESGCM(k) for k in (data_key, *previous)]
        self._aead = self._aeads[0]
        self._hash_keys = [hmac.new(k, b"memberbot lookup v1", hashlib.sha256).digest()
                           for k in (data_key, *previous)]
        self._hash_key = self._hash_keys[0]

    @classmethod
    def from_b64(cls, key_b64: str) -> Codec:
        """``KEY`` or, while rotating, ``NEW_KEY,OLD_KEY[,…]``."""
        raws = []
        for part in key_b64.split(","):
            try:
                raws.append(base64.b64decode(part.strip(), validate=True))
            except ValueError as e:
                raise StoreError("MEMBERBOT_DATA_KEY is not valid base64") from e
        return cls(raws[0], tuple(raws[1:]))

    @property
    def rotating(self) -> bool:
        return len(self._aeads) > 1

    def previous_only(self) -> list[Codec]:
        """One codec per previous key (to remove what they hashed)."""
        return [_single(a, h) for a, h in zip(self._aeads[1:], self._hash_keys[1:],
                                               strict=True)]

    def seal(self, member_id: str, text: str) -> str:
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, text.encode(), member_id.encode())
        return "v1:" + base64.b64encode(nonce + ct).decode()

    def open(self, member_id: str, sealed: str) -> str:
        if not sealed.startswith("v1:"):
            raise StoreError("personal data is not sealed with a known scheme")
        raw = base64.b64decode(sealed[3:])
        for aead in self._aeads:
            try:
                return aead.decrypt(raw[:12], raw[12:], member_id.encode()).decode()
            except InvalidTag:
                continue
        raise StoreError("personal data cannot be decrypted: wrong MEMBERBOT_DATA_KEY?")

    def lookup_hash(self, value: str) -> str:
        """Keyed hash for equality look-ups (phone) without storing the value in clear."""
        return hmac.new(self._hash_key, value.encode(), hashlib.sha256).hexdigest()

    def lookup_hashes(self, value: str) -> list[str]:
        """The look-up hash under every key, the current one first."""
        return [hmac.new(k, value.encode(), hashlib.sha256).hexdigest()
                for k in self._hash_keys]

    def encode(self, m: Member) -> bytes:
        d = m.fields_dict()  # orjson writes the nested records and tuples as to_dict would
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


def _single(aead: AESGCM, hash_key: bytes) -> Codec:
    c = Codec.__new__(Codec)
    c._aeads, c._aead, c._hash_keys, c._hash_key = [aead], aead, [hash_key], hash_key
    return c


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads(raw: bytes | str | None) -> Any:
    return None if raw is None else orjson.loads(raw)
