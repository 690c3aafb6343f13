"""Tiers: upgrade at once, lifetime vs trailing-12-month metrics, grace, demotion, warnings."""

from __future__ import annotations

from datetime import date, datetime

from .config import Rules, Tier
from .models import Entry, Member
from .timeutil import add_months, add_months_dt, day_of, ts


def spend_metrics(m: Member, now: datetime, rules: Rules) -> tuple[int, int]:
    """(lifetime net spend, net spend paid in the 12 months up to ``now``), in fen."""
    since = ts(add_months_dt(now, -12, rules.tz))
    upto = ts(now)
    trailing = sum(o.net_fen for o in m.orders.values() if since < o.paid_at <= upto)
    return m.lifetime_spend, trailing


def metric_of(tier: Tier, lifetime: int, trailing: int) -> int:
    return lifetime if tier.metric == "lifetime" else trailing


def kept(tier: Tier, lifetime: int, trailing: int) -> bool:
    """Whether ``tier``'s "kept while" line holds. A lifetime tier, once reached, is kept."""
    return tier.metric == "lifetime" or trailing >= tier.threshold_fen


def best_reached(rules: Rules, lifetime: int, trailing: int) -> Tier:
    best = rules.tiers[0]
    for t in rules.tiers:
        if metric_of(t, lifetime, trailing) >= t.threshold_fen:
            best = t
    return best


def evaluate(m: Member, now: datetime, rules: Rules) -> list[Entry]:
    """Bring tier and grace up to date at ``now``; one entry per change."""
    lifetime, trailing = spend_metrics(m, now, rules)
    cur = rules.tier(m.tier)
    best = best_reached(rules, lifetime, trailing)
    at = ts(now)
    if best.rank > cur.rank:
        m.tier, m.grace_until = best.key, None
        return [Entry("tier_change", at, data={"from": cur.key, "to": best.key, "up": True})]
    if kept(cur, lifetime, trailing):
        if m.grace_until is not None:
            m.grace_until = None
            return [Entry("grace_end", at, data={"tier": cur.key})]
        return []
    if m.grace_until is None:
        m.grace_until = ts(add_months_dt(now, rules.grace_months, rules.tz))
        return [Entry("grace_start", at, data={"tier": cur.key, "until": m.grace_until})]
    if at >= m.grace_until:
        m.tier, m.grace_until = best.key, None
        return [Entry("tier_change", at, data={"from": cur.key, "to": best.key, "up": False})]
    return []


def undo_on_refund(m: Member, before: tuple[int, int], now: datetime,
                   rules: Rules) -> list[Entry]:
    """A refund that takes the current tier's metric from its line to below it undoes the
    upgrade at once, without grace (grace is for spend ageing out, not for money given back):
    the member drops to the highest tier whose line the net spend still reaches.
    ``before``: the (lifetime, trailing) metrics just before the refund."""
    cur = rules.tier(m.tier)
    lifetime, trailing = spend_metrics(m, now, rules)
    if not metric_of(cur, *before) >= cur.threshold_fen > metric_of(cur, lifetime, trailing):
        return []
    best = best_reached(rules, lifetime, trailing)
    if best.rank >= cur.rank:
        return []
    m.tier, m.grace_until = best.key, None
    return [Entry("tier_change", ts(now), data={"from": cur.key, "to": best.key, "up": False,
                                                "reason": "refund"})]


def keep_gap(m: Member, now: datetime, rules: Rules) -> int:
    """Fen still to spend for the current tier's 'kept while' line (0 when it holds)."""
    lifetime, trailing = spend_metrics(m, now, rules)
    cur = rules.tier(m.tier)
    if kept(cur, lifetime, trailing):
        return 0
    return max(cur.threshold_fen - trailing, 0)


def progress(m: Member, now: datetime, rules: Rules) -> dict:
    """Current tier, next tier and the fen still needed to reach it."""
    lifetime, trailing = spend_metrics(m, now, rules)
    cur = rules.tier(m.tier)
    nxt = rules.next_tier(m.tier)
    out = {"tier": cur.key, "tier_name": cur.name, "benefits": list(cur.benefits),
           "lifetime_fen": lifetime, "trailing_fen": trailing, "grace_until": m.grace_until}
    if nxt is not None:
        out.update(next_tier=nxt.key, next_tier_name=nxt.name,
                   next_gap_fen=max(nxt.threshold_fen - metric_of(nxt, lifetime, trailing), 0))
    return out


def warning_due(m: Member, today: date, rules: Rules) -> int | None:
    """The warning (days before ``grace_until``) that falls on ``today``, if any."""
    if m.grace_until is None:
        return None
    end = day_of(m.grace_until, rules.tz)
    left = (end - today).days
    return left if left in rules.grace_warning_days else None


def review_day(m: Member, today: date, rules: Rules) -> date | None:
    """When a trailing-12-month tier must next be looked at: the day its oldest counted order
    leaves the window (or the grace deadline). ``None`` for tiers that cannot fall."""
    cur = rules.tier(m.tier)
    if m.grace_until is not None:
        return day_of(m.grace_until, rules.tz)
    if cur.metric != "trailing12":
        return None
    days = [add_months(day_of(o.paid_at, rules.tz), 12)
            for o in m.orders.values() if o.net_fen > 0]
    days = [d for d in days if d >= today]
    return min(days) if days else None
