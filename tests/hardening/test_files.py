"""Data files are readable by their owner only (issue 15, item 8)."""

from __future__ import annotations

import os
import stat

from bot.settings import Settings
from storage import open_store


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_sqlite_database_wal_and_shm_are_created_owner_only(tmp_path, now):
    old = os.umask(0o022)
    try:
        path = tmp_path / "data" / "m.db"
        store = open_store(f"sqlite:///{path}", b"k" * 32)
        await store.open()
        try:
            await store.kv_set("k", "v")
            files = [path, path.with_name("m.db-wal"), path.with_name("m.db-shm")]
            assert all(f.exists() for f in files)
            assert [mode(f) for f in files] == [0o600] * 3
            assert mode(path.parent) == 0o700
        finally:
            await store.close()
    finally:
        os.umask(old)


def test_the_folder_of_generated_secrets_is_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        s = Settings.load({}, cwd=tmp_path)
    finally:
        os.umask(old)
    assert s.generated and mode(tmp_path / "data") == 0o700
    assert mode(tmp_path / "data" / "secrets.env") == 0o600
