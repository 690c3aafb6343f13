"""memberbot rotate-data-key: with MEMBERBOT_DATA_KEY=NEW,OLD every member is re-sealed under
NEW and the phone look-ups re-keyed; afterwards NEW alone reads everything and OLD nothing."""

from __future__ import annotations

import asyncio
import base64

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.members import Members
from storage import StoreError, open_store
from tests.conftest import REDIS_URL

OLD = base64.b64encode(b"o" * 32).decode()
NEW = base64.b64encode(b"n" * 32).decode()


def url_for(kind: str, tmp_path) -> str:
    return f"sqlite:///{tmp_path}/r.db" if kind == "sqlite" else REDIS_URL


async def seed(url: str, rules, now, n: int) -> dict[str, str]:
    s = open_store(url, OLD)
    await s.open()
    if s.kind == "redis":
        await s.client.flushdb()
    members = Members(s, rules)
    phones = {}
    for i in range(n):
        mid = (await members.register(f"o-r{i}", now))["member_id"]
        phone = f"1390000{i:04d}"
        await s.claim("phone", phone, mid)
        await members.run(mid, now, lambda m, p=phone: (setattr(m, "phone", p) or {}, []))
        await members.set_birthday(mid, "1990-05-20", now)
        phones[mid] = phone
    await s.close()
    return phones


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_rotation_reseals_every_member_and_rekeys_phone_lookups(tmp_path, rules, now, kind):
    url = url_for(kind, tmp_path)
    phones = asyncio.run(seed(url, rules, now, 12))
    env = {"MEMBERBOT_STORE": url, "MEMBERBOT_DATA_DIR": str(tmp_path), "WECHAT_TOKEN": "t",
           "MEMBERBOT_API_SECRET": "s", "MEMBERBOT_RULES": "", "MEMBERBOT_TZ": ""}
    one = CliRunner().invoke(main, ["rotate-data-key"], env={**env, "MEMBERBOT_DATA_KEY": OLD})
    assert one.exit_code == 1 and "NEW_KEY,OLD_KEY" in one.output
    res = CliRunner().invoke(main, ["rotate-data-key"],
                             env={**env, "MEMBERBOT_DATA_KEY": f"{NEW},{OLD}"})
    assert res.exit_code == 0, res.output
    assert "re-sealed 12 members" in res.output

    async def check() -> None:
        new, old = open_store(url, NEW), open_store(url, OLD)
        await new.open()
        await old.open()
        try:
            for mid, phone in phones.items():
                m = await new.get(mid)
                assert (m.phone, m.birthday) == (phone, "1990-05-20")
                assert await new.lookup("phone", phone) == mid
                assert await old.lookup("phone", phone) is None  # the old hash is gone
                with pytest.raises(StoreError, match="cannot be decrypted"):
                    await old.get(mid)
        finally:
            await new.close()
            await old.close()

    asyncio.run(check())
    again = CliRunner().invoke(main, ["rotate-data-key"],
                               env={**env, "MEMBERBOT_DATA_KEY": f"{NEW},{OLD}"})
    assert again.exit_code == 0 and "re-sealed 12 members" in again.output  # rerun is safe


async def test_during_a_rotation_both_keys_read_and_find(tmp_path, rules, now):
    url = url_for("sqlite", tmp_path)
    phones = await seed(url, rules, now, 2)
    both = open_store(url, f"{NEW},{OLD}")
    await both.open()
    try:
        for mid, phone in phones.items():
            assert (await both.get(mid)).phone == phone  # sealed under OLD, read with both
            assert await both.lookup("phone", phone) == mid  # hashed under OLD
    finally:
        await both.close()
