"""Running an order's step with the campaign budget it needs (积分翻倍, bot/rules/campaigns.py).

The step asks for a grant (:class:`~bot.rules.campaigns.NeedGrant`) before it changes
anything; the budget is taken for the order's idempotency key in the store
(storage/budgets.py) and the step runs again with it. A grant goes back only when this
attempt surely did not commit: the step was refused (or its id belongs to another member).
Any other failure — the store unreachable, perhaps after it committed — keeps the grant held
by the order's key, so the resend gets it again and the budget is never given twice.

A committed order settles its grants: what it did not use goes back (its tier fell to a
concurrent refund between the grant and the commit, so it earned a smaller share; or it got
another campaign). Settling lowers the grant to the points the order was awarded, which a
resend does again without effect: the budget used equals the points awarded.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from storage.base import Store, UniqueTaken

from .rules.campaigns import NeedGrant
from .rules.models import Refusal

log = logging.getLogger("memberbot.campaigns")


async def with_grants(store: Store, key: str,
                      attempt: Callable[[dict[str, int]], Awaitable[dict]]) -> dict:
    """``attempt(grants)`` (one idempotent store update under ``key``) until it no longer asks
    for a grant; the grants it was given are a dict campaign key -> points. Returns its
    result; the part of a grant the committed result does not use goes back."""
    grants: dict[str, int] = {}
    token = secrets.token_hex(6)  # this attempt, among those that hold a grant
    try:
        while True:
            try:
                res = await attempt(grants)
                break
            except NeedGrant as need:  # once per campaign: grants grows each time
                c = need.campaign
                grants[c.key] = await store.budget_take(c.key, key, need.want, c.budget, token)
    except (Refusal, UniqueTaken):
        await _release(store, grants, key, token)
        raise
    camp = res.get("campaign")
    if not grants and camp:  # a resend of a committed order: settle again (no-op if done)
        grants = {camp: res.get("campaign_points", 0) + 1}
    for name, granted in grants.items():
        used = res.get("campaign_points", 0) if camp == name else 0
        if granted > used:
            try:
                await store.budget_settle(name, key, used)
            except Exception as e:  # it stays held until a resend: short, never over
                log.warning("campaign %s: unused grant of %s not given back (%s)", name, key, e)
    return res


async def _release(store: Store, names: Any, key: str, token: str) -> None:
    for name in names:
        try:
            await store.budget_release(name, key, token)
        except Exception as e:  # it stays held: the budget falls short, never over
            log.warning("campaign %s: grant of %s not given back (%s)", name, key, e)
