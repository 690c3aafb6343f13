"""Tiers (PRODUCT.md 2.2): upgrade at once, lifetime vs trailing 12 months, grace, warnings."""

from __future__ import annotations

from datetime import date, timedelta

from bot.rules import orders, tiers
from bot.rules.timeutil import ts

from .support import RULES, kinds, new_member, sh

YUAN = 100


def buy(m, order_id, yuan, when, now=None):
    return orders.record(m, order_id, yuan * YUAN, when, now or when, RULES)


def test_lifetime_3000_yuan_upgrades_to_silver_with_the_qualifying_order():
    m = new_member()
    buy(m, "o1", 2999, sh(2025, 1, 5))
    assert m.tier == "normal"
    result, entries = orders.record(m, "o2", 100, sh(2025, 2, 1), sh(2025, 2, 1), RULES)
    assert result["tier"] == m.tier == "silver"
    assert [e.data for e in entries if e.kind == "tier_change"] == [
        {"from": "normal", "to": "silver", "up": True}]


def test_silver_counts_lifetime_spend_across_years():
    m = new_member()
    buy(m, "old", 2000, sh(2021, 3, 1))
    buy(m, "new", 1000, sh(2025, 3, 1))
    assert m.tier == "silver"


def test_one_order_of_15000_yuan_goes_straight_from_normal_to_gold():
    m = new_member()
    _, entries = buy(m, "o1", 15_000, sh(2025, 1, 5))
    assert [e.data for e in entries if e.kind == "tier_change"] == [
        {"from": "normal", "to": "gold", "up": True}]


def test_trailing_15000_yuan_upgrades_silver_to_gold():
    m = new_member()
    buy(m, "o1", 9000, sh(2025, 1, 5))
    assert m.tier == "silver"
    buy(m, "o2", 6000, sh(2025, 6, 1))
    assert m.tier == "gold"


def test_spend_older_than_12_months_does_not_count_for_gold():
    m = new_member()
    buy(m, "o1", 9000, sh(2024, 5, 31))
    buy(m, "o2", 6000, sh(2025, 6, 1))
    assert m.tier == "silver"


def test_trailing_50000_yuan_reaches_black():
    m = new_member()
    buy(m, "o1", 49_999, sh(2025, 1, 5))
    assert m.tier == "gold"
    buy(m, "o2", 1, sh(2025, 1, 6))
    assert m.tier == "black"


def test_silver_never_falls():
    m = new_member()
    buy(m, "o1", 3000, sh(2022, 1, 5))
    for years_later in (1, 3, 10):
        entries = tiers.evaluate(m, sh(2022 + years_later, 2, 1), RULES)
        assert entries == []
        assert (m.tier, m.grace_until) == ("silver", None)


def gold_member():
    """Gold since 2025-01-10 (¥15,000 that day), nothing bought since."""
    m = new_member()
    buy(m, "o1", 15_000, sh(2025, 1, 10, 14))
    assert m.tier == "gold"
    return m


def test_gold_falling_below_starts_six_months_of_grace():
    m = gold_member()
    assert tiers.evaluate(m, sh(2026, 1, 9, 9), RULES) == []  # still inside the window
    now = sh(2026, 1, 11, 9)
    entries = tiers.evaluate(m, now, RULES)
    assert kinds(entries) == ["grace_start"]
    assert m.tier == "gold"
    assert m.grace_until == ts(sh(2026, 7, 11, 9))
    assert tiers.evaluate(m, now + timedelta(days=1), RULES) == []  # no second start
    assert m.grace_until == ts(sh(2026, 7, 11, 9))


def test_recovering_during_grace_ends_it():
    m = gold_member()
    tiers.evaluate(m, sh(2026, 1, 11, 9), RULES)
    buy(m, "o2", 14_999, sh(2026, 2, 1))
    assert m.grace_until is not None
    _, entries = buy(m, "o3", 1, sh(2026, 2, 2))
    assert "grace_end" in kinds(entries)
    assert (m.tier, m.grace_until) == ("gold", None)


