"""The shape every list section of the rules file shares (``[[tasks]]``, ``[[invite_ladder]]``,
``[[campaigns]]``): a list of tables with known keys. Errors name the entry and the field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any


def entries(items: Any, section: str, known: set[str],
            error: type[ValueError]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(path, table)`` of each entry of ``[[section]]``, e.g. ``("campaigns[0]", {...})``;
    raises ``error`` for a section that is no list, an entry that is no table, an unknown key."""
    if not isinstance(items, list):
        raise error(f"{section}: must be a list of [[{section}]] tables")
    for i, t in enumerate(items):
        p = f"{section}[{i}]"
        if not isinstance(t, dict):
            raise error(f"{p}: must be a table")
        unknown = sorted(set(t) - known)
        if unknown:
            raise error(f"{p}.{unknown[0]}: unknown setting (known: {', '.join(sorted(known))})")
        yield p, t


def day(v: Any) -> date | None:
    """A TOML date (or ``YYYY-MM-DD`` text) as a date; ``None`` when absent, empty or not a
    date (the caller tells the two apart and names the field)."""
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    try:
        return date.fromisoformat(v) if isinstance(v, str) else None
    except ValueError:
        return None
