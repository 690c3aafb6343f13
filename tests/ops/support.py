"""Members with known codes for operator tests (imports, reports, admin)."""

from __future__ import annotations

from datetime import datetime

from bot import keys
from bot.members import Members
from bot.rules import coupons
from bot.rules.models import Entry, Member
from bot.rules.timeutil import ts


async def seed_member(members: Members, mid: str, code: str, now: datetime, *,
                      openid: str | None = None, unionid: str | None = None,
                      phone: str | None = None, coupon: tuple[str, str, datetime] | None = None,
                      followed: bool = True) -> str:
    """A member created at ``now`` with a fixed member code (what registration would write,
    minus the random codes); ``coupon``: (template, code, issued at)."""
    store = members.store
    for kind, value in (("member_code", code), ("openid", openid), ("unionid", unionid),
                        ("phone", phone)):
        if value:
            assert await store.claim(kind, value, mid) == mid
    if coupon is not None:
        await store.claim("coupon_code", coupon[1], mid)
    rules = members.rules

    def step(_: Member | None):
        m = Member(id=mid, member_code=code, openid=openid, unionid=unionid, phone=phone,
                   joined_at=ts(now), last_activity=ts(now), invite_code=code[-6:],
                   tier=rules.tiers[0].key, followed=followed)
        entries = [Entry("join", ts(now), ref=keys.register(openid or mid),
                         data={"followed": followed})]
        if coupon is not None:
            tpl, ccode, at = coupon
            entries += coupons.issue(m, rules.coupons[tpl], ccode, f"seed:{ccode}", at, rules)[1]
        return members._finish(m, now, {}, entries, [])

    await store.update(mid, step)
    return mid
