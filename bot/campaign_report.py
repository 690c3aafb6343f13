"""Campaign budgets in ``memberbot report``: per ``[[campaigns]]`` entry its multiplier,
window, budget and the points of it used so far (the store's counter, storage/budgets.py)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from rich.table import Table

from storage.base import Store

from .rules.config import Rules


async def figures(store: Store, rules: Rules) -> list[dict[str, Any]]:
    """One row per campaign: budget used and left (``None`` for a campaign without one)."""
    out = []
    for c in rules.campaigns:
        used = await store.budget_used(c.key) if c.budget else None
        out.append({
            "key": c.key, "name": c.name, "multiplier": c.multiplier,
            "start": _shown(c.start, rules.tz, time(0)),
            "end": _shown(c.end, rules.tz, time(23, 59, 59)),
            "budget": c.budget or None, "used": used,
            "left": None if used is None else max(c.budget - used, 0),
            "spent": used is not None and used >= c.budget,
        })
    return out


def _shown(at: datetime | None, tz: ZoneInfo, whole_day: time) -> str | None:
    """A window's end in the rules' zone: its date when it bounds a whole day (as written in
    the rules file), else the date and time to the minute."""
    if at is None:
        return None
    at = at.astimezone(tz)
    return at.date().isoformat() if at.time() == whole_day else f"{at:%Y-%m-%d %H:%M}"


def tables(rows: list[dict[str, Any]]) -> list[Table]:
    if not rows:
        return []
    t = Table(title="积分活动预算（截至现在）", title_justify="left")
    for col in ("活动", "名称", "倍数", "时间", "预算", "已用", "剩余", "使用率"):
        t.add_column(col)
    for r in rows:
        window = f"{r['start'] or '…'} – {r['end'] or '…'}"
        if r["budget"] is None:
            t.add_row(r["key"], r["name"], f"×{r['multiplier']:g}", window, "不限", "—", "—",
                      "—")
            continue
        rate = f"{r['used'] / r['budget']:.1%}" + ("（已用完）" if r["spent"] else "")
        t.add_row(r["key"], r["name"], f"×{r['multiplier']:g}", window, f"{r['budget']:,}",
                  f"{r['used']:,}", f"{r['left']:,}", rate)
    return [t]
