"""Coupons (PRODUCT.md 2.4): issue limits, codes, idempotent redeem, expiry and stock return."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.rules import Refusal, coupons, orders
from bot.rules.timeutil import ts

from .support import RULES, kinds, new_member, sh

NOW = sh(2025, 6, 1, 14)
TPL = RULES.coupons
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def issue(m, template, code, now=NOW, ref=None):
    return coupons.issue(m, TPL[template], code, ref or f"issue:{code}", now, RULES)


def refusal(fn, *args):
    with pytest.raises(Refusal) as exc:
        fn(*args)
    return exc.value.code


# -- codes -------------------------------------------------------------------------------


@given(st.text(alphabet=ALPHABET, min_size=12, max_size=12))
def test_twelve_symbols_of_the_alphabet_are_a_valid_code(code):
    assert coupons.valid_code(code)


@given(st.text(alphabet=ALPHABET, min_size=11, max_size=11),
       st.sampled_from("0O1IL"), st.integers(0, 11))
def test_a_look_alike_character_makes_a_code_invalid(rest, bad, pos):
    assert not coupons.valid_code(rest[:pos] + bad + rest[pos:])


@pytest.mark.parametrize("code", ["", "23456789ABC", "23456789ABCDE", "23456789abcd",
                                  "23456789ABC-"])
def test_wrong_length_or_symbols_are_invalid(code):
    assert not coupons.valid_code(code)


def test_the_alphabet_has_no_look_alikes():
    assert set(coupons.CODE_ALPHABET) == set(ALPHABET)
    assert coupons.CODE_LENGTH == 12


# -- issue -------------------------------------------------------------------------------


def test_issue_gives_a_window_of_whole_days_in_shanghai():
    m = new_member()
    c, entries = issue(m, "welcome", "WEKC2345ABCD")
    assert (c.template, c.status, c.issued_at) == ("welcome", "issued", ts(NOW))
    assert c.valid_until == ts(sh(2025, 6, 8, 23, 59, 59))
    assert kinds(entries) == ["coupon_issue"]
    assert entries[0].data == {"code": "WEKC2345ABCD", "template": "welcome"}


def test_a_member_day_coupon_is_valid_that_day_only():
    m = new_member(tier="silver")
    c, _ = issue(m, "memberday_silver", "SVRX2345ABCD", now=sh(2025, 6, 15, 9))
    assert c.valid_until == ts(sh(2025, 6, 15, 23, 59, 59))


def test_a_template_counted_in_hours_ends_that_many_hours_after_issue():
    tpl = replace(TPL["welcome"], valid_hours=48)
    c, _ = coupons.issue(new_member(), tpl, "HRS22345ABCD", "issue:h", NOW, RULES)
    assert c.valid_until == ts(NOW + timedelta(hours=48))


def test_issue_is_idempotent_per_ref():
    m = new_member()
    first, _ = issue(m, "welcome", "WEKC2345ABCD", ref="welcome:m1")
    again, entries = issue(m, "welcome", "ZZZZ2345ABCD", ref="welcome:m1")
    assert again is first
    assert entries == []
    assert len(m.coupons) == 1


def test_the_per_member_limit_is_enforced():
    m = new_member()
    issue(m, "welcome", "WEKC2345ABCD")
    before = m.to_dict()
    assert refusal(issue, m, "welcome", "WEKC2345ABCE") == "coupon_limit"
    assert m.to_dict() == before


@pytest.mark.parametrize(("template", "tier", "allowed"), [
    ("memberday_silver", "normal", False),
    ("memberday_silver", "silver", True),
    ("memberday_silver", "gold", False),
    ("memberday_gold", "silver", False),
    ("memberday_gold", "gold", True),
    ("memberday_gold", "black", True),
    ("welcome", "black", True),
])
def test_tier_restricted_templates(template, tier, allowed):
    m = new_member(tier=tier)
    if allowed:
        issue(m, template, "TYER2345ABCD")
        assert len(m.coupons) == 1
    else:
        assert refusal(issue, m, template, "TYER2345ABCD") == "coupon_tier"
        assert m.coupons == []


# -- redeem ------------------------------------------------------------------------------


def test_redeem_is_idempotent_per_code_and_order():
    m = new_member()
    issue(m, "welcome", "WEKC2345ABCD")
    c, off, entries = coupons.redeem(m, "wekc2345abcd", "o1", 8000, NOW, RULES)
    assert (c.status, c.order_id, off) == ("redeemed", "o1", 1000)
    assert kinds(entries) == ["coupon_redeem"]
    assert entries[0].amount_fen == 1000

    before = m.to_dict()
    c2, off2, entries2 = coupons.redeem(m, "WEKC2345ABCD", "o1", 8000, NOW, RULES)
    assert (c2.code, off2, entries2) == ("WEKC2345ABCD", 1000, [])
    assert m.to_dict() == before

    assert refusal(coupons.redeem, m, "WEKC2345ABCD", "o2", 8000, NOW, RULES) == "coupon_used"
    assert m.to_dict() == before


def test_redeem_checks_the_threshold():
    m = new_member()
    issue(m, "welcome", "WEKC2345ABCD")
    with pytest.raises(Refusal) as exc:
        coupons.redeem(m, "WEKC2345ABCD", "o1", 4999, NOW, RULES)
    assert exc.value.code == "coupon_threshold"
    assert exc.value.data == {"code": "WEKC2345ABCD", "threshold_fen": 5000}
    assert m.coupons[0].status == "issued"
    assert coupons.redeem(m, "WEKC2345ABCD", "o1", 5000, NOW, RULES)[1] == 1000


def test_redeemed_first_then_an_order_below_the_threshold_is_refused():
    # issue 9 defect 9: redeem with ¥60, then the order of ¥10 with the same code and id
    m = new_member()
    issue(m, "welcome", "WEKC2345ABCD")  # 满50减10
    coupons.redeem(m, "WEKC2345ABCD", "o1", 6000, NOW, RULES)
    before = m.to_dict()
    with pytest.raises(Refusal) as exc:
        orders.record(m, "o1", 1000, NOW, NOW, RULES, coupon_code="WEKC2345ABCD")
    assert exc.value.code == "coupon_conflict"
    assert m.to_dict() == before
    # the same (code, order) with the same amount is the same redemption
    result, _ = orders.record(m, "o1", 6000, NOW, NOW, RULES, coupon_code="WEKC2345ABCD")
    assert result["paid_fen"] == 5000


def test_a_redemption_recorded_without_its_amount_checks_the_threshold():
    m = new_member()
    issue(m, "welcome", "WEKC2345ABCD")
    coupons.redeem(m, "WEKC2345ABCD", "o1", 6000, NOW, RULES)
    m.coupons[0].redeemed_amount_fen = None  # stored before the amount was kept
    with pytest.raises(Refusal) as exc:
        orders.record(m, "o1", 1000, NOW, NOW, RULES, coupon_code="WEKC2345ABCD")
    assert exc.value.code == "coupon_threshold"


def test_an_unknown_code_is_refused():
    m = new_member()
    issue(m, "welcome", "WEKC2345ABCD")
    assert refusal(coupons.redeem, m, "NP2E2345ABCD", "o1", 8000, NOW, RULES) == \
        "coupon_not_found"


def test_an_expired_coupon_is_refused():
    m = new_member()
    c, _ = issue(m, "welcome", "WEKC2345ABCD")
    last = sh(2025, 6, 8, 23, 59, 59)
    assert refusal(coupons.redeem, m, c.code, "o1", 8000, last + timedelta(seconds=1),
                   RULES) == "coupon_expired"
    assert c.status == "issued"
    coupons.expire_coupons(m, last + timedelta(days=1))
    assert refusal(coupons.redeem, m, c.code, "o1", 8000, last, RULES) == "coupon_expired"
    m2 = new_member()
    issue(m2, "welcome", "WEKC2345ABCD")
    assert coupons.redeem(m2, "WEKC2345ABCD", "o1", 8000, last, RULES)[0].status == "redeemed"


def test_discounts():
    assert coupons.discount_fen(TPL["memberday_silver"], 10_000) == 1500
    assert coupons.discount_fen(TPL["memberday_gold"], 10_000) == 3000
    assert coupons.discount_fen(TPL["memberday_silver"], 10_001) == 1501  # member pays 8500
    assert coupons.discount_fen(TPL["points_500"], 300) == 300  # never more than the order
    assert [TPL[k].label() for k in ("welcome", "points_500", "memberday_silver",
                                     "memberday_gold")] == ["满50减10", "减5", "8.5折", "7折"]


# -- expiry and listing ------------------------------------------------------------------


def test_expire_coupons_marks_them_and_returns_their_stock():
    m = new_member(tier="silver")
    welcome, _ = issue(m, "welcome", "WEKC2345ABCD", ref="welcome:m1")  # to 06-08
    day, _ = issue(m, "memberday_silver", "SVRX2345ABCD", ref="md:2025-06")  # to 06-01
    used, _ = issue(m, "points_500", "PTSX2345ABCD", ref="ex:1")  # to 07-01
    coupons.redeem(m, used.code, "o1", 100, NOW, RULES)

    entries, returns = coupons.expire_coupons(m, sh(2025, 6, 2, 0, 0))
    assert returns == [("memberday_silver", "md:2025-06")]
    assert kinds(entries) == ["coupon_expire"]
    assert (welcome.status, day.status, used.status) == ("issued", "expired", "redeemed")

    entries, returns = coupons.expire_coupons(m, sh(2025, 8, 1))
    assert returns == [("welcome", "welcome:m1")]
    assert used.status == "redeemed"
    assert coupons.expire_coupons(m, sh(2025, 9, 1)) == ([], [])


def test_valid_lists_usable_coupons_soonest_expiry_first():
    m = new_member(tier="silver")
    issue(m, "points_500", "PTSX2345ABCD")  # 30 days
    issue(m, "welcome", "WEKC2345ABCD")  # 7 days
    issue(m, "memberday_silver", "SVRX2345ABCD")  # today
    issue(m, "wakeup", "WAKE2345ABCD")  # 3 days
    coupons.redeem(m, "WAKE2345ABCD", "o1", 20_000, NOW, RULES)
    assert [c.code for c in coupons.valid(m, NOW)] == [
        "SVRX2345ABCD", "WEKC2345ABCD", "PTSX2345ABCD"]
    assert [c.code for c in coupons.valid(m, sh(2025, 6, 2))] == [
        "WEKC2345ABCD", "PTSX2345ABCD"]
    assert coupons.next_coupon_expiry(m) == ts(sh(2025, 6, 1, 23, 59, 59))
