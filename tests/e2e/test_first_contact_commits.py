"""A follower memberbot has never seen costs one commit to register, welcome coupon included
(issue 16: the openid's claim, where concurrent first messages meet, the member code, invite
code and coupon code claims, the coupon's unit of stock and the aggregate share it), and
stays exactly-once: the coupon is the one a later issue
under its key finds, and a concurrent registration of the same openid makes one member."""

from __future__ import annotations

import asyncio
import os

from bot import keys
from bot.members import Members
from storage import open_store


async def _members(tmp_path, rules):
    store = open_store(f"sqlite:///{tmp_path}/m.db", os.urandom(32))
    await store.open()
    return store, Members(store, rules)


async def test_a_new_follower_is_one_commit_with_its_welcome_coupon(tmp_path, rules, now):
    store, members = await _members(tmp_path, rules)
    try:
        await store.stock_init("welcome", rules.coupons["welcome"].stock)
        before = store.commits
        res = await members.register("o_new", now)
        assert store.commits - before == 1
        mid = res["member_id"]
        m = await store.get(mid)
        assert res["new"] and res["coupon"]["code"] == m.coupons[0].code
        for kind, value in (("openid", "o_new"), ("member_code", m.member_code),
                            ("invite_code", m.invite_code), ("coupon_code", m.coupons[0].code)):
            assert await store.lookup(kind, value) == mid, kind
        assert await store.stock("welcome") == rules.coupons["welcome"].stock - 1
        # the coupon's key holds it: issuing under that key again gives the same coupon
        again = await members.issue_coupon(mid, "welcome", keys.coupon(mid, "welcome", "join"),
                                           now)
        assert again["code"] == m.coupons[0].code
        assert len((await store.get(mid)).coupons) == 1
        assert (await members.register("o_new", now))["new"] is False
        assert len((await store.get(mid)).coupons) == 1
    finally:
        await store.close()


async def test_concurrent_first_messages_of_one_follower_make_one_member(tmp_path, rules, now):
    store, members = await _members(tmp_path, rules)
    try:
        got = await asyncio.gather(*(members.register("o_twice", now) for _ in range(8)))
        assert len({g["member_id"] for g in got}) == 1
        assert await store.count_members() == 1
        m = await store.get(got[0]["member_id"])
        assert len(m.coupons) == 1
        assert await store.lookup("member_code", m.member_code) == m.id
    finally:
        await store.close()


async def test_without_stock_the_follower_joins_without_a_coupon(tmp_path, rules, now):
    store, members = await _members(tmp_path, rules)
    try:
        await store.stock_set("welcome", 0)
        res = await members.register("o_late", now)
        assert res["new"] and res["coupon"] is None
        m = await store.get(res["member_id"])
        assert m.coupons == [] and await store.lookup("openid", "o_late") == m.id
    finally:
        await store.close()
