"""The card outbox on every backend: a card holder's change and its card update are one
commit; card rows have their own statuses (the push sender never sees them); two senders
(two processes) on one store send each state once, in order, never backwards."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

from bot import card_sync
from bot.card_sync import CardSync
from bot.members import Members
from bot.rules import load_rules

RULES = load_rules()
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


class StubCardAPI:
    """Records the calls; answers like WeChat (an in-process stand-in for the HTTP fake)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    async def activate(self, body: dict) -> dict:
        self.calls.append(("activate", body))
        await asyncio.sleep(0)
        return {"errcode": 0}

    async def update_user(self, body: dict) -> dict:
        self.calls.append(("update", body))
        await asyncio.sleep(0.001)
        return {"errcode": 0}


async def holder(members: Members, openid: str = "o1") -> str:
    mid = (await members.register(openid, NOW))["member_id"]
    await members.bind_card(mid, "pCARD", "CODE-" + openid, NOW, key=f"get-{openid}")
    info = {"user_info": {"common_field_list": [
        {"name": "USER_FORM_INFO_FLAG_MOBILE", "value": "13800138000"},
        {"name": "USER_FORM_INFO_FLAG_BIRTHDAY", "value": "19900520"}]}}
    await members.submit_card_form(mid, "CODE-" + openid, info, NOW, key=f"form-{openid}")
    return mid


async def test_a_holders_change_and_its_card_update_are_one_commit(store):
    members = Members(store, RULES)
    plain = (await members.register("o-plain", NOW))["member_id"]
    await members.adjust_points(plain, 10, "x", "alice", NOW, key="p1")
    assert await store.outbox(status=card_sync.PENDING) == []  # no card: no row
    mid = await holder(members)
    (act,) = await store.outbox(status=card_sync.PENDING)
    assert act.data["activate"] and act.data["bonus"] == 50  # the form's profile bonus
    res = await members.adjust_points(mid, 5, "x", "alice", NOW, key="a1")
    again = await members.adjust_points(mid, 5, "x", "alice", NOW, key="a1")  # a retry
    assert res == again
    rows = await store.outbox(status=card_sync.PENDING)
    assert [(r.data["bonus"], r.data["add_bonus"]) for r in rows] == [(50, 0), (55, 5)]
    assert await store.outbox(status="pending") == []  # pushes never see card rows


async def test_two_senders_send_each_state_once_in_order(store):
    members = Members(store, RULES)
    mid = await holder(members)
    api = StubCardAPI()
    senders = [CardSync(store, members, api, clock=lambda: NOW) for _ in range(2)]

    async def changes() -> None:
        for i in range(20):
            await members.adjust_points(mid, 1, "x", "alice", NOW, key=f"c{i}")
            await asyncio.sleep(0)

    async def drains() -> None:
        for _ in range(30):
            await asyncio.gather(*(s.drain() for s in senders))

    await asyncio.gather(changes(), drains())
    while (await card_sync.backlog(store))[card_sync.PENDING]:
        await asyncio.gather(*(s.drain() for s in senders))
    kinds = [k for k, _ in api.calls]
    assert kinds[0] == "activate" and kinds.count("activate") == 1
    bonuses = [b["bonus"] for k, b in api.calls if k == "update"]
    # every delta after the activation is told once (a change coalesced into the activation
    # is in its init_bonus; on a slow machine all of them may be)
    init = api.calls[0][1]["init_bonus"]
    assert 50 <= init <= 70
    assert bonuses == sorted(set(bonuses))  # never twice, never back
    assert (bonuses[-1] if bonuses else init) == 70
    assert sum(b["add_bonus"] for k, b in api.calls if k == "update") == 70 - init
