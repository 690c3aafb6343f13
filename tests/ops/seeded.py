"""A small programme with a known history, for the report and the admin dashboard.

Hand-computed figures for the 7 days 2026-11-19 .. 2026-11-25 are in test_analytics.py.
"""

from __future__ import annotations

import types
from datetime import datetime
from zoneinfo import ZoneInfo

import storage.sqlite
from bot.members import Members
from bot.rules.models import Change

SH = ZoneInfo("Asia/Shanghai")


def at(month: int, day: int, hour: int = 12, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=SH)


class StoreClock:
    """The SQLite store stamps outbox rows with the wall clock; follow the story's clock."""

    def __init__(self) -> None:
        self.now = at(1, 1)

    def time(self) -> float:
        return self.now.timestamp()


async def seed_history(members: Members, monkeypatch) -> dict[str, str]:
    clock = StoreClock()
    monkeypatch.setattr(storage.sqlite, "time", types.SimpleNamespace(time=clock.time))

    async def reg(openid: str, when: datetime) -> dict:
        clock.now = when
        return await members.register(openid, when)

    def on(when: datetime) -> datetime:
        clock.now = when
        return when

    a = await reg("o-a", at(10, 1))
    d = await reg("o-d", at(6, 1))
    f = await reg("o-f", at(1, 1))
    await members.unfollow(f["member_id"], on(at(5, 1)))
    await members.record_order(d["member_id"], "D1", 300000, at(7, 1), on(at(7, 1)))
    b = await reg("o-b", at(11, 20))
    await members.record_order(a["member_id"], "A1", 20000, at(11, 20), on(at(11, 20, 15)))
    await members.record_order(b["member_id"], "B1", 50000, at(11, 21), on(at(11, 21)),
                               coupon_code=b["coupon"]["code"])
    await reg("o-f", at(11, 21, 13))  # follows again: a follower, not a new member
    c = await reg("o-c", at(11, 22))
    await members.record_order(a["member_id"], "A2", 10000, at(11, 22), on(at(11, 22, 14)))
    await members.refund("B1", "BR1", 10000, on(at(11, 23)))
    await members.set_opt_out(c["member_id"], True, on(at(11, 23, 13)))
    g = await reg("o-g", at(11, 23, 14))
    await members.record_order(g["member_id"], "G1", 1_600_000, at(11, 24), on(at(11, 24)))
    await members.check_in(a["member_id"], on(at(11, 24, 9)))
    await members.unfollow(d["member_id"], on(at(11, 24, 10)))
    for who in (a, b, c):
        await members.check_in(who["member_id"], on(at(11, 25, 9)))
    await members.exchange(g["member_id"], 1, on(at(11, 25, 10)), key="g-x1")
    for kind, status in (("points_expiry", "sent"), ("dormant", "failed")):
        def step(m, kind=kind):
            return Change(m, None, [], [{"kind": kind, "period": "2026-11-25"}],
                          None, [])
        await members.store.update(a["member_id"], step)
        await members.store.outbox_set(f"{a['member_id']}|{kind}|2026-11-25", status)
    await members.store.outbox_set(f"{g['member_id']}|tier_upgrade|gold:2026-11-24",
                                   "unreachable")
    await members.store.outbox_set(f"{d['member_id']}|tier_upgrade|silver:2026-07-01", "sent")
    return {k: v["member_id"] for k, v in zip("abcdfg", (a, b, c, d, f, g), strict=True)}
