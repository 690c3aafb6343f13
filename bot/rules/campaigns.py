"""Campaigns (积分翻倍): points multipliers on purchases, with a window, targeting and a points
budget. The ``[[campaigns]]`` rules section and the pure choice of the campaign an order gets.

- **Applies** to an order paid (``paid_at``, in the configured zone) from ``start`` to ``end``
  (inclusive; a date-time ``2026-12-05T10:00:00`` in the configured zone, or a date: from its
  start, to its last second, as catalogue items), by a member whose tier before the order
  is in ``tiers``, whose RFM segment is in ``segments``, at a store in ``stores``, on a day
  of the month in ``days_of_month`` (``member_day = true``: the day of ``push.member_day``)
  and a weekday in ``weekdays`` (1 = Monday … 7 = Sunday); a list left out does not restrict.
- **Stacking**: of the campaigns that apply, the highest multiplier wins (the first listed on
  a tie); campaigns never add up. A campaign whose budget is spent no longer applies: the next
  one in line does.
- **With the tier multiplier**: they multiply. A silver member (×2) in a ×2 campaign earns
  ``floor(paid_yuan × 2 × 2)``; the campaign's share is what it adds above the tier's points,
  and only that share counts against its budget.
- **Budget** (points; absent or 0: none): a cross-member counter in the store, taken once per
  order (a resent order takes nothing again). The last order gets what is left (a partial
  award), then the campaign stops adding points. A refund takes the campaign's points back
  from the member in proportion but does not give budget back: the budget counts points
  awarded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .fields import RulesError, _instant, whole
from .models import RFM_SEGMENTS, Member
from .sections import entries
from .timeutil import local_day

KNOWN = {"key", "name", "multiplier", "start", "end", "tiers", "segments", "stores",
         "days_of_month", "member_day", "weekdays", "budget"}


class CampaignRulesError(ValueError):
    """A ``[[campaigns]]`` entry that cannot be used (the rules loader names the field)."""


@dataclass(frozen=True)
class Campaign:
    key: str
    name: str
    tenths: int  # the multiplier × 10 (2 → 20, 1.5 → 15)
    start: datetime | None = None  # aware; a date in the file: its first second
    end: datetime | None = None  # aware; a date in the file: its last second
    tiers: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    stores: tuple[str, ...] = ()
    days_of_month: tuple[int, ...] = ()
    weekdays: tuple[int, ...] = ()
    budget: int = 0  # points; 0 = no budget

    @property
    def multiplier(self) -> float:
        return self.tenths / 10

    def applies(self, m: Member, store_id: str, at: datetime, tz: ZoneInfo) -> bool:
        """For an order by ``m`` at ``store_id`` paid at ``at`` (aware)."""
        at = at.replace(microsecond=0)  # paid in the window's last second is in it
        day = local_day(at, tz)
        return ((self.start is None or at >= self.start)
                and (self.end is None or at <= self.end)
                and (not self.tiers or m.tier in self.tiers)
                and (not self.segments or (m.rfm or "") in self.segments)
                and (not self.stores or store_id in self.stores)
                and (not self.days_of_month or day.day in self.days_of_month)
                and (not self.weekdays or day.isoweekday() in self.weekdays))


class NeedGrant(Exception):  # noqa: N818 - a signal to the use case, not an error
    """The order's campaign has a budget and the step holds no grant of it: the use case
    takes up to ``want`` points of its budget for the order and runs the step again."""

    def __init__(self, campaign: Campaign, want: int) -> None:
        super().__init__(campaign.key)
        self.campaign, self.want = campaign, want


def extra(paid_fen: int, tier_multiplier: int, c: Campaign, rules: Any) -> int:
    """The points campaign ``c`` adds to a purchase above the tier's own points."""
    per = max(paid_fen, 0) * rules.points["points_per_yuan"] * tier_multiplier
    return per * c.tenths // 1000 - per // 100


