"""Invites: both sides +50, no self/second/cyclic inviter, 7-day bind window, daily cap."""

from __future__ import annotations

from datetime import datetime, timedelta

from . import coupons
from .config import CouponTemplate, Rules, Rung
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


class LadderCoupon(Exception):  # noqa: N818 - a signal to the use case, not an error
    """The step reaches a ladder rung with a coupon but holds no code for it: the use case
    claims a code and its unit of stock for ``rung`` and runs the step again."""

    def __init__(self, rung: Rung) -> None:
        super().__init__(rung.invites)
        self.rung = rung


class LadderCouponRefused(Exception):  # noqa: N818 - a signal to the use case, not an error
    """The rung's coupon may not go to the inviter (a tier or per-member limit) while a code
    and a unit of stock were claimed for it: the use case gives them back and runs the step
    again without; the rung is then reached without its coupon."""

    def __init__(self, rung: Rung) -> None:
        super().__init__(rung.invites)
        self.rung = rung


def rung_at(count: int, rules: Rules) -> Rung | None:
    return next((r for r in rules.invite_ladder if r.invites == count), None)


def next_rung(m: Member, rules: Rules) -> Rung | None:
    """The first rung the inviter has not reached yet."""
    return next((r for r in rules.invite_ladder if r.invites > m.invited_rewarded_total
                 and r.invites not in m.ladder_done), None)


def climb(inviter: Member, ref: str, now: datetime, rules: Rules, *,
          coupon_code: str | None = None, coupon_rung: int | None = None,
          out_of_stock: bool = False) -> tuple[dict | None, list[Entry]]:
    """The ladder rung reached by the inviter's rewarded invite just counted, once per rung.
    A coupon needs a code claimed for that rung (``coupon_rung``); without one the step is
    refused with :class:`LadderCoupon`. ``out_of_stock``: the rung's coupon had none left.
    A coupon the inviter may not receive (tier, per-member limit) is left out, with a ledger
    entry saying why: the rung, its points and the invite still count."""
    rung = rung_at(inviter.invited_rewarded_total, rules)
    if rung is None or rung.invites in inviter.ladder_done:
        return None, []
    at = ts(now)
    entries = [Entry("invite_ladder", at, ref=f"{ref}:ladder:{rung.invites}",
                     data={"invites": rung.invites, "points": rung.points,
                           "coupon": rung.coupon})]
    got: dict = {"invites": rung.invites, "points": rung.points, "coupon": None}
    tpl = rules.coupons[rung.coupon] if rung.coupon else None
    refusal = _refusal(inviter, tpl) if tpl is not None and not out_of_stock else None
    if refusal is not None:
        if coupon_code is not None:
            raise LadderCouponRefused(rung)
        entries.append(Entry("invite_ladder_no_coupon", at, ref=ref,
                             data={"invites": rung.invites, "coupon": rung.coupon,
                                   "reason": refusal.code, "message": refusal.message}))
        got["missed"] = refusal.message
    elif tpl is not None and not out_of_stock:
        if coupon_code is None or coupon_rung != rung.invites:
            raise LadderCoupon(rung)
        c, more = coupons.issue(inviter, tpl, coupon_code, f"{ref}:ladder:{rung.invites}", now,
                                rules)
        entries += more
        got["coupon"] = {"code": c.code, "template": tpl.key, "name": tpl.name}
    elif tpl is not None:
        entries.append(Entry("invite_ladder_no_stock", at, ref=ref,
                             data={"invites": rung.invites, "coupon": rung.coupon,
                                   "reason": "out_of_stock"}))
        got["missed"] = f"{tpl.name}已发完"
    inviter.ladder_done = [*inviter.ladder_done, rung.invites]
    entries += credit(inviter, rung.points, f"{ref}:ladder:{rung.invites}", now, now, rules,
                      reason="invite_ladder")
    return got, entries


def _refusal(m: Member, tpl: CouponTemplate) -> Refusal | None:
    """Why ``m`` may not receive ``tpl`` now, or None."""
    try:
        coupons.check_issue(m, tpl)
    except Refusal as e:
        return e
    return None


def reward_inviter(inviter: Member, invitee_id: str, ref: str, now: datetime,
                   rules: Rules, **ladder: object) -> tuple[dict, list[Entry]]:
    """The inviter's side: count the invite, credit it while under the daily cap, and reward
    the ladder rung it reaches (``ladder``: the arguments of :func:`climb`)."""
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
    inviter.invited_rewarded_total += 1
    entries = credit(inviter, pts, ref, now, now, rules, reason="inviter")
    rung, more = climb(inviter, ref, now, rules, **ladder)  # type: ignore[arg-type]
    # told in the inviter's next reply (and by a customer-service message when allowed)
    notice: dict = {"kind": "invite_reward", "points": pts, "at": ts(now)}
    if rung is not None:
        notice["ladder"] = rung
    inviter.notices = [*inviter.notices, notice][-MAX_NOTICES:]
    res: dict = {"rewarded": True, "points": pts}
    if rung is not None:
        res["ladder"] = rung
    return res, entries + more


def take_notices(m: Member) -> list[dict]:
    """The member's pending notices, removed: each is told once."""
    out, m.notices = m.notices, []
    return out
