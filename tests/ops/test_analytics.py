"""Report figures on a seeded store equal hand-computed values (PRODUCT.md 7)."""

from __future__ import annotations

from datetime import date

import pytest

from bot import analytics
from bot.members import Members
from storage import open_store

from .seeded import seed_history

AS_OF = date(2026, 11, 25)


@pytest.fixture
async def seeded(tmp_path, rules, monkeypatch):
    store = open_store(f"sqlite:///{tmp_path}/m.db", b"k" * 32)
    await store.open()
    members = Members(store, rules)
    ids = await seed_history(members, monkeypatch)
    yield members, ids
    await store.close()


async def test_the_seven_day_report_equals_the_hand_computed_figures(seeded, rules):
    members, _ = seeded
    r = await analytics.compute(members.store, rules, AS_OF, 7)
    k = {x["key"]: (x["numerator"], x["denominator"]) for x in r["kpis"]}
    assert k == {
        "card_conversion": (3, 4),        # b, c, g joined; f re-followed
        "active_ratio": (3, 6),           # a, b, g bought since 10-27; d in July
        "arpu": (1_669_000, 3),           # 30000 + 49000 + 1600000 - 10000 refunded
        "repurchase": (1, 3),             # a bought twice
        "points_redeem": (500, 16_811),   # g exchanged 500 of 16790 purchase + 21 check-in
        "checkin_dau": (4, 7),            # 11-24: a; 11-25: a, b, c
        "unsubscribe": (1, 6),            # c sent 退订
        "unfollow": (1, 6),               # d unfollowed on 11-24 (f's was in May)
        "invite_per_inviter": (0, 0),     # no invites in the seed
        "invite_per_new": (0, 3),
        "tier_promotion": (1, 6),         # one member went up to gold
        "aov": (1_669_000, 4),            # the net spend over the 4 orders paid
        "points_issue_rate": (16_811, 1_669_000),  # 100 points = ¥1: a point is worth 1 fen
    }
    assert next(x for x in r["kpis"] if x["key"] == "arpu")["text"] == "¥5,563.33"
    assert r["members"] == {"total": 6, "new": 3, "new_followers": 4, "active": 3,
                            "paying": 3, "orders": 4, "spend_fen": 1_669_000,
                            "refunds_fen": 10000}
    assert r["points"] | {"definition": None} == {
        "issued": 16_811, "redeemed": 500, "expired": 0, "reversed": 100,
        "by_reason": {"checkin": 21, "purchase": 16_790}, "definition": None}
    coupons = {c["template"]: (c["issued"], c["redeemed"], c["expired"]) for c in r["coupons"]}
    assert coupons == {"welcome": (3, 1, 1), "points_500": (1, 0, 0), "wakeup": (0, 0, 0),
                       "birthday": (0, 0, 0), "memberday_silver": (0, 0, 0),
                       "memberday_gold": (0, 0, 0)}
    assert [(t["tier"], t["members"], t["upgrades"]) for t in r["tiers"]] == [
        ("normal", 4, 0), ("silver", 1, 0), ("gold", 1, 1), ("black", 0, 0)]
    assert r["checkin"]["dau"] == [0, 0, 0, 0, 0, 1, 3]
    assert r["pushes"]["by_status"] == {"sent": 1, "failed": 1, "unreachable": 1,
                                             "pending": 0, "sending": 0, "skipped": 0}
    assert {s["segment"]: s["members"] for s in r["rfm"] if s["members"]} == {
        "一般价值客户": 1, "一般发展客户": 1, "重要挽留客户": 1, "重要发展客户": 1, "未消费": 2}


async def test_a_longer_period_reaches_back(seeded, rules):
    members, _ = seeded
    r = await analytics.compute(members.store, rules, AS_OF, 365)
    k = {x["key"]: (x["numerator"], x["denominator"]) for x in r["kpis"]}
    assert k["card_conversion"] == (6, 6)  # all six joined (and followed) within the year
    assert k["repurchase"] == (1, 4)
    assert r["pushes"]["by_status"]["sent"] == 2
    assert [(t["tier"], t["upgrades"]) for t in r["tiers"]][1:3] == [("silver", 1),
                                                                       ("gold", 1)]


async def test_an_earlier_as_of_sees_only_what_was_known_then(seeded, rules):
    members, _ = seeded
    r = await analytics.compute(members.store, rules, date(2026, 11, 22), 3)
    assert r["members"]["total"] == 5  # g joined on 11-23
    assert {t["tier"]: t["members"] for t in r["tiers"]}["gold"] == 0
    assert r["checkin"]["dau"] == [0, 0, 0]


async def test_a_full_refund_takes_back_the_redemption_of_points_and_coupon(tmp_path, rules):
    # issue 9 defect 1: what a refund gives back is not counted as redeemed
    from datetime import datetime, timedelta

    store = open_store(f"sqlite:///{tmp_path}/r.db", b"k" * 32)
    await store.open()
    try:
        members = Members(store, rules)
        now = datetime(2026, 11, 24, 10, tzinfo=rules.tz)
        reg = await members.register("o-report", now)
        mid, code = reg["member_id"], reg["coupon"]["code"]
        await members.adjust_points(mid, 600, "seed", "staff", now, key="seed")
        await members.record_order(mid, "RP1", 10_000, now, now, coupon_code=code,
                                   points_used=600)
        before = await analytics.compute(store, rules, AS_OF, 7)
        assert before["points"]["redeemed"] == 600
        assert next(c for c in before["coupons"] if c["template"] == "welcome")["redeemed"] == 1
        await members.refund("RP1", "RR1", None, now + timedelta(hours=1))
        after = await analytics.compute(store, rules, AS_OF, 7)
        assert after["points"]["redeemed"] == 0
        assert next(c for c in after["coupons"] if c["template"] == "welcome")["redeemed"] == 0
    finally:
        await store.close()
