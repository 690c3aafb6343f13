"""``memberbot report --experiment NAME``: an A/B test of a lifecycle message, per arm.

Each member counts in the arm of their first exposure (a push of the tested kind, or its
holdout record). A member converts with a purchase (an order paid) or a check-in within the
experiment's ``conversion_days`` after that exposure. The difference of each variant's
conversion rate to the holdout's comes with a 95 % confidence interval (Newcombe's hybrid
score interval, which keeps its width at rates of 0 or 100 % and in small samples, where the
plain normal approximation collapses to a point) and a verdict that says when the samples are
too small to conclude. Everything is recomputed from the ledger and the outbox.
"""

from __future__ import annotations

import math
from collections import Counter
from statistics import NormalDist
from typing import Any

from storage import Store

from .analytics import DELIVERY_STATUSES
from .rules.config import Rules
from .rules.experiments import HOLDOUT, Experiment

PAGE = 5000
Z95 = NormalDist().inv_cdf(0.975)  # 1.959963984540054


MIN_MEMBERS = 30  # fewer members in an arm or the holdout: too few to conclude


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``x/n`` (no continuity correction)."""
    p = x / n
    q = z * z / n
    centre = (p + q / 2) / (1 + q)
    half = z * math.sqrt(p * (1 - p) / n + q / (4 * n)) / (1 + q)
    return max(0.0, centre - half), min(1.0, centre + half)


def diff_interval(conv: int, n: int, base_conv: int, base_n: int
                  ) -> tuple[float, float, float] | None:
    """The difference of two conversion rates (``conv/n`` − ``base_conv/base_n``) and its
    95 % interval by Newcombe's hybrid score method (method 10 of Newcombe 1998, from the
    two Wilson intervals): never of zero width, within [−1, 1], fit for small samples and
    rates of 0 or 100 %; None when either group is empty."""
    if not n or not base_n:
        return None
    p, q = conv / n, base_conv / base_n
    (lp, up), (lq, uq) = wilson(conv, n), wilson(base_conv, base_n)
    d = p - q
    return (d, max(-1.0, d - math.hypot(p - lp, uq - q)),
            min(1.0, d + math.hypot(up - p, q - lq)))


def verdict(members: int, base_members: int, low: float, high: float) -> str:
    """What the interval allows one to say: ``too_small`` (an arm or the holdout has fewer
    than :data:`MIN_MEMBERS` members), ``higher`` or ``lower`` (the interval excludes 0),
    else ``no_difference``."""
    if min(members, base_members) < MIN_MEMBERS:
        return "too_small"
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return "no_difference"


VERDICTS = {"too_small": f"samples too small to conclude (under {MIN_MEMBERS} members here or "
                         "in the holdout)",
            "higher": "higher than the holdout",
            "lower": "lower than the holdout",
            "no_difference": "no difference shown (the interval contains 0)"}


async def _rows(store: Store, kinds: list[str]):
    after = 0
    while True:
        rows = await store.ledger(kinds=kinds, after_id=after, limit=PAGE)
        for r in rows:
            yield r
        if len(rows) < PAGE:
            return
        after = rows[-1].id


async def compute(store: Store, rules: Rules, exp: Experiment) -> dict[str, Any]:
    """Members, sent, conversions and the interval to the holdout, per arm."""
    first: dict[str, tuple[int, str]] = {}  # member -> (exposed at, arm)
    async for r in _rows(store, ["push", "push_holdout"]):
        if r.data.get("experiment") == exp.name and r.member_id not in first:
            first[r.member_id] = (r.at, r.data.get("variant", "?"))
    window = exp.conversion_days * 86400
    converted: set[str] = set()
    async for r in _rows(store, ["order", "checkin"]):
        seen = first.get(r.member_id)
        at = r.data.get("paid_at", r.at) if r.kind == "order" else r.at
        if seen is not None and seen[0] <= at <= seen[0] + window:
            converted.add(r.member_id)
    sent: Counter = Counter()
    for status in ("sent", *DELIVERY_STATUSES):
        for row in await store.outbox(status=status, kind=exp.kind, limit=10**9):
            if row.data.get("experiment") == exp.name:
                sent[row.data.get("variant", "?")] += 1
    members: Counter = Counter(arm for _, arm in first.values())
    conv: Counter = Counter(first[mid][1] for mid in converted)
    arms = [*(v.key for v in exp.variants), HOLDOUT]
    arms += sorted(set(members) - set(arms))  # a variant since removed from the file
    out = []
    for arm in arms:
        row: dict[str, Any] = {"arm": arm, "members": members[arm],
                               "sent": sent[arm] if arm != HOLDOUT else 0,
                               "conversions": conv[arm],
                               "rate": conv[arm] / members[arm] if members[arm] else None,
                               "diff": None, "ci_low": None, "ci_high": None, "verdict": None}
        if arm != HOLDOUT:
            iv = diff_interval(conv[arm], members[arm], conv[HOLDOUT], members[HOLDOUT])
            if iv is not None:
                row["diff"], row["ci_low"], row["ci_high"] = iv
                row["verdict"] = verdict(members[arm], members[HOLDOUT], iv[1], iv[2])
            elif members[arm] or members[HOLDOUT]:
                row["verdict"] = "too_small"  # no holdout (or no arm) to compare with
        out.append(row)
    return {"experiment": exp.name, "kind": exp.kind, "holdout_percent": exp.holdout_percent,
            "conversion_days": exp.conversion_days, "arms": out,
            "definition": f"转化 = 推送（或留出组记录）后 {exp.conversion_days} 天内有消费或签到；"
                          "差值 = 该组转化率 − 留出组转化率，95% 置信区间（Newcombe 混合得分法，"
                          f"基于 Wilson 区间）；该组或留出组不足 {MIN_MEMBERS} 人时样本太少，"
                          "不下结论"}


def lines(r: dict[str, Any]) -> list[str]:
    """The terminal table."""
    head = (f"experiment {r['experiment']} ({r['kind']}, holdout {r['holdout_percent']} %, "
            f"conversion within {r['conversion_days']} days)")
    out = [head, f"  {'arm':<12} {'members':>8} {'sent':>6} {'conv.':>6} {'rate':>7}  "
                 "diff to holdout [95 % CI]"]
    for a in r["arms"]:
        rate = "—" if a["rate"] is None else f"{a['rate']:.1%}"
        if a["arm"] == HOLDOUT:
            diff = "(baseline)"
        elif a["diff"] is None:
            diff = "—"
        else:
            diff = f"{a['diff']:+.1%} [{a['ci_low']:+.1%}, {a['ci_high']:+.1%}]"
        if a["verdict"]:
            diff += f"  {VERDICTS[a['verdict']]}"
        out.append(f"  {a['arm']:<12} {a['members']:>8} {a['sent']:>6} {a['conversions']:>6} "
                   f"{rate:>7}  {diff}")
    out.append(f"  {r['definition']}")
    return out
