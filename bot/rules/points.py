"""Points lots: credit, FIFO spend, expiry, reversal with debt. Pure functions on a Member."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from .config import Rules
from .models import Entry, Lot, Member, Pending, Refusal
from .timeutil import add_months, local_day, ts


def _expiry(day: date, rules: Rules) -> str:
    return add_months(day, rules.points["expiry_months"]).isoformat()


def lots_as_of(m: Member, today: date, rules: Rules) -> list[Lot]:
    """The member's lots as of ``today``: the stored ones and the pending points matured by
    then (a read with a later ``now`` sees them available before any step converts them)."""
    iso = today.isoformat()
    due = [Lot(p.ref, p.matures_on, _expiry(date.fromisoformat(p.matures_on), rules),
               p.amount, p.amount) for p in m.pending if p.matures_on <= iso]
    return m.lots + due if due else m.lots


def balance(m: Member, today: date, rules: Rules | None = None) -> int:
    """Unexpired remaining lots minus debt. A lot earned for ``today`` counts; expired ones not.
    With ``rules``, pending points matured by ``today`` count too (a step matures them)."""
    iso = today.isoformat()
    lots = m.lots if rules is None else lots_as_of(m, today, rules)
    return sum(lot.remaining for lot in lots if lot.expires_on >= iso) - m.debt


def pending(m: Member, today: date) -> tuple[int, str | None]:
    """Purchase points still pending on ``today``, and the first day some become available."""
    iso = today.isoformat()
    left = [p for p in m.pending if p.matures_on > iso]
    if not left:
        return 0, None
    return sum(p.amount for p in left), min(p.matures_on for p in left)


def mature(m: Member, now: datetime, rules: Rules) -> list[Entry]:
    """Pending points whose day has come become lots (debt paid first), their expiry counted
    from the day they matured: one ``credit`` entry each, reason ``purchase``."""
    iso = local_day(now, rules.tz).isoformat()
    if not any(p.matures_on <= iso for p in m.pending):
        return []
    out: list[Entry] = []
    for p in [p for p in m.pending if p.matures_on <= iso]:
        out.append(Entry("credit", ts(now), points=p.amount, ref=p.ref,
                         data={"reason": "purchase", "matured": p.matures_on}))
        out += _add_lot(m, p.amount, p.ref, date.fromisoformat(p.matures_on), now, rules)
    m.pending = [p for p in m.pending if p.matures_on > iso]
    return out


def _add_lot(m: Member, amount: int, ref: str, day: date, now: datetime,
             rules: Rules) -> list[Entry]:
    """Debt first, the rest a lot earned on ``day``."""
    out: list[Entry] = []
    pay = min(m.debt, amount)
    if pay:
        m.debt -= pay
        out.append(Entry("debt_paid", ts(now), points=0, ref=ref, data={"paid": pay}))
    if amount - pay:
        m.lots.append(Lot(ref, day.isoformat(), _expiry(day, rules), amount - pay, amount - pay))
        m.lots.sort(key=lambda x: (x.expires_on, x.earned_on))
    return out


def expire(m: Member, now: datetime, rules: Rules) -> list[Entry]:
    """Mature pending points that are due, then drop lots whose last valid day is before
    today; one ``expire`` entry per lot.

    An order remembers how many of its points expired unspent: a late refund does not take
    those back."""
    iso = local_day(now, rules.tz).isoformat()
    out: list[Entry] = mature(m, now, rules)
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
    entries = [Entry("credit", ts(now), points=amount, ref=ref, data={"reason": reason})]
    entries += _add_lot(m, amount, ref, local_day(earned, rules.tz), now, rules)
    entries += expire(m, now, rules)
    return entries


def credit_purchase(m: Member, amount: int, ref: str, paid: datetime, now: datetime,
                    rules: Rules) -> list[Entry]:
    """Purchase points: pending for ``points.pending_days`` days from the day paid (0: a lot
    at once, as :func:`credit`). Points whose day has already come (an imported old order)
    mature in this step."""
    days = rules.points.get("pending_days", 0)
    if amount <= 0 or not days:
        return credit(m, amount, ref, paid, now, rules, reason="purchase")
    day = local_day(paid, rules.tz)
    m.pending.append(Pending(ref, day.isoformat(), (day + timedelta(days=days)).isoformat(),
                             amount))
    entries = [Entry("pending", ts(now), points=0, ref=ref,
                     data={"amount": amount, "matures_on": m.pending[-1].matures_on})]
    return entries + expire(m, now, rules)


def spend(m: Member, amount: int, ref: str, now: datetime, rules: Rules,
          reason: str = "spend", taken: list[list] | None = None) -> list[Entry]:
    """Take ``amount`` points from the earliest-expiring lots; refuse when the balance is short.

    ``taken``, when given, receives ``[expires_on, amount]`` of each lot the points came from
    (a refund gives them back with those expiries)."""
    if amount <= 0:
        return []
    # check before expiring anything: a refusal must leave the member untouched
    have = balance(m, local_day(now, rules.tz), rules)
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
    cancelled = 0
    for p in m.pending:  # still pending (a refund inside the window): cancelled, no debt
        if p.ref == lot_ref and left:
            take = min(p.amount, left)
            p.amount -= take
            left -= take
            cancelled += take
    m.pending = [p for p in m.pending if p.amount]
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
    if cancelled:  # pending points were never in the balance: the entry moves only the rest
        data["pending_cancelled"] = cancelled
    if amount - cancelled:
        entries.append(Entry("reverse", ts(now), points=-(amount - cancelled), ref=ref,
                             data=data))
    else:
        entries.append(Entry("pending_cancel", ts(now), points=0, ref=ref, data=data))
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


def expiring_within(m: Member, today: date, days: int,
                    rules: Rules | None = None) -> tuple[int, str | None]:
    """Points whose lots end within ``days`` days of ``today``, and the soonest such date."""
    lo, hi = today.isoformat(), (today + timedelta(days=days)).isoformat()
    lots = m.lots if rules is None else lots_as_of(m, today, rules)
    soon = [x for x in lots if lo <= x.expires_on <= hi and x.remaining]
    if not soon:
        return 0, None
    return sum(x.remaining for x in soon), min(x.expires_on for x in soon)


def next_expiry(m: Member, rules: Rules | None = None) -> str | None:
    """The first day after which some points expire (for the points_expiry index): pending
    points count with the expiry they will have once matured (12 months after that day)."""
    days = [x.expires_on for x in m.lots if x.remaining]
    if rules is not None:
        days += [_expiry(date.fromisoformat(p.matures_on), rules) for p in m.pending]
    return min(days) if days else None


def next_maturity(m: Member) -> str | None:
    """The first day some pending points become available (for the ``pending`` index)."""
    return min((p.matures_on for p in m.pending), default=None)


def points_for_purchase(paid_fen: int, multiplier: int, rules: Rules) -> int:
    """``floor(paid_yuan × points_per_yuan × multiplier)``, in integer arithmetic."""
    return max(paid_fen, 0) * rules.points["points_per_yuan"] * multiplier // 100
