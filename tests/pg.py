"""PostgreSQL for tests: a database created for the session and dropped after.

``PG_ADMIN_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) is where databases are
created; their names start with ``PG_TEST_PREFIX`` (default ``memberbot_test_``). A missing
server fails the tests, it never skips them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import asyncpg
import pytest

PG_ADMIN_URL = os.environ.get("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
PREFIX = os.environ.get("PG_TEST_PREFIX", "memberbot_test_")


def _admin(sql: str) -> None:
    """Run one statement on the admin database (in a thread: a test's loop may be running)."""

    async def run() -> None:
        c = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
        try:
            await c.execute(sql)
        finally:
            await c.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def db_url(name: str) -> str:
    return urlparse(PG_ADMIN_URL)._replace(path=f"/{name}").geturl()


@contextlib.contextmanager
def pg_database(tag: str = "") -> Iterator[str]:
    """``with pg_database() as url``: a fresh, empty database, dropped on exit."""
    name = f"{PREFIX}{tag}{os.getpid()}_{secrets.token_hex(3)}"
    try:
        _admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as e:
        pytest.fail(f"the PostgreSQL tests need a server at {PG_ADMIN_URL} (set PG_ADMIN_URL): "
                    f"{e}", pytrace=False)
    try:
        yield db_url(name)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
