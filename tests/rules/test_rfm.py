"""RFM (PRODUCT.md 7): recency, frequency, monetary over 12 months, eight segments."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.rules import orders, rfm

from .support import RULES, new_member, sh

NOW = sh(2025, 6, 1, 12)


def member_with(*purchases: tuple[int, int]):
    """A member with one order per (days ago, yuan)."""
    m = new_member(joined=sh(2023, 1, 1))
    for i, (days_ago, yuan) in enumerate(purchases):
        orders.record(m, f"o{i}", yuan * 100, NOW - timedelta(days=days_ago), NOW, RULES)
    return m


@pytest.mark.parametrize(("purchases", "segment"), [
    ([(5, 600), (30, 600)], "重要价值客户"),
    ([(10, 1500)], "重要发展客户"),
    ([(150, 600), (200, 600)], "重要保持客户"),
    ([(200, 1500)], "重要挽留客户"),
    ([(5, 20), (60, 30)], "一般价值客户"),
    ([(10, 50)], "一般发展客户"),
    ([(120, 20), (300, 30)], "一般保持客户"),
    ([(300, 50)], "一般挽留客户"),
])
def test_the_eight_segments(purchases, segment):
    assert rfm.segment(member_with(*purchases), NOW, RULES) == segment


def test_a_member_who_never_bought_has_no_segment():
    assert rfm.segment(new_member(), NOW, RULES) is None
    assert rfm.scores(new_member(), NOW, RULES) == (None, 0, 0)


def test_scores():
    m = member_with((3, 100), (40, 250), (400, 5000))
    assert rfm.scores(m, NOW, RULES) == (3, 2, 35_000)


def test_only_the_last_12_months_count_for_frequency_and_monetary():
    m = member_with((5, 600), (400, 5000), (500, 5000))
    assert rfm.segment(m, NOW, RULES) == "一般发展客户"


def test_recency_boundary_is_90_days():
    assert rfm.segment(member_with((90, 1500)), NOW, RULES) == "重要发展客户"
    assert rfm.segment(member_with((91, 1500)), NOW, RULES) == "重要挽留客户"


def test_a_fully_refunded_order_does_not_count():
    m = member_with((5, 600), (6, 600))
    orders.refund(m, "o1", "r1", None, NOW, RULES)
    assert rfm.scores(m, NOW, RULES)[1:] == (1, 60_000)
    assert rfm.segment(m, NOW, RULES) == "一般发展客户"
