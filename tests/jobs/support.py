"""Helpers for the job tests: members in given states, Shanghai times, outbox inspection."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime

from bot.context import Context
from bot.jobs.runner import run_kind
from bot.rules.models import Change, Member
from bot.rules.timeutil import local_day
from storage import Store

from ..rules.support import SH


def sh(y: int, mo: int, d: int, h: int = 12, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


async def member(env: Context, name: str, at: datetime, *, staff: str | None = "staff1",
                 order_fen: int = 0, paid_at: datetime | None = None,
                 birthday: str | None = None, opted_out: bool = False,
                 unionid: str | None = None) -> str:
    """A member who followed at ``at``; optionally a WeCom contact of ``staff``, an order,
    a birthday, opted out of pushes."""
    unionid = unionid or f"u-{name}"
    mid = (await env.members.register(f"o-{name}", at, unionid=unionid))["member_id"]
    if staff:
        linked = await env.members.link_wecom(f"ext-{name}", at, staff=staff, unionid=unionid)
        assert linked["member_id"] == mid
    if order_fen:
        p = paid_at or at
        await env.members.record_order(mid, f"order-{name}", order_fen, p, p)
    if birthday:
        await env.members.set_birthday(mid, birthday, at)
    if opted_out:
        await env.members.set_opt_out(mid, True, at)
    return mid


async def put(store: Store, m: Member, env: Context, now: datetime) -> None:
    """Write an aggregate as it is (a state that is slow to reach through use cases)."""
    from bot.rules import indexes

    idx = indexes.derive(m, local_day(now, env.rules.tz), env.rules)
    await store.update(m.id, lambda _: Change(m, None, [], [], idx))


async def run(env: Context, kind: str, day: date, *, dry_run: bool = False):
    """``jobs run KIND --as-of DAY`` without the CLI."""
    from bot.jobs.cli import as_of_time

    return await run_kind(env, kind, as_of_time(env, kind, day), dry_run=dry_run)


async def statuses(store: Store, kind: str | None = None) -> Counter:
    """Push rows by status (corp-tag marks have outbox rows of their own kind)."""
    return Counter(r.status for r in await store.outbox(kind=kind) if r.kind != "wecom_tag")
