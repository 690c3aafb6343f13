"""Campaigns (积分翻倍, issue 17 item 5): the rules section, targeting, stacking, the tier
multiplier interplay, budget grants and refunds, in the pure rules."""

from __future__ import annotations

import tomllib
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.rules import orders
from bot.rules.campaigns import NeedGrant, award
from bot.rules.config import DEFAULTS, RulesError, _merge, build_rules

from .support import new_member, sh

SAT = sh(2026, 12, 5, 14)  # a Saturday
MON = sh(2026, 12, 7, 14)


def rules(*campaigns: dict, **over: dict):
    return build_rules(_merge(DEFAULTS, {"campaigns": list(campaigns), **over}))


def camp(key: str = "wk", **kw) -> dict:
    return {"key": key, "name": "周末翻倍", "multiplier": 2, **kw}


# -- the rules section -----------------------------------------------------------------------

@pytest.mark.parametrize(("entry", "field"), [
    ({"key": "x", "name": "n", "multiplier": 2, "budjet": 5}, r"campaigns\[0\]\.budjet"),
    ({"key": "x", "name": "n"}, r"campaigns\[0\]\.multiplier: missing"),
    ({"key": "x", "name": "n", "multiplier": 1}, r"campaigns\[0\]\.multiplier"),
    ({"key": "x", "name": "n", "multiplier": 1.25}, r"campaigns\[0\]\.multiplier"),
    ({"key": "x", "name": "n", "multiplier": "2"}, r"campaigns\[0\]\.multiplier"),
    ({"key": "X y", "name": "n", "multiplier": 2}, r"campaigns\[0\]\.key"),
    ({"key": "x", "name": "", "multiplier": 2}, r"campaigns\[0\]\.name"),
    ({"key": "x", "name": "n", "multiplier": 2, "tiers": ["platinum"]},
     r"campaigns\[0\]\.tiers: 'platinum'"),
    ({"key": "x", "name": "n", "multiplier": 2, "segments": ["VIP"]},
     r"campaigns\[0\]\.segments: 'VIP'"),
    ({"key": "x", "name": "n", "multiplier": 2, "budget": -5}, r"campaigns\[0\]\.budget"),
    ({"key": "x", "name": "n", "multiplier": 2, "budget": 1.5}, r"campaigns\[0\]\.budget"),
    ({"key": "x", "name": "n", "multiplier": 2, "start": "2026-02-30"}, r"campaigns\[0\]\.start"),
    ({"key": "x", "name": "n", "multiplier": 2, "start": "2026-12-06", "end": "2026-12-05"},
     r"campaigns\[0\]\.end: before"),
    ({"key": "x", "name": "n", "multiplier": 2, "weekdays": [0]}, r"campaigns\[0\]\.weekdays"),
    ({"key": "x", "name": "n", "multiplier": 2, "days_of_month": [32]},
     r"campaigns\[0\]\.days_of_month"),
    ({"key": "x", "name": "n", "multiplier": 2, "member_day": "yes"},
     r"campaigns\[0\]\.member_day"),
    ({"key": "x", "name": "n", "multiplier": 2, "stores": "S1"}, r"campaigns\[0\]\.stores"),
])
def test_bad_entries_name_the_field(entry, field):
    with pytest.raises(RulesError, match=field):
        rules(entry)


def test_duplicate_keys_and_shapes_are_refused():
    with pytest.raises(RulesError, match=r"campaigns\[1\]\.key: duplicate"):
        rules(camp(), camp())
    with pytest.raises(RulesError, match=r"campaigns: must be a list"):
        build_rules(_merge(DEFAULTS, {"campaigns": {"key": "x"}}))


def test_a_full_entry_parses_and_member_day_follows_the_setting():
    r = rules(camp(start="2026-12-05", end="2026-12-06", tiers=["silver", "gold"],
                   segments=["重要价值客户"], stores=["S1"], weekdays=[6, 7], budget=1000,
                   member_day=True, multiplier=1.5), push={"member_day": 1})
    c = r.campaigns[0]
    assert (c.tenths, c.budget, c.days_of_month, c.weekdays) == (15, 1000, (1,), (6, 7))
    assert c.start.isoformat() == "2026-12-05T00:00:00+08:00" and c.tiers == ("silver", "gold")
    assert c.end.isoformat() == "2026-12-06T23:59:59+08:00"  # a date: to its last second
    assert rules().campaigns == ()


