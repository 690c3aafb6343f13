"""Points lots: credit, FIFO spend, expiry, reversal with debt. Pure functions on a Member."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from .config import Rules
from .models import Entry, Lot, Member, Refusal
from .timeutil import add_months, local_day, ts


def balance(m: Member, today: date) -> int:
    """Unexpired remaining lots minus debt. A lot earned for ``today`` counts; expired ones not."""
    iso = today.isoformat()
    return sum(lot.remaining for lot in m.lots if lot.expires_on >= iso) - m.debt


def expire(m: Member, now: datetime, rules: Rules) -> list[Entry]:
    """Drop lots whose last valid day is before today; one ``expire`` entry per lot.

    An order remembers how many of its points expired unspent: a late refund does not take
    those back."""
    iso = local_day(now, rules.tz).isoformat()
    out: list[Entry] = []
    keep: list[Lot] = []
    for lot in m.lots:
        if lot.expires_on < iso:
            if lot.remaining:
                o = m.orders.get(lot.ref[6:]) if lot.ref.startswith("order:") else None
                if o is not None and o.points_expired is not None:
                    o.points_expired += lot.remaining
                out.append(Entry("expire", ts(now), points=-lot.remaining, ref=lot.ref,
                                 data={"expires_on": lot.expires_on}))
        else:
            keep.append(lot)
    m.lots = keep
    return out


def credit(m: Member, amount: int, ref: str, earned: datetime, now: datetime, rules: Rules,
           reason: str = "credit") -> list[Entry]:
    """Add ``amount`` points earned at ``earned``; debt is paid first, the rest becomes a lot.

    A lot that would already be expired at ``now`` (an imported old order) is recorded and
    expired at once, so the ledger shows both.
    """
    if amount <= 0:
        return []
    at = ts(now)
    entries = [Entry("credit", at, points=amount, ref=ref, data={"reason": reason})]
    pay = min(m.debt, amount)
    if pay:
        m.debt -= pay
        entries.append(Entry("debt_paid", at, points=0, ref=ref, data={"paid": pay}))
    rest = amount - pay
    if rest:
        d = local_day(earned, rules.tz)
        exp = add_months(d, rules.points["expiry_months"])
        lot = Lot(ref, d.isoformat(), exp.isoformat(), rest, rest)
        m.lots.append(lot)
        m.lots.sort(key=lambda x: (x.expires_on, x.earned_on))
        entries.extend(expire(m, now, rules))
    return entries


def spend(m: Member, amount: int, ref: str, now: datetime, rules: Rules,
          reason: str = "spend", taken: list[list] | None = None) -> list[Entry]:
    """Take ``amount`` points from the earliest-expiring lots; refuse when the balance is short.

    ``taken``, when given, receives ``[expires_on, amount]`` of each lot the points came from
    (a refund gives them back with those expiries)."""
    if amount <= 0:
        return []
    # check before expiring anything: a refusal must leave the member untouched
    have = balance(m, local_day(now, rules.tz))
    if amount > have:
        raise Refusal("insufficient_points", f"积分不足：当前 {max(have, 0)} 分，需要 {amount} 分",
                      balance=have, needed=amount)
    entries = expire(m, now, rules)
    left = amount
    for lot in m.lots:  # sorted by expiry
        if not left:
            break
        take = min(lot.remaining, left)
        lot.remaining -= take
        left -= take
        if taken is not None and take:
            taken.append([lot.expires_on, take])
    m.lots = [x for x in m.lots if x.remaining]
    entries.append(Entry("spend", ts(now), points=-amount, ref=ref, data={"reason": reason}))
    return entries


def reverse(m: Member, amount: int, lot_ref: str, ref: str, now: datetime,
            rules: Rules, reason: str = "") -> list[Entry]:
    """Take back ``amount`` points credited under ``lot_ref`` (a refund).

    From that lot first, then other lots by expiry; what was already spent becomes debt.
    """
    if amount <= 0:
        return []
    entries = expire(m, now, rules)
    left = amount
    ordered = sorted(m.lots, key=lambda x: (x.ref != lot_ref, x.expires_on))
    for lot in ordered:
        if not left:
            break
        take = min(lot.remaining, left)
        lot.remaining -= take
        left -= take
    m.lots = [x for x in m.lots if x.remaining]
    m.debt += left
    data = {"lot": lot_ref, "debt": left, **({"reason": reason} if reason else {})}
    entries.append(Entry("reverse", ts(now), points=-amount, ref=ref, data=data))
    return entries


def restore(m: Member, pieces: list[list], ref: str, now: datetime,
            rules: Rules) -> list[Entry]:
    """Give back points that were paid with (a refund): ``pieces`` are ``[expires_on, amount]``.

    Each piece becomes a lot expiring when the lot it came from would have, but at least
    ``points.refund_min_days`` days from ``now``; debt is paid first, as with any credit."""
    amount = sum(n for _, n in pieces)
    if amount <= 0:
        return []
    today = local_day(now, rules.tz)
    floor = (today + timedelta(days=rules.points["refund_min_days"])).isoformat()
    at = ts(now)
    entries = [Entry("restore", at, points=amount, ref=ref,
                     data={"lots": [[exp, n] for exp, n in pieces]})]
    pay = min(m.debt, amount)
    if pay:
        m.debt -= pay
        entries.append(Entry("debt_paid", at, points=0, ref=ref, data={"paid": pay}))
    for exp, n in pieces:
        use = min(pay, n)
        pay -= use
        if n - use:
            m.lots.append(Lot(ref, today.isoformat(), max(exp, floor), n - use, n - use))
    m.lots.sort(key=lambda x: (x.expires_on, x.earned_on))
    return entries


def expiring_within(m: Member, today: date, days: int) -> tuple[int, str | None]:
    """Points whose lots end within ``days`` days of ``today``, and the soonest such date."""
    lo, hi = today.isoformat(), (today + timedelta(days=days)).isoformat()
    soon = [x for x in m.lots if lo <= x.expires_on <= hi and x.remaining]
    if not soon:
        return 0, None
    return sum(x.remaining for x in soon), min(x.expires_on for x in soon)


def next_expiry(m: Member) -> str | None:
    """The first day after which some points expire (for the points_expiry index)."""
    days = [x.expires_on for x in m.lots if x.remaining]
    return min(days) if days else None


def points_for_purchase(paid_fen: int, multiplier: int, rules: Rules) -> int:
    """``floor(paid_yuan × points_per_yuan × multiplier)``, in integer arithmetic."""
    return max(paid_fen, 0) * rules.points["points_per_yuan"] * multiplier // 100
