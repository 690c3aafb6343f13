"""Calendar helpers in the configured zone. Pure: every function takes its instant."""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def local_day(now: datetime, tz: ZoneInfo) -> date:
    """The calendar day of ``now`` in ``tz``."""
    return now.astimezone(tz).date()


def add_months(d: date, months: int) -> date:
    """``d`` moved by ``months``, clamped to the month's last day (29 Feb + 12 → 28 Feb)."""
    total = d.year * 12 + (d.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def add_months_dt(t: datetime, months: int, tz: ZoneInfo) -> datetime:
    """An instant moved by calendar months in ``tz`` (same wall-clock time)."""
    lt = t.astimezone(tz)
    d = add_months(lt.date(), months)
    return datetime.combine(d, lt.timetz().replace(tzinfo=None), tzinfo=tz)


def start_of_day(d: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, time(0), tzinfo=tz)


def end_of_day(d: date, tz: ZoneInfo) -> datetime:
    """The last instant of day ``d``: lots earned on ``d`` stay valid until then."""
    return start_of_day(d + timedelta(days=1), tz) - timedelta(microseconds=1)


def ts(t: datetime) -> int:
    """Unix seconds of an aware datetime (how the aggregate stores instants)."""
    return int(t.timestamp())


# The instants a stored value may safely stand for: 0002-01-01 .. 9998-12-31 UTC, so that a
# date moved by a day or a year in any zone still exists.
TS_MIN = -62104060800
TS_MAX = 253370678400


def from_ts(s: int, tz: ZoneInfo) -> datetime:
    """The instant ``s`` (unix seconds) in ``tz``; a stored value out of the calendar's range
    (an order dated year 1) is clamped, so no stored date can make a rules function raise."""
    return datetime.fromtimestamp(min(max(s, TS_MIN), TS_MAX), tz)


def day_of(s: int, tz: ZoneInfo) -> date:
    """The calendar day of the instant ``s`` in ``tz``."""
    return from_ts(s, tz).date()


def day_num(d: date) -> int:
    """A date as a sortable integer YYYYMMDD, used by the job indexes."""
    return d.year * 10000 + d.month * 100 + d.day