# -- targeting and stacking ----------------------------------------------------------------

def test_targeting_window_tier_segment_store_day_and_weekday():
    r = rules(camp(start="2026-12-05", end="2026-12-06", weekdays=[6, 7], tiers=["normal"],
                   stores=["S1"], segments=["重要价值客户"]))
    m = new_member(rfm="重要价值客户")
    assert award(m, 10_000, 1, "S1", SAT, r, {}) == (r.campaigns[0], 100)
    assert award(m, 10_000, 1, "S2", SAT, r, {}) == (None, 0)  # store
    assert award(m, 10_000, 1, "S1", MON, r, {}) == (None, 0)  # window and weekday
    assert award(new_member(rfm="一般挽留客户"), 10_000, 1, "S1", SAT, r, {}) == (None, 0)
    assert award(new_member(rfm="重要价值客户", tier="silver"), 10_000, 2, "S1", SAT, r,
                 {}) == (None, 0)  # tier


def test_member_day_targets_the_configured_day_of_month():
    r = rules(camp(member_day=True), push={"member_day": 1})
    m = new_member()
    assert award(m, 10_000, 1, "", sh(2026, 12, 1), r, {})[1] == 100
    assert award(m, 10_000, 1, "", sh(2026, 12, 15), r, {})[1] == 0


def test_highest_multiplier_wins_and_campaigns_never_add_up():
    r = rules(camp("a", multiplier=1.5), camp("b", multiplier=3), camp("c", multiplier=2))
    c, extra = award(new_member(), 10_000, 1, "", SAT, r, {})
    assert c.key == "b" and extra == 200  # ×3 of 100, not 1.5 + 3 + 2


def test_the_tier_multiplier_and_the_campaign_multiply():
    r = rules(camp())
    m = new_member(tier="silver")
    res, _ = orders.record(m, "o1", 10_000, SAT, SAT, r)
    assert res["points_earned"] == 400  # ¥100 × silver 2 × campaign 2
    assert res["campaign"] == "wk" and res["campaign_points"] == 200  # above the tier's 200


# -- budgets --------------------------------------------------------------------------------

def test_a_budgeted_campaign_asks_for_a_grant_and_uses_at_most_it():
    r = rules(camp(budget=1000))
    m = new_member()
    with pytest.raises(NeedGrant) as e:
        orders.record(m, "o1", 10_000, SAT, SAT, r)
    assert e.value.campaign.key == "wk" and e.value.want == 100
    assert m.orders == {} and m.lots == []  # asked before any change
    res, _ = orders.record(m, "o1", 10_000, SAT, SAT, r, grants={"wk": 40})  # the last 40
    assert res["points_earned"] == 140 and res["campaign_points"] == 40


def test_a_spent_budget_lets_the_next_campaign_in_line_apply():
    r = rules(camp("big", multiplier=3, budget=500), camp("small", multiplier=2))
    c, extra = award(new_member(), 10_000, 1, "", SAT, r, {"big": 0})
    assert (c.key, extra) == ("small", 100)
    with pytest.raises(NeedGrant):
        award(new_member(), 10_000, 1, "", SAT, r, {})


def test_a_resent_order_asks_for_nothing():
    r = rules(camp(budget=1000))
    m = new_member()
    first, _ = orders.record(m, "o1", 10_000, SAT, SAT, r, grants={"wk": 100})
    again, entries = orders.record(m, "o1", 10_000, SAT, SAT + timedelta(hours=1), r)
    assert again["points_earned"] == first["points_earned"] == 200 and entries == []


def test_a_refused_order_asks_for_no_grant():
    r = rules(camp(budget=1000))
    m = new_member()
    with pytest.raises(Exception, match="积分不足"):
        orders.record(m, "o1", 100_000, SAT, SAT, r, points_used=500)


def test_refunds_take_the_campaign_points_back_in_proportion():
    r = rules(camp(budget=1000))
    m = new_member()
    orders.record(m, "o1", 10_000, SAT, SAT, r, grants={"wk": 60})  # 100 + 60
    res, _ = orders.refund(m, "o1", "r1", 5_000, SAT + timedelta(days=1), r)
    assert res["points_reversed"] == 50 + 30
    res, _ = orders.refund(m, "o1", "r2", None, SAT + timedelta(days=2), r)
    assert res["points_reversed"] == 80 and m.debt == 0 and m.lots == []


