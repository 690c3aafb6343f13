"""Invites: both sides +50, no self/second/cyclic inviter, 7-day bind window, daily cap."""

from __future__ import annotations

from datetime import datetime, timedelta

from .config import Rules
from .models import Entry, Member, Refusal
from .points import credit
from .timeutil import from_ts, local_day, ts

INVITE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
INVITE_LENGTH = 6
MAX_NOTICES = 5  # the newest; a member who never writes does not grow an endless list


def check_bind(invitee: Member, inviter: Member, ancestors: list[str], now: datetime,
               rules: Rules) -> None:
    """Refuse an invite that breaks a rule. ``ancestors``: the inviter's inviter chain."""
    if invitee.id == inviter.id:
        raise Refusal("invite_self", "不能绑定自己的邀请码")
    if invitee.inviter_id is not None and invitee.inviter_id != inviter.id:
        raise Refusal("invite_already", "你已绑定过邀请人，不能重复绑定")
    if invitee.id in ancestors:
        raise Refusal("invite_cycle", "不能互相邀请")
    window = timedelta(days=rules.invite["bind_window_days"])
    if invitee.inviter_id is None and now - from_ts(invitee.joined_at, rules.tz) > window:
        raise Refusal("invite_window",
                      f"邀请码需在入会 {rules.invite['bind_window_days']} 天内绑定")


def bind(invitee: Member, inviter: Member, ancestors: list[str], ref: str, now: datetime,
         rules: Rules) -> tuple[dict, list[Entry]]:
    """The invitee's side: record the inviter and credit the invitee's reward."""
    check_bind(invitee, inviter, ancestors, now, rules)
    if invitee.inviter_id == inviter.id:
        return {"bound": True, "again": True, "points": 0}, []
    invitee.inviter_id = inviter.id
    pts = rules.invite["invitee_points"]
    entries = [Entry("invite_bound", ts(now), ref=ref, data={"inviter": inviter.id})]
    entries += credit(invitee, pts, ref, now, now, rules, reason="invitee")
    return {"bound": True, "again": False, "points": pts}, entries


def reward_inviter(inviter: Member, invitee_id: str, ref: str, now: datetime,
                   rules: Rules) -> tuple[dict, list[Entry]]:
    """The inviter's side: count the invite, credit it while under the daily cap."""
    day = local_day(now, rules.tz).isoformat()
    if inviter.inviter_id == invitee_id:
        # two members who bound each other's codes at the same moment: the cycle check ran
        # before either bind committed. Seen here, atomically: no reward for a cycle.
        return ({"rewarded": False, "points": 0},
                [Entry("invite_cycle", ts(now), ref=ref, data={"invitee": invitee_id})])
    inviter.invited_total += 1
    done = inviter.invited_rewarded.get(day, 0)
    # keep only today's counter: the cap is per day
    inviter.invited_rewarded = {day: done}
    if done >= rules.invite["daily_cap"]:
        return ({"rewarded": False, "points": 0},
                [Entry("invite_capped", ts(now), ref=ref, data={"invitee": invitee_id})])
    inviter.invited_rewarded[day] = done + 1
    pts = rules.invite["inviter_points"]
    # told in the inviter's next reply (and by a customer-service message when allowed)
    inviter.notices = [*inviter.notices, {"kind": "invite_reward", "points": pts,
                                          "at": ts(now)}][-MAX_NOTICES:]
    return ({"rewarded": True, "points": pts},
            credit(inviter, pts, ref, now, now, rules, reason="inviter"))


def take_notices(m: Member) -> list[dict]:
    """The member's pending notices, removed: each is told once."""
    out, m.notices = m.notices, []
    return out
