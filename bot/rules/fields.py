"""Reading one field of the rules file: the error names the field and says what it must be.

Shared by :mod:`.config` and the sections parsed in modules of their own (:mod:`.offers`,
:mod:`.experiments`); the shape of a list section is :func:`.sections.entries`."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the field."""


def _int(d: dict[str, Any], name: str, path: str, *, minimum: int = 0) -> int:
    if name not in d:
        raise RulesError(f"{path}.{name}: missing")
    v = d[name]
    if isinstance(v, bool) or not isinstance(v, int):
        raise RulesError(f"{path}.{name}: must be a whole number, got {v!r}")
    if v < minimum:
        raise RulesError(f"{path}.{name}: must be at least {minimum}, got {v}")
    return v


def _ints(section: dict[str, Any], path: str, names: list[str], minimum: int = 0) -> dict:
    if not isinstance(section, dict):
        raise RulesError(f"{path}: must be a table")
    unknown = set(section) - set(names)
    if unknown:
        raise RulesError(f"{path}.{sorted(unknown)[0]}: unknown setting")
    return {n: _int(section, n, path, minimum=minimum) for n in names}


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
