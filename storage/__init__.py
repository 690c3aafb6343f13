"""Storage: one contract (:class:`storage.base.Store`); SQLite, Redis and PostgreSQL backends."""

from __future__ import annotations

from urllib.parse import urlparse

from .base import (
    ConflictError,
    LedgerRow,
    OutboxRow,
    OutOfStock,
    Store,
    StoreError,
    StoreMetrics,
    StoreUnavailable,
    UniqueTaken,
)
from .codec import Codec


def sqlite_path(url: str) -> str:
    """``sqlite:///relative/path`` or ``sqlite:////absolute/path`` -> a file path."""
    rest = url[len("sqlite://"):]
    if not rest.startswith("/") or rest == "/":
        raise StoreError(f"bad SQLite store URL {url!r}: use sqlite:///relative/path.db or "
                         "sqlite:////absolute/path.db")
    path = rest[1:]
    if path in ("", ":memory:"):
        raise StoreError(f"bad SQLite store URL {url!r}: give a file path (an in-memory "
                         "database would lose every acknowledged write on restart)")
    return path


def open_store(url: str, data_key: bytes | str) -> Store:
    """A store for ``url`` (not yet opened: ``await store.open()`` or ``async with``)."""
    codec = Codec.from_b64(data_key) if isinstance(data_key, str) else Codec(data_key)
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(url), codec)
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisStore

        return RedisStore(url, codec)
    if scheme == "redis+cluster":
        from .redis_cluster import RedisClusterStore

        return RedisClusterStore(url, codec)
    if scheme == "redis+sentinel":
        from .redis_cluster import RedisSentinelStore

        return RedisSentinelStore(url, codec)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        return PostgresStore(url, codec)
    raise StoreError(f"unknown store URL scheme {scheme or url!r} in MEMBERBOT_STORE: use "
                     "sqlite:///path/to/file.db, redis://host:port/db, "
                     "redis+cluster://host:port,host:port, redis+sentinel://host:port/service/db "
                     "or postgresql://user@host:port/db")


__all__ = ["Codec", "ConflictError", "LedgerRow", "OutOfStock", "OutboxRow",
           "Store", "StoreError", "StoreMetrics", "StoreUnavailable", "UniqueTaken",
           "open_store"]
