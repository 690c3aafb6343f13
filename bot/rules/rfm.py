"""RFM: recency, frequency, monetary over 12 months into the eight classic segments."""

from __future__ import annotations

from datetime import datetime

from .config import Rules
from .models import RFM_SEGMENTS, Member
from .timeutil import add_months_dt, ts

SEGMENTS = RFM_SEGMENTS


def scores(m: Member, now: datetime, rules: Rules) -> tuple[int | None, int, int]:
    """(days since last purchase or None, orders in 12 months, net spend in 12 months)."""
    since = ts(add_months_dt(now, -12, rules.tz))
    upto = ts(now)
    recent = [o for o in m.orders.values() if since < o.paid_at <= upto and o.net_fen > 0]
    if m.last_purchase is None:
        return None, 0, 0
    days = max((upto - m.last_purchase) // 86400, 0)
    return days, len(recent), sum(o.net_fen for o in recent)


def segment(m: Member, now: datetime, rules: Rules) -> str | None:
    """The member's segment; ``None`` for a member who never bought anything."""
    r, f, mon = scores(m, now, rules)
    if r is None:
        return None
    c = rules.rfm
    return SEGMENTS[(r <= c["recency_days"], f >= c["frequency_orders"],
                     mon >= c["monetary_fen"])]
