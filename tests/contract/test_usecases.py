"""Exactly-once through the use cases, on every backend (the ``store`` fixture runs each test
on SQLite and on a real Redis)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from bot.members import Members
from bot.rules import Refusal, load_rules
from bot.rules.points import balance

RULES = load_rules()
TZ = RULES.tz
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=TZ)


async def _member(members: Members, openid: str = "o-alice") -> str:
    res = await members.register(openid, NOW)
    return res["member_id"]


async def _points_in_ledger(store, member_id: str) -> int:
    rows = await store.ledger(member_id=member_id)
    return sum(r.points for r in rows)


async def test_register_twice_is_one_member_with_one_welcome_coupon(store):
    members = Members(store, RULES)
    a = await members.register("o-1", NOW)
    b = await members.register("o-1", NOW + timedelta(minutes=1))
    assert a["member_id"] == b["member_id"]
    assert a["new"] and not b["new"]
    m = await store.get(a["member_id"])
    assert [c.template for c in m.coupons] == ["welcome"]
    assert await store.count_members() == 1
    assert await store.lookup("member_code", m.member_code) == m.id
    assert await store.lookup("invite_code", m.invite_code) == m.id


async def test_concurrent_registrations_of_one_openid_make_one_member(store):
    members = Members(store, RULES)
    res = await asyncio.gather(*(members.register("o-race", NOW) for _ in range(20)))
    assert len({r["member_id"] for r in res}) == 1
    assert await store.count_members() == 1
    m = await store.get(res[0]["member_id"])
    assert len(m.coupons) == 1


async def test_same_checkin_twice_credits_once(store):
    members = Members(store, RULES)
    mid = await _member(members)
    first = await members.check_in(mid, NOW)
    again = await members.check_in(mid, NOW + timedelta(hours=1))
    assert first == again  # the stored result, not a second run
    m = await store.get(mid)
    assert balance(m, NOW.date()) == 5
    assert await _points_in_ledger(store, mid) == 5


async def test_30_concurrent_checkins_of_one_member_credit_once(store):
    members = Members(store, RULES)
    mid = await _member(members)
    res = await asyncio.gather(*(members.check_in(mid, NOW) for _ in range(30)))
    assert all(r == res[0] for r in res)
    m = await store.get(mid)
    assert m.checkin_total == 1
    assert balance(m, NOW.date()) == 5
    assert await _points_in_ledger(store, mid) == 5
    credits = await store.ledger(member_id=mid, kinds=["credit"])
    assert len(credits) == 1


async def test_30_concurrent_redeems_of_one_coupon_one_success(store):
    members = Members(store, RULES)
    mid = await _member(members)
    m = await store.get(mid)
    code = m.coupons[0].code

    async def try_redeem(i: int):
        try:
            return await members.redeem_coupon(code, f"order-{i}", 10_000, NOW)
        except Refusal as e:
            return e.code

    res = await asyncio.gather(*(try_redeem(i) for i in range(30)))
    ok = [r for r in res if isinstance(r, dict)]
    assert len(ok) == 1
    assert sorted(set(r for r in res if not isinstance(r, dict))) == ["coupon_used"]
    # the same (code, order) again is the same success, not a refusal
    again = await members.redeem_coupon(code, ok[0]["order_id"], 10_000, NOW)
    assert again == ok[0]
    redeems = await store.ledger(kinds=["coupon_redeem"])
    assert len(redeems) == 1


async def test_stock_of_10_under_50_concurrent_issues(store):
    members = Members(store, RULES)
    ids = [await _member(members, f"o-{i}") for i in range(50)]
    await store.stock_set("birthday", 10)

    async def issue(mid: str):
        try:
            return await members.issue_coupon(mid, "birthday", f"coupon:{mid}:birthday:2026",
                                              NOW)
        except Refusal as e:
            return e.code

    res = await asyncio.gather(*(issue(mid) for mid in ids))
    ok = [r for r in res if isinstance(r, dict)]
    assert len(ok) == 10
    assert {r for r in res if not isinstance(r, dict)} == {"coupon_out_of_stock"}
    assert await store.stock("birthday") == 0
    held = 0
    for mid in ids:
        m = await store.get(mid)
        held += sum(1 for c in m.coupons if c.template == "birthday")
    assert held == 10


async def test_expired_coupon_returns_its_stock_once(store):
    members = Members(store, RULES)
    mid = await _member(members)
    await store.stock_set("points_500", 5)
    await members.issue_coupon(mid, "points_500", "coupon:x:points_500:1", NOW)
    assert await store.stock("points_500") == 4
    later = NOW + timedelta(days=31)
    await members.refresh(mid, later)
    await members.refresh(mid, later + timedelta(days=1))
    assert await store.stock("points_500") == 5
    m = await store.get(mid)
    assert [c.status for c in m.coupons if c.template == "points_500"] == ["expired"]


async def test_failed_step_leaves_nothing_half_written(store):
    members = Members(store, RULES)
    mid = await _member(members)
    before = await store.get(mid)
    rows_before = await store.ledger()

    def crashing(m):
        m.checkin_total += 100
        raise RuntimeError("crash between load and commit")

    with pytest.raises(RuntimeError):
        await members.run(mid, NOW, lambda m: crashing(m) or ({}, []), key="k-crash")
    after = await store.get(mid)
    assert after.to_dict() == before.to_dict()
    assert await store.ledger() == rows_before
    assert await store.seen(mid, "k-crash") == (False, None)
    # and the same key can then succeed once
    await members.run(mid, NOW, lambda m: ({"ok": 1}, []), key="k-crash")
    assert await store.seen(mid, "k-crash") == (True, {"ok": 1})


async def test_order_twice_and_refund_twice_apply_once(store):
    members = Members(store, RULES)
    mid = await _member(members)
    paid = NOW - timedelta(days=1)
    r1 = await members.record_order(mid, "A1", 123_456, paid, NOW, body_hash="h")
    r2 = await members.record_order(mid, "A1", 123_456, paid, NOW, body_hash="h")
    assert r1 == r2 and r1["points_earned"] == 1234
    with pytest.raises(Refusal) as e:
        await members.record_order(mid, "A1", 999, paid, NOW, body_hash="other")
    assert e.value.code == "order_conflict"
    f1 = await members.refund("A1", "R1", 23_456, NOW)
    f2 = await members.refund("A1", "R1", 23_456, NOW)
    assert f1 == f2 and f1["points_reversed"] == 234
    m = await store.get(mid)
    assert balance(m, NOW.date()) == 1000
    assert await _points_in_ledger(store, mid) == 1000


async def test_invite_rewards_both_once_even_when_repeated(store):
    members = Members(store, RULES)
    inviter = await _member(members, "o-inviter")
    invitee = await _member(members, "o-invitee")
    code = (await store.get(inviter)).invite_code
    res = await asyncio.gather(*(members.bind_invite(invitee, code, NOW) for _ in range(5)))
    assert all(r["bound"] for r in res)
    assert await _points_in_ledger(store, inviter) == 50
    assert await _points_in_ledger(store, invitee) == 50
    assert (await store.get(inviter)).invited_total == 1


async def test_index_queries_return_exactly_the_due_members(store):
    members = Members(store, RULES)
    ids = [await _member(members, f"o-{i}") for i in range(6)]
    # lots earned on different days expire on different days
    for i, mid in enumerate(ids[:4]):
        day = NOW - timedelta(days=i)
        await members.record_order(mid, f"O{i}", 10_000, day, NOW)
    await members.set_profile(ids[4], NOW, phone="13800138000")
    await members.set_birthday(ids[4], "1990-05-20", NOW)
    due = await store.range("expiry", 20271124, 20271125)
    # ids[4]'s profile bonus (earned today) expires on the same day as ids[0]'s order points
    assert sorted(mid for mid, _ in due) == sorted([ids[0], ids[1], ids[4]])
    assert await store.range("birthday", 520, 520) == [(ids[4], 520)]
    assert sorted(await store.tagged("tier", "normal")) == sorted(ids)
    # spending the whole lot removes the member from the expiry index
    await members.adjust_points(ids[0], -100, "test", "staff1", NOW, key="adj-1")
    due = await store.range("expiry", 20271124, 20271125)
    assert sorted(mid for mid, _ in due) == sorted([ids[1], ids[4]])
    older = await store.range("expiry", 20271122, 20271123)
    assert sorted(older) == sorted([(ids[2], 20271123), (ids[3], 20271122)])


async def test_rfm_segment_is_current_right_after_the_first_order(store):
    members = Members(store, RULES)
    mid = await _member(members)
    assert (await store.get(mid)).rfm is None
    await members.record_order(mid, "F1", 200_000, NOW, NOW)
    m = await store.get(mid)
    assert m.rfm == "重要发展客户"  # recent, one order, ¥2,000
    assert await store.tagged("rfm", "重要发展客户") == [mid]


async def test_refollow_does_not_offer_a_used_welcome_coupon_again(store):
    members = Members(store, RULES)
    first = await members.register("o-back", NOW)
    assert first["coupon"] is not None
    await members.redeem_coupon(first["coupon"]["code"], "W1", 10_000, NOW)
    await members.unfollow(first["member_id"], NOW)
    again = await members.register("o-back", NOW + timedelta(days=1))
    assert again["reactivated"] and again["coupon"] is None


async def test_a_follower_never_takes_the_unionid_of_another_member(store):
    members = Members(store, RULES)
    oa = await members.register("o-early", NOW)  # user/info unreachable: no unionid yet
    other = "wecom-member"
    assert await store.claim("unionid", "U1", other) == other  # linked from WeCom meanwhile
    again = await members.register("o-early", NOW, unionid="U1")
    assert again["member_id"] == oa["member_id"]
    m = await store.get(oa["member_id"])
    assert m.unionid is None and await store.lookup("unionid", "U1") == other


async def test_statement_is_the_last_points_lines_newest_first_with_the_balance(store):
    members = Members(store, RULES)
    mid = await _member(members)
    for d in range(12):  # twelve check-ins, one a day: +5 each (+bonus on the 7th)
        await members.check_in(mid, NOW + timedelta(days=d))
    await members.record_order(mid, "o-st", 12_000, NOW + timedelta(days=12),
                               NOW + timedelta(days=12))
    st = await members.statement(mid, NOW + timedelta(days=12))
    assert len(st["entries"]) == 10
    assert st["entries"][0] == {"day": "2026-12-07", "reason": "消费得积分", "points": 120}
    assert [e["reason"] for e in st["entries"][1:]] == ["签到"] * 9
    assert [e["day"] for e in st["entries"][1:3]] == ["2026-12-06", "2026-12-05"]
    assert st["balance"] == await _points_in_ledger(store, mid) and st["debt"] == 0
    assert (await members.statement(mid, NOW, limit=3))["entries"][0]["points"] == 120
