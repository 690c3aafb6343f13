"""Shared helpers for the rules tests: the default rules, Shanghai clock times, members."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.rules import Entry, Member, Rules, load_rules
from bot.rules.timeutil import ts

RULES = load_rules()
SH = ZoneInfo("Asia/Shanghai")


def sh(year: int, month: int, day: int, hour: int = 12, minute: int = 0,
       second: int = 0) -> datetime:
    """A wall-clock time in Asia/Shanghai."""
    return datetime(year, month, day, hour, minute, second, tzinfo=SH)


def new_member(member_id: str = "m1", joined: datetime | None = None, **kw: object) -> Member:
    joined = joined or sh(2025, 1, 1, 9)
    return Member(id=member_id, member_code="100000000001", joined_at=ts(joined), **kw)


def ledger_points(entries: Iterable[Entry]) -> int:
    """The net points a list of ledger entries moved."""
    return sum(e.points for e in entries)


def kinds(entries: Iterable[Entry]) -> list[str]:
    return [e.kind for e in entries]


def rules_file(tmp_path: Path, text: str, name: str = "rules.toml") -> Rules:
    """The rules of a file with ``text`` (the built-in defaults for what it leaves out)."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_rules(path)