def test_when_grace_passes_the_member_drops_to_the_highest_tier_still_reached():
    m = gold_member()
    tiers.evaluate(m, sh(2026, 1, 11, 9), RULES)
    end = sh(2026, 7, 11, 9)
    assert tiers.evaluate(m, end - timedelta(seconds=1), RULES) == []
    assert m.tier == "gold"
    entries = tiers.evaluate(m, end, RULES)
    assert [e.data for e in entries] == [{"from": "gold", "to": "silver", "up": False}]
    assert (m.tier, m.grace_until) == ("silver", None)


def test_black_falling_to_gold_level_drops_to_gold_after_grace():
    m = new_member()
    buy(m, "o1", 35_000, sh(2025, 1, 10))
    buy(m, "o2", 15_000, sh(2025, 8, 1))
    assert m.tier == "black"
    tiers.evaluate(m, sh(2026, 1, 11), RULES)  # o1 left the window: ¥15,000 trailing
    assert m.grace_until == ts(sh(2026, 7, 11))
    tiers.evaluate(m, sh(2026, 7, 11), RULES)
    assert m.tier == "gold"
    assert m.grace_until is None


def test_a_refund_below_the_line_undoes_the_upgrade_without_grace():
    # money given back is not spend ageing out of the window: no grace (PRODUCT.md 2.2)
    m = gold_member()
    _, entries = orders.refund(m, "o1", "r1", 100, sh(2025, 2, 1), RULES)
    assert "grace_start" not in kinds(entries)
    assert [e.data for e in entries if e.kind == "tier_change"] == [
        {"from": "gold", "to": "silver", "up": False, "reason": "refund"}]
    assert (m.tier, m.grace_until) == ("silver", None)


def test_an_upgrade_during_grace_clears_it():
    m = gold_member()
    tiers.evaluate(m, sh(2026, 1, 11, 9), RULES)
    buy(m, "o2", 50_000, sh(2026, 2, 1))
    assert (m.tier, m.grace_until) == ("black", None)


def test_warnings_fall_exactly_30_and_7_days_before_grace_until():
    m = gold_member()
    tiers.evaluate(m, sh(2026, 1, 11, 9), RULES)  # grace until 2026-07-11
    due = {d: tiers.warning_due(m, d, RULES)
           for d in (date(2026, 6, 10), date(2026, 6, 11), date(2026, 6, 12),
                     date(2026, 7, 3), date(2026, 7, 4), date(2026, 7, 5),
                     date(2026, 7, 11))}
    assert due == {date(2026, 6, 10): None, date(2026, 6, 11): 30, date(2026, 6, 12): None,
                   date(2026, 7, 3): None, date(2026, 7, 4): 7, date(2026, 7, 5): None,
                   date(2026, 7, 11): None}


def test_no_warning_without_grace():
    assert tiers.warning_due(gold_member(), date(2025, 6, 1), RULES) is None


def test_progress_gives_the_gap_to_the_next_tier():
    m = new_member()
    buy(m, "o1", 1000, sh(2025, 1, 5))
    p = tiers.progress(m, sh(2025, 1, 6), RULES)
    assert (p["tier"], p["next_tier"], p["next_gap_fen"]) == ("normal", "silver", 200_000)

    buy(m, "o2", 9000, sh(2025, 2, 1))  # silver; gold counts the trailing 12 months
    p = tiers.progress(m, sh(2025, 2, 2), RULES)
    assert (p["tier"], p["next_tier"], p["next_gap_fen"]) == ("silver", "gold", 500_000)
    p = tiers.progress(m, sh(2026, 1, 10), RULES)  # o1 has left the window
    assert p["next_gap_fen"] == 600_000

    buy(m, "o3", 50_000, sh(2025, 3, 1))
    p = tiers.progress(m, sh(2025, 3, 1), RULES)
    assert p["tier"] == "black"
    assert "next_tier" not in p


def test_keep_gap_is_zero_while_the_tier_holds():
    m = gold_member()
    assert tiers.keep_gap(m, sh(2025, 6, 1), RULES) == 0
    assert tiers.keep_gap(m, sh(2026, 2, 1), RULES) == 1_500_000
