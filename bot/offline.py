"""Running use cases from the command line: the store opened from the settings, the
configured rules and clock, one event loop, and operator-readable failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from storage import StoreError, open_store

from .context import Context
from .jobs.cli import open_context
from .jobs.registry import load_rules
from .members import Members
from .operator import OperatorError
from .rules.config import Rules, RulesError
from .settings import Settings

T = TypeVar("T")


def _run(settings: Settings, go: Callable[[Rules], Awaitable[T]]) -> T:
    """``go(rules)`` on one event loop; a rules file or store that fails is one line."""
    try:
        rules = load_rules(settings)
    except RulesError as e:
        raise OperatorError(str(e)) from e
    try:
        return asyncio.run(go(rules))
    except StoreError as e:
        raise OperatorError(str(e)) from e


def run_with_members(settings: Settings, fn: Callable[[Members, datetime], Awaitable[T]],
                     now: datetime | None = None) -> T:
    """Open the store, run ``fn(members, now)``, close the store. ``now`` defaults to the
    current time in the configured zone."""

    async def go(rules: Rules) -> T:
        store = open_store(settings.store_url, settings.data_key)
        await store.open()
        try:
            members = Members(store, rules)
            return await fn(members, now or datetime.now(rules.tz))
        finally:
            await store.close()

    return _run(settings, go)


def run_with_context(settings: Settings, fn: Callable[[Context], Awaitable[T]]) -> T:
    """Run ``fn(ctx)`` with the app context of a command (:func:`bot.jobs.cli.open_context`):
    for commands that call the OA or WeCom API besides the use cases."""

    async def go(rules: Rules) -> T:
        async with open_context(settings, rules=rules) as ctx:
            return await fn(ctx)

    return _run(settings, go)
