"""Invites (PRODUCT.md 2.3): both sides +50, no self/second/cyclic inviter, 7 days, 20 a day."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.rules import Refusal, invites, points
from bot.rules.timeutil import local_day

from .support import RULES, SH, ledger_points, new_member, sh

JOINED = sh(2025, 5, 10, 9)


def balance(m, now):
    return points.balance(m, local_day(now, SH))


def test_bind_and_reward_credit_both_sides_50():
    inviter = new_member("a", joined=sh(2025, 1, 1))
    invitee = new_member("b", joined=JOINED)
    now = JOINED + timedelta(minutes=1)
    result, entries = invites.bind(invitee, inviter, [], "invite:b", now, RULES)
    assert result == {"bound": True, "again": False, "points": 50}
    assert invitee.inviter_id == "a"
    assert ledger_points(entries) == 50
    assert balance(invitee, now) == 50

    result, entries = invites.reward_inviter(inviter, "b", "invite:b", now, RULES)
    assert result == {"rewarded": True, "points": 50}
    assert ledger_points(entries) == 50
    assert balance(inviter, now) == 50
    assert inviter.invited_total == 1


def test_binding_the_same_inviter_again_is_a_no_op():
    inviter, invitee = new_member("a"), new_member("b", joined=JOINED)
    invites.bind(invitee, inviter, [], "invite:b", JOINED, RULES)
    before = invitee.to_dict()
    result, entries = invites.bind(invitee, inviter, [], "invite:b", JOINED, RULES)
    assert (result["again"], result["points"], entries) == (True, 0, [])
    assert invitee.to_dict() == before


def refused(invitee, inviter, ancestors, now):
    before = invitee.to_dict()
    with pytest.raises(Refusal) as exc:
        invites.bind(invitee, inviter, ancestors, "invite:x", now, RULES)
    assert invitee.to_dict() == before
    return exc.value.code


def test_self_invite_is_refused():
    m = new_member("a", joined=JOINED)
    assert refused(m, m, [], JOINED) == "invite_self"


def test_a_second_inviter_is_refused():
    first, second = new_member("a"), new_member("c")
    invitee = new_member("b", joined=JOINED)
    invites.bind(invitee, first, [], "invite:b", JOINED, RULES)
    assert refused(invitee, second, [], JOINED + timedelta(hours=1)) == "invite_already"


def test_an_invite_that_closes_a_cycle_is_refused():
    # b invited c, c invited d; now b tries d's code: b is in d's ancestor chain
    b = new_member("b", joined=JOINED)
    d = new_member("d", joined=sh(2025, 1, 1))
    assert refused(b, d, ["c", "b"], JOINED) == "invite_cycle"


def test_binding_after_the_7_day_window_is_refused():
    inviter, invitee = new_member("a"), new_member("b", joined=JOINED)
    assert refused(invitee, inviter, [], JOINED + timedelta(days=7, seconds=1)) == \
        "invite_window"
    result, _ = invites.bind(invitee, inviter, [], "invite:b", JOINED + timedelta(days=7),
                             RULES)
    assert result["points"] == 50


def test_the_21st_rewarded_invite_of_a_day_earns_the_inviter_nothing():
    inviter = new_member("a")
    day = sh(2025, 5, 10, 8)
    rewards = [invites.reward_inviter(inviter, f"b{i}", f"invite:b{i}",
                                      day + timedelta(minutes=i), RULES)
               for i in range(21)]
    assert [r["rewarded"] for r, _ in rewards] == [True] * 20 + [False]
    capped_result, capped_entries = rewards[-1]
    assert capped_result["points"] == 0
    assert ledger_points(capped_entries) == 0
    assert [e.kind for e in capped_entries] == ["invite_capped"]
    assert balance(inviter, day) == 20 * 50
    assert inviter.invited_total == 21


def test_the_daily_cap_resets_the_next_shanghai_day():
    inviter = new_member("a")
    late = sh(2025, 5, 10, 23, 50)
    for i in range(20):
        invites.reward_inviter(inviter, f"b{i}", f"invite:b{i}", late, RULES)
    assert invites.reward_inviter(inviter, "x", "invite:x", late, RULES)[0]["rewarded"] is False
    next_day = sh(2025, 5, 11, 0, 5)
    result, _ = invites.reward_inviter(inviter, "y", "invite:y", next_day, RULES)
    assert result == {"rewarded": True, "points": 50}
    assert balance(inviter, next_day) == 21 * 50


def test_a_cycle_formed_concurrently_is_not_rewarded_on_the_inviter_side():
    now = sh(2026, 11, 25, 10)
    a = new_member("A", now)
    a.inviter_id = "B"  # A bound B's code while B was binding A's
    res, entries = invites.reward_inviter(a, "B", "invite:B", now, RULES)
    assert res == {"rewarded": False, "points": 0}
    assert [e.kind for e in entries] == ["invite_cycle"] and a.invited_total == 0
