"""Tasks (任务积分): points for declared interactions (分享好友, 问卷, 阅读文章), reported once per
event id, within per-day and lifetime caps and an active window. Pure: ``now`` is an argument.

The built-in ``profile`` task (完善资料) is declared in the same list but is earned by the
profile itself (:mod:`.profile`), never reported."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from . import points
from .models import PROFILE, Entry, Member, Refusal, Task
from .timeutil import from_ts, local_day

# An event may be reported up to MAX_AGE_DAYS calendar days after its day; the member keeps the
# per-day counts of exactly those days, so the daily cap holds for every day an event can name.
MAX_AGE_DAYS = 30
# Reporting systems' clocks drift: an event dated up to this long before the member joined
# still counts (the store API also takes ``at`` up to 10 minutes ahead of now).
CLOCK_SKEW = timedelta(minutes=10)
# A task with an end day takes reports for its days until the end of the day after its end.
REPORT_GRACE_DAYS = 1


def earliest_day(now: datetime, tz: Any) -> date:
    """The oldest calendar day an event reported at ``now`` may be dated on."""
    return local_day(now, tz) - timedelta(days=MAX_AGE_DAYS)


def _check_when(m: Member, task: Task, at: datetime, now: datetime, rules: Any) -> date:
    """The calendar day of ``at``; refused when that day's count is no longer kept, when it
    lies before the member joined, or when the task was closed on it or is closed now."""
    day = local_day(at, rules.tz)
    oldest = earliest_day(now, rules.tz)
    if day < oldest:
        raise Refusal("task_too_old", f"任务完成时间早于 {oldest.isoformat()}，超过 "
                      f"{MAX_AGE_DAYS} 天不能再上报", task=task.key, day=day.isoformat(),
                      earliest=oldest.isoformat())
    joined = from_ts(m.joined_at, rules.tz)
    if at < joined - CLOCK_SKEW:
        raise Refusal("task_before_join", "任务完成时间早于入会时间", task=task.key,
                      joined=joined.isoformat())
    last = task.end + timedelta(days=REPORT_GRACE_DAYS) if task.end else None
    if not task.open_on(day) or (last is not None and local_day(now, rules.tz) > last):
        raise Refusal("task_closed", f"任务「{task.name}」不在活动时间内", task=task.key,
                      day=day.isoformat())
    return day


def progress(m: Member, task: Task, day: date) -> dict[str, Any]:
    """How often ``task`` was rewarded on ``day`` and ever, and whether it can be again."""
    if task.key == PROFILE:
        total = 1 if m.profile_rewarded else 0
        today = 0
    else:
        rec = m.tasks.get(task.key) or {}
        total = int(rec.get("total", 0))
        today = int((rec.get("days") or {}).get(day.isoformat(), 0))
    full = bool(task.lifetime_cap and total >= task.lifetime_cap)
    daily_full = bool(task.daily_cap and today >= task.daily_cap)
    return {"key": task.key, "name": task.name, "points": task.points, "today": today,
            "daily_cap": task.daily_cap, "total": total, "lifetime_cap": task.lifetime_cap,
            "done": full or daily_full, "finished": full}


def complete(m: Member, tasks: dict[str, Task], key: str, event_id: str, at: datetime,
             now: datetime, rules: Any) -> tuple[dict, list[Entry]]:
    """Reward one reported completion of task ``key`` done at ``at``: caps are counted on the
    calendar day of ``at``; refused (nothing changed) when unknown, closed, capped, dated
    before the member joined or too long ago (:data:`MAX_AGE_DAYS`)."""
    task = tasks.get(key)
    if task is None:
        raise Refusal("task_unknown", f"没有任务 {key}", task=key)
    if not task.reported:
        raise Refusal("task_not_reportable", f"任务 {key} 由会员资料自动完成，不能上报",
                      task=key)
    day = _check_when(m, task, at, now, rules)
    p = progress(m, task, day)
    if p["finished"]:
        raise Refusal("task_lifetime_cap", f"任务「{task.name}」已完成 {p['total']} 次，已达上限",
                      task=key, lifetime_cap=task.lifetime_cap)
    if p["done"]:
        raise Refusal("task_daily_cap", f"任务「{task.name}」今天已完成 {p['today']} 次，"
                      "明天再来", task=key, daily_cap=task.daily_cap, day=day.isoformat())
    rec = m.tasks.setdefault(key, {"total": 0, "days": {}})
    rec["total"] = int(rec.get("total", 0)) + 1
    days = dict(rec.get("days") or {})
    iso = day.isoformat()
    days[iso] = days.get(iso, 0) + 1
    oldest = earliest_day(now, rules.tz).isoformat()
    rec["days"] = {d: days[d] for d in sorted(days) if d >= oldest}
    entries = points.credit(m, task.points, f"task:{key}:{event_id}", at if at < now else now,
                            now, rules, reason="task")
    for e in entries:
        if e.kind == "credit":
            e.data["task"] = key
    return ({"event_id": event_id, "task": key, "task_name": task.name, "points": task.points,
             "day": iso, "today": days[iso], "daily_cap": task.daily_cap,
             "total": rec["total"], "lifetime_cap": task.lifetime_cap,
             "at": int(at.timestamp()),
             "balance": points.balance(m, local_day(now, rules.tz))}, entries)
