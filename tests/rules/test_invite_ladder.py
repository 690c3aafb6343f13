"""The invite ladder (阶梯式礼品): each rung once per inviter, in the invite reward's step."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bot.rules import Member, RulesError, invites, load_rules, points
from bot.rules.config import Rung
from bot.rules.models import Coupon
from bot.rules.timeutil import local_day, ts

from .support import SH, new_member, sh

LADDER = ('[[invite_ladder]]\ninvites = 3\ncoupon = "points_500"\n\n'
          '[[invite_ladder]]\ninvites = 5\npoints = 200\n\n'
          '[[invite_ladder]]\ninvites = 10\npoints = 100\ncoupon = "birthday"\n')


@pytest.fixture
def rules(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(LADDER, encoding="utf-8")
    return load_rules(path)


def reward(inviter, n, now, rules, **kw):
    return invites.reward_inviter(inviter, f"b{n}", f"invite:b{n}", now, rules, **kw)


def test_rungs_reward_once_each_at_their_counts(rules):
    inviter = new_member("a")
    now = sh(2026, 3, 1)
    assert invites.next_rung(inviter, rules).invites == 3
    got = []
    for n in range(1, 12):
        try:  # as the store runs a step: on a copy, kept only when it returns
            trial = Member.from_dict(inviter.to_dict())
            res, _ = reward(trial, n, now, rules)
            inviter = trial
        except invites.LadderCoupon as e:  # the use case claims a code, then runs again
            res, _ = reward(inviter, n, now, rules, coupon_code=f"CODE{n:08d}",
                            coupon_rung=e.rung.invites)
        if "ladder" in res:
            got.append((n, res["ladder"]["points"], (res["ladder"]["coupon"] or {}).get(
                "template")))
        now += timedelta(hours=1)
    assert got == [(3, 0, "points_500"), (5, 200, None), (10, 100, "birthday")]
    assert inviter.ladder_done == [3, 5, 10] and invites.next_rung(inviter, rules) is None
    assert sorted(c.template for c in inviter.coupons) == ["birthday", "points_500"]
    assert points.balance(inviter, local_day(now, SH)) == 11 * 50 + 300


def test_capped_invites_do_not_count_and_out_of_stock_gives_the_points(rules, tmp_path):
    path = tmp_path / "cap.toml"
    path.write_text(LADDER + "[invite]\ndaily_cap = 2\n", encoding="utf-8")
    capped = load_rules(path)
    inviter = new_member("a")
    now = sh(2026, 3, 1)
    for n in range(1, 5):
        reward(inviter, n, now, capped)
    assert inviter.invited_total == 4 and inviter.invited_rewarded_total == 2
    assert inviter.ladder_done == []
    res, entries = reward(inviter, 5, now + timedelta(days=1), capped, out_of_stock=True)
    assert res["ladder"] == {"invites": 3, "points": 0, "coupon": None,
                             "missed": "¥5无门槛券已发完"}
    assert "invite_ladder_no_stock" in [e.kind for e in entries]
    assert inviter.ladder_done == [3] and inviter.coupons == []


def test_a_refused_rung_leaves_the_inviter_unchanged(rules):
    inviter = new_member("a")
    now = sh(2026, 3, 1)
    reward(inviter, 1, now, rules)
    reward(inviter, 2, now, rules)
    before = inviter.to_dict()
    with pytest.raises(invites.LadderCoupon):
        invites.reward_inviter(Member.from_dict(before), "b3", "invite:b3", now, rules)
    assert inviter.to_dict() == before


@pytest.mark.parametrize(("text", "field"), [
    ('[[invite_ladder]]\ninvites = 0\npoints = 5\n', "invite_ladder[0].invites"),
    ('[[invite_ladder]]\ninvites = 3\ncoupon = "nope"\n', "invite_ladder[0].coupon"),
    ('[[invite_ladder]]\ninvites = 3\n', "invite_ladder[0].points"),
    ('[[invite_ladder]]\ninvites = 5\npoints = 1\n[[invite_ladder]]\ninvites = 3\npoints = 1\n',
     "invite_ladder[1].invites"),
    ('[[invite_ladder]]\ninvites = 5\npoints = 1\ngift = 1\n', "invite_ladder[0].gift"),
    ('[[invite_ladder]]\ninvites = 1\ncoupon = "memberday_silver"\n', "invite_ladder[0].coupon"),
    ('[[invite_ladder]]\ninvites = 1\npoints = 99999999999999999999\n',
     "invite_ladder[0].points"),
    ('[[invite_ladder]]\ninvites = 99999999999999999999\npoints = 1\n',
     "invite_ladder[0].invites"),
])
def test_a_wrong_rung_names_the_field(tmp_path, text, field):
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_rules(path)


def ladder_of(rules, coupon):
    return replace(rules, invite_ladder=(Rung(1, 30, coupon),))


@pytest.mark.parametrize(("coupon", "reason"), [("welcome", "coupon_limit"),
                                                ("memberday_silver", "coupon_tier")])
def test_a_rung_coupon_the_inviter_may_not_receive_is_left_out(rules, coupon, reason):
    """The rung, its points and the invite count; the ledger says why the coupon was not
    given. (A tier-limited coupon is refused by the loader; rules built otherwise, or a
    per-member limit reached, still must not block the invite.)"""
    ladder = ladder_of(rules, coupon)
    inviter = new_member("a")
    now = sh(2026, 3, 1)
    inviter.coupons.append(Coupon("WELCOME00001", "welcome", ts(now), ts(now) + 86400))
    res, entries = reward(inviter, 1, now, ladder)
    tpl = ladder.coupons[coupon]
    assert res["rewarded"] and res["ladder"]["coupon"] is None
    assert tpl.name in res["ladder"]["missed"]
    no = [e for e in entries if e.kind == "invite_ladder_no_coupon"]
    assert [(e.data["invites"], e.data["coupon"], e.data["reason"]) for e in no] == [
        (1, coupon, reason)]
    assert inviter.ladder_done == [1] and inviter.invited_rewarded_total == 1
    assert [c.template for c in inviter.coupons] == ["welcome"]
    assert points.balance(inviter, now.date()) == 50 + 30


def test_a_code_claimed_for_a_coupon_the_inviter_may_no_longer_receive_is_given_back(rules):
    """Between the claim and the step the inviter reached the coupon's limit: the step is
    refused, so its unit of stock is not taken, and the use case runs it again without."""
    ladder = ladder_of(rules, "welcome")
    inviter = new_member("a")
    now = sh(2026, 3, 1)
    inviter.coupons.append(Coupon("WELCOME00001", "welcome", ts(now), ts(now) + 86400))
    before = inviter.to_dict()
    with pytest.raises(invites.LadderCouponRefused):
        invites.reward_inviter(Member.from_dict(before), "b1", "invite:b1", now, ladder,
                               coupon_code="CODE00000001", coupon_rung=1)
    assert inviter.to_dict() == before
