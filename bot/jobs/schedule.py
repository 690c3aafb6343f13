"""When jobs run: pure functions of datetimes (no clock), like arq's cron.

A schedule is wall-clock time in the rules' zone: :class:`Daily`, :class:`Monthly` (a day of
the month), :class:`Every` (a fixed interval, aligned to the epoch) or :class:`OnEvent` (never
scheduled: sent when something happens).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..rules.timeutil import add_months


@dataclass(frozen=True)
class Daily:
    hour: int
    minute: int = 0

    def describe(self) -> str:
        return f"daily {self.hour:02d}:{self.minute:02d}"


@dataclass(frozen=True)
class Monthly:
    day: int  # 1..28, so that it exists every month
    hour: int
    minute: int = 0

    def describe(self) -> str:
        return f"monthly on the {self.day}th {self.hour:02d}:{self.minute:02d}"


@dataclass(frozen=True)
class Every:
    seconds: int

    def describe(self) -> str:
        return f"every {self.seconds // 60} min" if self.seconds % 60 == 0 else \
            f"every {self.seconds} s"


@dataclass(frozen=True)
class OnEvent:
    what: str

    def describe(self) -> str:
        return f"at once, on {self.what}"


Schedule = Daily | Monthly | Every | OnEvent


def _at(d: date, hour: int, minute: int, tz: ZoneInfo) -> datetime:
    # through UTC and back, so a wall time that a DST jump skips still yields a real instant
    return datetime.combine(d, time(hour, minute), tzinfo=tz).astimezone(ZoneInfo("UTC")) \
        .astimezone(tz)


def run_at(s: Schedule, d: date, tz: ZoneInfo, fallback: time = time(9, 0)) -> datetime:
    """The instant ``s`` runs on day ``d`` (what ``--as-of d`` means). A monthly job is placed
    at its time on ``d`` even when ``d`` is not its day; interval and event jobs at
    ``fallback`` (the end of quiet hours)."""
    if isinstance(s, Daily | Monthly):
        return _at(d, s.hour, s.minute, tz)
    return _at(d, fallback.hour, fallback.minute, tz)


def next_run(s: Schedule, after: datetime, tz: ZoneInfo) -> datetime | None:
    """The first scheduled instant strictly after ``after`` (``None`` for event jobs)."""
    if isinstance(s, OnEvent):
        return None
    if isinstance(s, Every):
        t = int(after.timestamp()) // s.seconds * s.seconds + s.seconds
        return datetime.fromtimestamp(t, tz)
    d = after.astimezone(tz).date()
    if isinstance(s, Monthly):
        first = d.replace(day=s.day)
        for k in range(3):  # this month, else the next (one of the two always qualifies)
            cand = _at(add_months(first, k), s.hour, s.minute, tz)
            if cand > after:
                return cand
        raise AssertionError("unreachable")
    for k in range(3):
        cand = _at(d + timedelta(days=k), s.hour, s.minute, tz)
        if cand > after:
            return cand
    raise AssertionError("unreachable")


def prev_run(s: Schedule, at: datetime, tz: ZoneInfo) -> datetime | None:
    """The last scheduled instant at or before ``at`` (``None`` for event jobs)."""
    if isinstance(s, OnEvent):
        return None
    if isinstance(s, Every):
        return datetime.fromtimestamp(int(at.timestamp()) // s.seconds * s.seconds, tz)
    d = at.astimezone(tz).date()
    if isinstance(s, Monthly):
        first = d.replace(day=s.day)
        for k in range(3):
            cand = _at(add_months(first, -k), s.hour, s.minute, tz)
            if cand <= at:
                return cand
        raise AssertionError("unreachable")
    for k in range(3):
        cand = _at(d - timedelta(days=k), s.hour, s.minute, tz)
        if cand <= at:
            return cand
    raise AssertionError("unreachable")


def first_at_or_after(s: Schedule, t: datetime, tz: ZoneInfo) -> datetime | None:
    return next_run(s, t - timedelta(microseconds=1), tz)


def missed(s: Schedule, now: datetime, tz: ZoneInfo, grace: timedelta) -> datetime | None:
    """The scheduled instant a scheduler that was down (or just became leader) should still
    run now: the last one, when it is at most ``grace`` old. Interval jobs never catch up."""
    if not isinstance(s, Daily | Monthly):
        return None
    p = prev_run(s, now, tz)
    return p if p is not None and now - p <= grace else None


def in_quiet_hours(now: datetime, tz: ZoneInfo, start: str, end: str) -> bool:
    """Whether local ``now`` lies in [start, end) — a window that may wrap midnight."""
    t = now.astimezone(tz).time()
    a = time(int(start[:2]), int(start[3:]))
    b = time(int(end[:2]), int(end[3:]))
    if a == b:
        return False
    return (a <= t or t < b) if a > b else (a <= t < b)


def quiet_until(now: datetime, tz: ZoneInfo, start: str, end: str) -> datetime | None:
    """When the quiet hours around ``now`` end (``None`` when ``now`` is not quiet)."""
    if not in_quiet_hours(now, tz, start, end):
        return None
    return first_at_or_after(Daily(int(end[:2]), int(end[3:])), now, tz)
