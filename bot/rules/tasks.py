"""Tasks (任务积分): points for declared interactions (分享好友, 问卷, 阅读文章), reported once per
event id, within per-day and lifetime caps and an active window. Pure: ``now`` is an argument.

The built-in ``profile`` task (完善资料) is declared in the same list but is earned by the
profile itself (:mod:`.profile`), never reported."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from . import points
from .models import PROFILE, Entry, Member, Refusal, Task
from .timeutil import local_day

KEEP_DAYS = 40  # per-task day counts kept on the member (an event may report a past day)


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
    calendar day of ``at``; refused (nothing changed) when unknown, closed or capped."""
    task = tasks.get(key)
    if task is None:
        raise Refusal("task_unknown", f"没有任务 {key}", task=key)
    if not task.reported:
        raise Refusal("task_not_reportable", f"任务 {key} 由会员资料自动完成，不能上报",
                      task=key)
    day = local_day(at, rules.tz)
    if not task.open_on(day):
        raise Refusal("task_closed", f"任务「{task.name}」不在活动时间内", task=key,
                      day=day.isoformat())
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
    rec["days"] = {d: days[d] for d in sorted(days)[-KEEP_DAYS:]}
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
