"""Running use cases from the command line: the store opened from the settings, the
configured rules and clock, one event loop, and operator-readable failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from storage import StoreError, open_store

from .jobs.registry import load_rules
from .members import Members
from .operator import OperatorError
from .rules.config import RulesError
from .settings import Settings

T = TypeVar("T")


def run_with_members(settings: Settings, fn: Callable[[Members, datetime], Awaitable[T]],
                     now: datetime | None = None) -> T:
    """Open the store, run ``fn(members, now)``, close the store. ``now`` defaults to the
    current time in the configured zone."""
    try:
        rules = load_rules(settings)
    except RulesError as e:
        raise OperatorError(str(e)) from e

    async def go() -> T:
        store = open_store(settings.store_url, settings.data_key)
        await store.open()
        try:
            members = Members(store, rules)
            return await fn(members, now or datetime.now(rules.tz))
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except StoreError as e:
        raise OperatorError(str(e)) from e
