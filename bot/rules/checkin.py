"""Daily check-in (签到): one per calendar day, a 7-day cycle, 断签重置."""

from __future__ import annotations

from datetime import datetime, timedelta

from .config import Rules
from .models import Entry, Member
from .points import balance, credit
from .timeutil import local_day, ts


def streak_points(day: int, rules: Rules) -> tuple[int, int]:
    """Points and bonus for streak day ``day`` (1-based) of the cycle."""
    c = rules.checkin
    pts = min(c["base"] + c["step"] * (day - 1), c["cap"])
    bonus = c["cycle_bonus"] if day == c["cycle_days"] else 0
    return pts, bonus


def check_in(m: Member, now: datetime, rules: Rules) -> tuple[dict, list[Entry]]:
    """Check ``m`` in for the local day of ``now``. A second try that day changes nothing."""
    today = local_day(now, rules.tz)
    iso = today.isoformat()
    if m.checkin_last == iso:
        return ({"already": True, "streak": m.checkin_streak, "points": 0, "bonus": 0,
                 "balance": balance(m, today), "day": iso}, [])
    yesterday = (today - timedelta(days=1)).isoformat()
    cycle = rules.checkin["cycle_days"]
    day = m.checkin_streak + 1 if (m.checkin_last == yesterday
                                   and m.checkin_streak < cycle) else 1
    pts, bonus = streak_points(day, rules)
    m.checkin_last, m.checkin_streak = iso, day
    m.checkin_total += 1
    m.last_activity = max(m.last_activity, ts(now))
    entries = [Entry("checkin", ts(now), points=0, ref=f"checkin:{iso}",
                     data={"day": iso, "streak": day})]
    entries += credit(m, pts + bonus, f"checkin:{iso}", now, now, rules, reason="checkin")
    result = {"already": False, "streak": day, "points": pts, "bonus": bonus,
              "balance": balance(m, today), "day": iso, "cycle": cycle}
    return result, entries