@settings(max_examples=120, deadline=None)
@given(st.lists(st.integers(1, 200_000), min_size=1, max_size=30), st.integers(0, 5_000))
def test_property_awards_never_exceed_the_budget(amounts, budget):
    """Orders taking grants from one counter as the use case does: the campaign points awarded
    never exceed the budget, and every order gets min(want, what was left)."""
    r = rules(camp(budget=max(budget, 1)))
    left = r.campaigns[0].budget
    awarded = 0
    for i, fen in enumerate(amounts):
        m = new_member(f"m{i}")
        try:
            orders.record(m, f"o{i}", fen, SAT, SAT, r)
            grant = None
        except NeedGrant as need:
            grant = min(need.want, left)
            left -= grant
        res, _ = orders.record(m, f"o{i}", fen, SAT, SAT, r,
                               grants={} if grant is None else {"wk": grant})
        assert res["campaign_points"] == (grant or 0)
        awarded += res["campaign_points"]
    assert awarded <= r.campaigns[0].budget and left >= 0


def test_the_documented_example_campaigns_parse():
    import tomllib
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "rules.example.toml").read_text(
        encoding="utf-8")
    block = text[text.index("# [[campaigns]]"):]
    body = "\n".join(line[2:] for line in block.splitlines() if line.startswith("# ")
                     or line == "#")
    r = build_rules(_merge(DEFAULTS, tomllib.loads(body)))
    assert [c.key for c in r.campaigns] == ["weekend_double", "member_day_triple"]
    assert r.campaigns[0].budget == 100_000 and r.campaigns[1].days_of_month == (15,)


def test_a_window_with_times_of_day_is_kept_to_the_minute():
    """``start``/``end`` date-times (in the configured zone, as catalogue items) bound the
    campaign to those moments, not to the whole days."""
    r = build_rules(_merge(DEFAULTS, tomllib.loads(
        '[[campaigns]]\nkey = "flash"\nname = "午间翻倍"\nmultiplier = 2\n'
        "start = 2026-12-05T10:00:00\nend = 2026-12-05T12:00:00\n")))
    c = r.campaigns[0]
    assert (c.start, c.end) == (sh(2026, 12, 5, 10), sh(2026, 12, 5, 12))
    m = new_member()
    assert award(m, 10_000, 1, "", sh(2026, 12, 5, 11), r, {}) == (c, 100)
    assert award(m, 10_000, 1, "", sh(2026, 12, 5, 12), r, {}) == (c, 100)  # inclusive
    assert award(m, 10_000, 1, "", sh(2026, 12, 5, 9), r, {}) == (None, 0)
    assert award(m, 10_000, 1, "", sh(2026, 12, 5, 14), r, {}) == (None, 0)
    # a date-time with an offset is that moment; text works as in the catalogue
    r = rules(camp(start="2026-12-05T02:00:00+00:00", end="2026-12-05 12:00:00"))
    assert r.campaigns[0].start == sh(2026, 12, 5, 10)
    assert award(m, 10_000, 1, "", sh(2026, 12, 5, 9, 59), r, {}) == (None, 0)
    # a date: from its first to its last second
    r = rules(camp(start="2026-12-05", end="2026-12-05"))
    assert award(m, 10_000, 1, "", sh(2026, 12, 5, 23, 59) + timedelta(seconds=59.5), r,
                 {})[1] == 100
    assert award(m, 10_000, 1, "", sh(2026, 12, 6), r, {})[1] == 0


@pytest.mark.parametrize(("entry", "field"), [
    ({"start": "2026-12-05T25:00:00"}, r"campaigns\[0\]\.start: must be a date"),
    ({"end": 5}, r"campaigns\[0\]\.end: must be a date"),
    ({"start": "2026-12-05T12:00:00", "end": "2026-12-05T10:00:00"},
     r"campaigns\[0\]\.end: before"),
])
def test_a_bad_window_names_the_field(entry, field):
    with pytest.raises(RulesError, match=field):
        rules(camp(**entry))
