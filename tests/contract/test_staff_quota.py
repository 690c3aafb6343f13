"""The sidebar's per-staff daily cap on every backend: concurrent adjustments from one staff
member across members never exceed it, a double tap counts once, a refusal gives back."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from bot.members import Members
from bot.rules import load_rules
from bot.rules.models import Refusal
from bot.settings import Settings
from bot.staff import StaffDesk

RULES = load_rules()
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=RULES.tz)


async def test_concurrent_adjustments_stay_within_the_daily_cap(store):
    members = Members(store, RULES)
    desk = StaffDesk(members, Settings(sidebar_admins=("boss",)))
    staff = desk.staff("zhangsan")
    eus = [f"wm-quota-{i}" for i in range(4)]
    for eu in eus:
        await members.link_wecom(eu, NOW, staff="zhangsan")

    async def adjust(i: int, rid: str) -> int:
        try:
            await desk.adjust_points(staff, 200, "活动补偿", rid, NOW,
                                     external_userid=eus[i % len(eus)])
            return 200
        except Refusal as e:
            assert e.code == "adjust_daily_cap"
            return 0

    # eight distinct requests of 200 and two double taps of the first ones: cap 1,000
    rids = [f"quota-req-{i:03d}" for i in range(8)] + ["quota-req-000", "quota-req-001"]
    done = await asyncio.gather(*[adjust(i, rid) for i, rid in enumerate(rids)])
    adjusted = 0
    for eu in eus:
        m = await members.get(await members.resolve(external_userid=eu))
        adjusted += sum(r.data["delta"] for r in await store.ledger(member_id=m.id,
                                                                    kinds=["adjust"]))
    assert adjusted == 1000 and sum(done[:8]) == 1000
    assert await desk._quota_used("zhangsan", "2026-11-25") == 1000
    # another staff member's day is their own; a refused adjustment gives its points back
    other = desk.staff("lisi")
    with pytest.raises(Refusal) as e:
        await desk.adjust_points(other, 200, "补偿", "quota-lisi-001", NOW,
                                 external_userid=eus[1])
    assert e.value.code == "not_your_customer"
    await members.link_wecom("wm-quota-new", NOW, staff="lisi")  # no points yet
    with pytest.raises(Refusal) as e:
        await desk.adjust_points(other, -200, "扣回", "quota-lisi-002", NOW,
                                 external_userid="wm-quota-new")
    assert e.value.code == "insufficient_points"
    assert await desk._quota_used("lisi", "2026-11-25") == 0
    await desk.adjust_points(other, 200, "补偿", "quota-lisi-003", NOW,
                             external_userid="wm-quota-new")
    assert await desk._quota_used("lisi", "2026-11-25") == 200