def award(m: Member, paid_fen: int, tier_multiplier: int, store_id: str, paid_at: datetime,
          rules: Any, grants: dict[str, int]) -> tuple[Campaign | None, int]:
    """The campaign an order gets and the points it adds, within the budget granted in
    ``grants`` (campaign key -> points). Raises :class:`NeedGrant` for a budgeted campaign in
    line that has no grant yet."""
    live = [c for c in rules.campaigns if c.applies(m, store_id, paid_at, rules.tz)]
    for c in sorted(live, key=lambda c: -c.tenths):  # stable: the first listed on a tie
        want = extra(paid_fen, tier_multiplier, c, rules)
        if want <= 0:
            return None, 0
        if not c.budget:
            return c, want
        if c.key not in grants:
            raise NeedGrant(c, want)
        if grants[c.key] > 0:
            return c, min(grants[c.key], want)
    return None, 0


# -- the rules section ---------------------------------------------------------------------
def _list(c: dict, name: str, p: str, kind: type, allowed: Any = None) -> tuple:
    v = c.get(name, [])
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, kind)
                                      for x in v):
        raise CampaignRulesError(f"{p}.{name}: must be a list of "
                                 f"{'texts' if kind is str else 'whole numbers'}")
    bad = [x for x in v if allowed is not None and x not in allowed]
    if bad:
        raise CampaignRulesError(f"{p}.{name}: {bad[0]!r} is not one of "
                                 f"{', '.join(map(str, allowed))}")
    return tuple(v)


def _when(c: dict, name: str, p: str, tz: ZoneInfo) -> datetime | None:
    try:
        return _instant(c, name, p, tz, end=name == "end")
    except RulesError as e:
        raise CampaignRulesError(str(e)) from e


def _tenths(v: Any, p: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise CampaignRulesError(f"{p}.multiplier: must be a number such as 2 or 1.5, got {v!r}")
    t = round(v * 10) if 1 <= v <= 10 else 0  # (1e308 × 10 would not round)
    if abs(v * 10 - t) > 1e-9 or not 11 <= t <= 100:
        raise CampaignRulesError(f"{p}.multiplier: must be from 1.1 to 10 in steps of 0.1, "
                                 f"got {v!r}")
    return t


def parse(items: Any, tier_keys: list[str], member_day: int, tz: ZoneInfo
          ) -> tuple[Campaign, ...]:
    """The ``[[campaigns]]`` list; an error names the entry and the field."""
    out: list[Campaign] = []
    for p, c in entries(items, "campaigns", KNOWN, CampaignRulesError):
        key = c.get("key")
        if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", key):
            raise CampaignRulesError(f"{p}.key: must be lower-case letters, digits and _, "
                                     f"got {key!r}")
        name = c.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CampaignRulesError(f"{p}.name: must be a non-empty text, got {name!r}")
        if "multiplier" not in c:
            raise CampaignRulesError(f"{p}.multiplier: missing")
        start, end = _when(c, "start", p, tz), _when(c, "end", p, tz)
        if start and end and end < start:
            raise CampaignRulesError(f"{p}.end: before {p}.start")
        budget = whole(c.get("budget", 0), f"{p}.budget")  # points; 0: no budget
        md = c.get("member_day", False)
        if not isinstance(md, bool):
            raise CampaignRulesError(f"{p}.member_day: must be true or false, got {md!r}")
        days = _list(c, "days_of_month", p, int, range(1, 32))
        if md:
            days = tuple(sorted({*days, member_day}))
        segs = _list(c, "segments", p, str, tuple(RFM_SEGMENTS.values()))
        camp = Campaign(key, name, _tenths(c["multiplier"], p), start, end,
                        _list(c, "tiers", p, str, tier_keys), segs,
                        tuple(str(s) for s in _list(c, "stores", p, str)), days,
                        _list(c, "weekdays", p, int, range(1, 8)), budget)
        if any(x.key == key for x in out):
            raise CampaignRulesError(f"{p}.key: duplicate campaign key {key!r}")
        out.append(camp)
    return tuple(out)
