"""The points-age curve (积分账龄): the points members hold now, by how long ago they were
earned, with the points unused for 6 months or more flagged (a balance that sits is a
liability the programme should wake, before it expires)."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

from storage import Store

from . import keys
from .rules.config import Rules

PAGE = 1000
READS_IN_FLIGHT = 32
KEEP_S = 3600  # the dashboard shows a curve of the day up to an hour old
FLAG_MONTHS = 6
# [from, to) in months of age; the last bucket is open
BUCKETS = ((0, 3), (3, 6), (6, 9), (9, 12), (12, None))


def months_between(earlier: date, later: date) -> int:
    """Whole months from ``earlier`` to ``later`` (a lot earned on 05-20 is 6 months old on
    11-20, not on 11-19)."""
    n = (later.year - earlier.year) * 12 + later.month - earlier.month
    return n - (later.day < earlier.day)


def label(lo: int, hi: int | None) -> str:
    return f"{lo}–{hi} 个月" if hi is not None else f"{lo} 个月以上"


async def curve(store: Store, rules: Rules, today: date, *,
                reuse: bool = False) -> dict[str, Any]:
    """Unspent, unexpired points by age as of ``today`` (the members' current lots). It reads
    every member: ``reuse`` takes a curve of the same day computed within the hour (the
    dashboard), and each computation is kept for that."""
    key = keys.points_age(today.isoformat())
    if reuse and (kept := await store.kv_get(key)):
        return json.loads(kept)
    out = await _scan(store, today)
    await store.kv_set(key, json.dumps(out), ttl=KEEP_S)
    return out


async def _scan(store: Store, today: date) -> dict[str, Any]:
    points = [0] * len(BUCKETS)
    holders = [0] * len(BUCKETS)
    flagged_points, flagged_members = 0, 0
    after = ""
    while True:
        ids = await store.member_ids(after=after, limit=PAGE)
        # a few reads at once share the round trips on Redis and PostgreSQL (not more: a
        # connection pool holds about a hundred)
        got = []
        for i in range(0, len(ids), READS_IN_FLIGHT):
            got += await asyncio.gather(*(store.get(mid)
                                          for mid in ids[i:i + READS_IN_FLIGHT]))
        for m in got:
            if m is None:
                continue
            mine = [0] * len(BUCKETS)
            for lot in m.lots:
                if lot.remaining <= 0 or date.fromisoformat(lot.expires_on) < today:
                    continue
                age = months_between(date.fromisoformat(lot.earned_on), today)
                i = next(i for i, (lo, hi) in enumerate(BUCKETS) if hi is None or age < hi)
                mine[i] += lot.remaining
            old = sum(v for (lo, _), v in zip(BUCKETS, mine, strict=True) if lo >= FLAG_MONTHS)
            flagged_points += old
            flagged_members += old > 0
            for i, v in enumerate(mine):
                points[i] += v
                holders[i] += v > 0
        if len(ids) < PAGE:
            break
        after = ids[-1]
    return {"as_of": today.isoformat(), "flag_months": FLAG_MONTHS,
            "buckets": [{"age": label(lo, hi), "from_months": lo, "to_months": hi,
                         "points": points[i], "members": holders[i],
                         "flagged": lo >= FLAG_MONTHS}
                        for i, (lo, hi) in enumerate(BUCKETS)],
            "flagged_points": flagged_points, "flagged_members": flagged_members}
