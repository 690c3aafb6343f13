"""Reading one field of the rules file: the error names the field and says what it must be.

Shared by :mod:`.config` and the sections parsed in modules of their own (:mod:`.offers`,
:mod:`.experiments`); the shape of a list section is :func:`.sections.entries`."""

from __future__ import annotations

import math
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the field."""


# Upper bounds of the whole numbers of the rules file, so that no sum, date or stored counter
# built from them overflows (a date past 9999, an SQLite INTEGER, a PostgreSQL bigint). A
# field's bound follows its unit, from its name; anything else (points, fen, stock, budgets,
# caps, counts) is at most MAX_WHOLE.
MAX_WHOLE = 1_000_000_000
MAX_DAYS = 36_500  # 100 years
# a unix time in seconds (``_time``) up to 2100-01-01
UNIT_BOUNDS = (("_time", 4_102_444_800), ("_minutes", MAX_DAYS * 24 * 60),
               ("_hours", MAX_DAYS * 24), ("_days", MAX_DAYS), ("months", 1_200))


def bound(name: str) -> int:
    """The largest value a whole-number field called ``name`` may take."""
    return next((b for suffix, b in UNIT_BOUNDS if name.endswith(suffix)), MAX_WHOLE)


def whole(v: Any, field: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """``v`` as a whole number from ``minimum`` to ``maximum`` (default: :func:`bound` of the
    field's last name); the error names ``field`` (e.g. ``points.pending_days``)."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise RulesError(f"{field}: must be a whole number, got {v!r}")
    if v < minimum:
        raise RulesError(f"{field}: must be at least {minimum}, got {v}")
    top = bound(field.rsplit(".", 1)[-1].split("[", 1)[0]) if maximum is None else maximum
    if v > top:
        raise RulesError(f"{field}: must be at most {top:_}, got {v:_}")
    return v


def _int(d: dict[str, Any], name: str, path: str, *, minimum: int = 0,
         maximum: int | None = None) -> int:
    if name not in d:
        raise RulesError(f"{path}.{name}: missing")
    return whole(d[name], f"{path}.{name}", minimum=minimum, maximum=maximum)


def finite_numbers(data: Any, path: str = "") -> None:
    """Refuse ``nan`` and ``inf`` anywhere in the rules file (TOML allows them; no setting
    means them), naming the field."""
    if isinstance(data, float) and not math.isfinite(data):
        raise RulesError(f"{path}: must be a finite number, got {data!r}")
    if isinstance(data, dict):
        for k, v in data.items():
            finite_numbers(v, f"{path}.{k}" if path else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            finite_numbers(v, f"{path}[{i}]")


def _ints(section: dict[str, Any], path: str, names: list[str], minimum: int = 0,
          maxima: dict[str, int] | None = None) -> dict:
    if not isinstance(section, dict):
        raise RulesError(f"{path}: must be a table")
    unknown = set(section) - set(names)
    if unknown:
        raise RulesError(f"{path}.{sorted(unknown)[0]}: unknown setting")
    return {n: _int(section, n, path, minimum=minimum, maximum=(maxima or {}).get(n))
            for n in names}


def _str(d: dict[str, Any], name: str, path: str) -> str:
    v = d.get(name)
    if not isinstance(v, str) or not v:
        raise RulesError(f"{path}.{name}: must be a non-empty text, got {v!r}")
    return v


def _instant(d: dict[str, Any], name: str, path: str, tz: ZoneInfo, *,
             end: bool = False) -> datetime | None:
    """An optional moment: a TOML date-time (without an offset: in ``tz``) or a date (its
    start, or with ``end`` its last second)."""
    v = d.get(name)
    if v is None or v == "":
        return None
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v) if "T" in v or " " in v else date.fromisoformat(v)
        except ValueError:
            v = None
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=tz)
    if isinstance(v, date):
        return datetime.combine(v, time(23, 59, 59) if end else time(0), tzinfo=tz)
    raise RulesError(f"{path}.{name}: must be a date YYYY-MM-DD or a date-time "
                     f"YYYY-MM-DDTHH:MM:SS, got {d.get(name)!r}")
