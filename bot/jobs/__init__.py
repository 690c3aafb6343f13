"""Lifecycle jobs: one module per kind answers "who is due as of ``now``, with what message";
``runner`` marks and enqueues, ``outbox`` delivers, ``scheduler`` runs them on time.

A job module has ``KIND``, ``TITLE`` and ``schedule(rules)``; a push job also has
``candidates(store, now, rules)`` (member ids from the store's indexes) and the pure
``due(member, now, rules) -> Due | None``; a job of another shape has ``run(env, now, ...)``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Scheduled pushes, each in the daily cap's priority list (rules.push["priority"]).
PUSH_KINDS = ("member_day", "birthday", "points_expiry", "dormant", "wakeup",
              "demotion_warning")
KINDS = (*PUSH_KINDS, "tier_upgrade", "welcome", "housekeeping", "outbox")


class UnknownJob(KeyError):
    def __str__(self) -> str:
        return f"unknown job kind {self.args[0]!r} (known: {', '.join(KINDS)})"


def job(kind: str) -> ModuleType:
    """The module of job ``kind``."""
    if kind not in KINDS:
        raise UnknownJob(kind)
    return importlib.import_module(f"bot.jobs.{kind}")
