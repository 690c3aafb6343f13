"""The job indexes of a member, derived by one pure function and written with each commit.

Integers are range-queryable (days as YYYYMMDD, birthdays as MMDD); texts and lists of texts
are equality tags. ``None`` means "not in this index".
"""

from __future__ import annotations

from datetime import date
from typing import Any

from . import coupons, points, tiers
from .config import Rules
from .models import Member
from .timeutil import day_num, day_of


def _day(t: int | None, rules: Rules) -> int | None:
    return None if t is None else day_num(day_of(t, rules.tz))


def derive(m: Member, today: date, rules: Rules) -> dict[str, Any]:
    """Every index entry of ``m``: what the jobs and the sidebar look members up by."""
    exp = points.next_expiry(m, rules)
    mature = points.next_maturity(m)
    review = tiers.review_day(m, today, rules)
    bday = m.birthday
    return {
        "expiry": day_num(date.fromisoformat(exp)) if exp else None,
        # the day pending purchase points become available (housekeeping visits the member
        # then, so the card and the next-expiry index follow)
        "pending": day_num(date.fromisoformat(mature)) if mature else None,
        "last_purchase": _day(m.last_purchase, rules),
        "last_activity": _day(max(m.last_activity, m.last_purchase or 0) or None, rules),
        "grace_until": _day(m.grace_until, rules),
        "tier_review": day_num(review) if review else None,
        "birthday": int(bday[5:7] + bday[8:10]) if bday else None,
        "coupon_expiry": _day(coupons.next_coupon_expiry(m), rules),
        "joined": _day(m.joined_at, rules),
        "tier": m.tier,
        "owner": m.owner_userid,  # whose customers a handover moves
        # pending: a handover WeCom has not decided; owner_left: waiting for a new owner
        "handover": "pending" if m.handover else ("owner_left" if m.owner_left else None),
        "rfm": m.rfm,
        "tags": sorted(set(m.tags)) or None,
        "followed": "yes" if m.followed else "no",
        "card": ("active" if m.card_active else "held") if m.card_code else None,
    }
