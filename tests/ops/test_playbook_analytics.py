"""The playbook's figures on a small known history, by hand: 邀请系数, 等级晋升率, 客单价,
积分发放率 and the points-age curve."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from bot import analytics, points_age
from bot.members import Members
from bot.points_age import months_between
from bot.report import tables
from storage import open_store

AS_OF = date(2026, 11, 25)


@pytest.fixture
async def members(tmp_path, rules):
    store = open_store(f"sqlite:///{tmp_path}/m.db", b"k" * 32)
    await store.open()
    yield Members(store, rules)
    await store.close()


async def test_playbook_figures_equal_the_hand_computed_ones(members, rules):
    tz = rules.tz
    old = datetime(2026, 4, 1, 12, tzinfo=tz)  # before the period, 7 months ago
    t = datetime(2026, 11, 20, 12, tzinfo=tz)  # inside the 30 days to 11-25
    reg = {}
    reg["d"] = (await members.register("o-d", old))["member_id"]
    await members.record_order(reg["d"], "D-old", 5_000, old, old)  # 50 points, aged 7 months
    for name in ("a", "b", "c", "e"):
        reg[name] = (await members.register(f"o-{name}", t))["member_id"]
    code = {k: (await members.get(v)).invite_code for k, v in reg.items()}
    await members.bind_invite(reg["b"], code["a"], t)
    await members.bind_invite(reg["c"], code["a"], t)
    await members.bind_invite(reg["e"], code["d"], t)
    t2 = t + timedelta(hours=1)
    await members.record_order(reg["a"], "A1", 300_000, t2, t2)  # reaches silver
    await members.record_order(reg["b"], "B1", 10_000, t2, t2)
    await members.record_order(reg["c"], "C1", 20_000, t2, t2)
    r = await analytics.compute(members.store, rules, AS_OF, 30)
    k = {x["key"]: x for x in r["kpis"]}
    # 3 rewarded invites by 2 inviters (a: 2, d: 1); 4 members joined in the period
    assert (k["invite_per_inviter"]["numerator"], k["invite_per_inviter"]["denominator"]) == (3, 2)
    assert k["invite_per_inviter"]["text"] == "1.50"
    assert k["invite_per_new"]["text"] == "0.75"
    # one member of five went up a tier (a: silver)
    assert (k["tier_promotion"]["numerator"], k["tier_promotion"]["denominator"]) == (1, 5)
    assert k["tier_promotion"]["text"] == "20.0%"
    # ¥3,300 over 3 orders
    assert k["aov"]["text"] == "¥1,100.00"
    # issued in the period: 6 × 50 invite points + 3000 + 100 + 200 purchase points = 3600
    # points = ¥36 of ¥3,300 paid
    assert r["points"]["issued"] == 3_600
    assert k["points_issue_rate"]["value"] == pytest.approx(3_600 / 330_000)
    assert k["points_issue_rate"]["text"] == "1.1%"
    age = r["points_age"]
    by = {b["age"]: (b["points"], b["members"], b["flagged"]) for b in age["buckets"]}
    # d: 50 points from April (7 months) + 50 invite points now; a: 100 + 3000; b, c, e: 50
    # + their own purchase points
    assert by["6–9 个月"] == (50, 1, True)
    assert by["0–3 个月"] == (50 + 100 + 3_000 + 50 + 100 + 50 + 200 + 50, 5, False)
    assert by["3–6 个月"] == (0, 0, False) and by["12 个月以上"] == (0, 0, True)
    assert (age["flagged_points"], age["flagged_members"]) == (50, 1)
    titles = [str(tb.title) for tb in tables(r)]
    assert any("积分账龄" in x and "50 分，1 人" in x for x in titles), titles


def test_months_are_whole_calendar_months():
    assert months_between(date(2026, 5, 20), date(2026, 11, 20)) == 6
    assert months_between(date(2026, 5, 20), date(2026, 11, 19)) == 5
    assert months_between(date(2025, 12, 31), date(2026, 1, 1)) == 0


async def test_the_dashboard_reuses_the_days_points_age_curve_for_an_hour(members, rules):
    now = datetime(2026, 11, 25, 12, tzinfo=rules.tz)
    mid = (await members.register("o-age", now))["member_id"]
    await members.record_order(mid, "AGE-1", 10_000, now, now)
    first = await points_age.curve(members.store, rules, AS_OF, reuse=True)
    assert first["buckets"][0]["points"] == 100
    await members.record_order(mid, "AGE-2", 20_000, now, now)
    assert await points_age.curve(members.store, rules, AS_OF, reuse=True) == first
    fresh = await points_age.curve(members.store, rules, AS_OF)  # memberbot report
    assert fresh["buckets"][0]["points"] == 300
    assert await points_age.curve(members.store, rules, AS_OF, reuse=True) == fresh
