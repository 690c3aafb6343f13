"""Shared pieces of the jobs: what is due, the run summary, index reads, messages, routes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol, TypeVar

from ..channels.wecom import WeComConfigError, WeComError, WeComRateLimited
from ..context import Context
from ..rules.config import Rules
from ..rules.experiments import Variant
from ..rules.models import Member
from ..rules.timeutil import day_num, local_day
from ..templating import render, render_source
from .schedule import Schedule

PAGE = 5000
HELD = {"send_limit": "held: WeCom's per-customer limit (sent next period)",
        "no_owner": "waiting for a new owner (staff left)"}
SKIPPED = {"out_of_target": "skipped: not in the kind's target (push.targets)"}
NOT_RENDERED = "message not rendered"  # the start of a failure reason: see runner._render


@dataclass(frozen=True)
class Due:
    """A member is due for a push: once per ``period`` (the key is push:<m>:<kind>:<period>);
    ``facts`` fill the template; ``coupon`` is a template issued with it; ``until`` is the
    last day the message is still true (a row held past it is skipped as stale)."""

    period: str
    facts: dict[str, Any] = field(default_factory=dict)
    coupon: str | None = None
    until: date | None = None


class Indexes(Protocol):
    """What a job finds members by: the indexes of the use-case layer
    (:class:`bot.readmodels.ReadModels`, carried by ``ctx.members``), never the store."""

    async def range(self, index: str, lo: int, hi: int, *, after: str = "",
                    limit: int | None = None) -> list[tuple[str, int]]: ...

    async def tagged(self, index: str, value: str, *, after: str = "",
                     limit: int | None = None) -> list[str]: ...


Candidates = Callable[[Indexes, datetime, Rules], Awaitable[list[str]]]
DueFn = Callable[[Member, datetime, Rules], "Due | None"]
RunFn = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Job:
    """One lifecycle kind, declared once (its module's ``JOB``); the registry
    (:mod:`bot.jobs.registry`), the outbox, the admin job table, the rules' priority check
    and ``jobs list`` derive from it.

    A push job has ``candidates`` (member ids from the indexes: who may be due) and
    the pure ``due`` (what is due and its de-duplication period, ``once_per`` in words);
    ``priority`` places it in the daily cap's default order; ``hold_days``: how many days
    after the day it was enqueued a held message may still go out (the stale rule); a job
    of another shape has ``run(env, now, dry_run=, summary=, progress=)``. ``sample``: the
    facts of a made-up push of the kind, which an A/B test variant is rendered with when the
    rules are loaded (:func:`bot.jobs.registry.checked`)."""

    kind: str
    title: str
    schedule: Callable[[Rules], Schedule]
    once_per: str = ""
    candidates: Candidates | None = None
    due: DueFn | None = None
    coupon: str | None = None
    priority: int | None = None
    hold_days: int = 1
    run: RunFn | None = None
    sends: bool = False  # a job of another shape whose outbox rows are lifecycle messages
    sample: dict[str, Any] = field(default_factory=dict)

    @property
    def push(self) -> bool:
        return self.due is not None

    @property
    def lifecycle(self) -> bool:
        """It pushes lifecycle messages: ``push.targets`` may restrict it."""
        return self.push or self.sends


@dataclass
class Summary:
    """What one run did. ``skipped``: by daily cap, opt-out; ``held``: kept pending (quiet
    hours, rate limit, configuration, a batch still in flight elsewhere); ``failed``: by
    errcode."""

    kind: str
    now: datetime
    dry_run: bool = False
    candidates: int = 0
    due: int = 0
    already: int = 0
    enqueued: int = 0
    sent: int = 0
    unreachable: int = 0
    uncertain: int = 0
    refreshed: int = 0
    coupons: int = 0
    skipped: Counter = field(default_factory=Counter)
    held: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    would_send: Counter = field(default_factory=Counter)
    coupon_refused: Counter = field(default_factory=Counter)
    # WeCom in depth: confirmation by status, reminders, reconciliation, tags, handover
    delivery: Counter = field(default_factory=Counter)
    reminded: int = 0
    adopted: int = 0
    resent: int = 0
    tagged: int = 0
    moved: int = 0
    waiting: int = 0
    cleaned: Counter = field(default_factory=Counter)  # housekeeping: what it settled
    report: str = "pushes"  # or "cleaning": which figures lines() prints
    show: int = 0  # a dry run keeps this many rendered messages (``samples``) to print
    samples: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    quiet_end: str = "09:00"  # the rules' push.quiet_end, for "held: quiet hours (until …)"

    def held_by_wecom(self, e: Exception) -> None:
        """A WeCom configuration error or rate limit that stopped a pass: held."""
        self.held["config" if isinstance(e, WeComConfigError) else "rate_limit"] += 1

    def lines(self) -> list[str]:
        when = self.now.strftime("%Y-%m-%d %H:%M %Z")
        dry = " — dry run: nothing sent, nothing changed" if self.dry_run else ""
        head = f"{self.kind} as of {when}{dry}"
        if self.report == "cleaning":
            return [head, *self._table(self._cleaning())]
        rows: list[tuple[str, Any]] = [("due", self.due)]
        if self.already:
            rows.append(("already done before", self.already))
        if self.dry_run:
            rows += [(f"would send via {k}", v) for k, v in sorted(self.would_send.items())]
        else:
            rows += [("enqueued", self.enqueued), ("sent", self.sent)]
        rows += [("skipped: daily cap", self.skipped["cap"]),
                 ("skipped: opted out", self.skipped["opt_out"]),
                 (f"held: quiet hours (until {self.quiet_end})", self.held["quiet"])]
        rows += [(SKIPPED.get(k, f"skipped: {k}"), v) for k, v in sorted(self.skipped.items())
                 if k not in ("cap", "opt_out") and v]
        rows += [(HELD.get(k, f"held: {k}"), v) for k, v in sorted(self.held.items())
                 if k != "quiet" and v]
        rows.append(("unreachable (no WeCom contact, no OA template)", self.unreachable))
        rows.append(("failed", sum(self.failed.values())))
        rows += [(f"  errcode {k}" if str(k).lstrip("-").isdigit() else f"  {k}", v)
                 for k, v in sorted(self.failed.items(), key=str)]
        if self.uncertain:
            rows.append(("uncertain (in flight at a crash, not resent)", self.uncertain))
        if self.coupons or self.coupon_refused:
            rows.append(("coupons issued", self.coupons))
            rows += [(f"  coupon refused: {k}", v) for k, v in sorted(self.coupon_refused.items())]
        if self.refreshed:
            rows.append(("members refreshed", self.refreshed))
        rows += [(f"delivery: {k}", v) for k, v in sorted(self.delivery.items()) if v]
        rows += [(label, v) for label, v in (
            ("staff reminded", self.reminded),
            ("uncertain: adopted (found in WeCom, not resent)", self.adopted),
            ("uncertain: resent once (not found in WeCom)", self.resent),
            ("tags marked", self.tagged), ("customers moved to their new owner", self.moved),
            ("waiting for a new owner", self.waiting)) if v]
        return [head, *self._table(rows)]

    CLEANED = (("points_expired", "points expired"), ("coupons_expired", "coupons expired"),
               ("stock_returned", "coupon stock returned (回流)"),
               ("tiers_lowered", "tiers lowered"), ("tiers_raised", "tiers raised"),
               ("grace_started", "grace periods started"), ("grace_ended", "grace periods ended"),
               ("segments_changed", "RFM segments changed"))

    def _cleaning(self) -> list[tuple[str, Any]]:
        if self.dry_run:
            return [("members to look at", self.due)]
        rows: list[tuple[str, Any]] = [("members looked at", self.due),
                                       ("members refreshed", self.refreshed)]
        rows += [(label, self.cleaned[k]) for k, label in self.CLEANED]
        rows.append(("failed", sum(self.failed.values())))
        rows += [(f"  {k}", v) for k, v in sorted(self.failed.items(), key=str)]
        return rows

    def _table(self, rows: list[tuple[str, Any]]) -> list[str]:
        width = max(len(k) for k, _ in rows)
        return [f"  {k:<{width}}  {v}" for k, v in rows] + \
            [f"  {'time':<{width}}  {self.seconds:.2f} s"]

    def not_rendered(self) -> list[str]:
        """The reasons of the pushes that failed because their message did not render."""
        return [k for k in self.failed if str(k).startswith(NOT_RENDERED)]

    def previews(self) -> list[str]:
        """The sample messages of a dry run with whom they are for (masked)."""
        out: list[str] = []
        for i, s in enumerate(sorted(self.samples, key=lambda s: s["member"]), 1):
            out.append(f"--- {i}/{len(self.samples)} member {s['member']} ({s['tier']}), "
                       f"phone {s['phone']}: {s['via']}")
            out += s["text"].splitlines()
        return out

    def result(self) -> dict[str, int]:
        """The figures of the run that are not zero, in the order of :meth:`lines`: what
        the admin job table shows as the last result."""
        out = {"due": self.due, "already": self.already, "enqueued": self.enqueued,
               "sent": self.sent, "skipped": sum(self.skipped.values()),
               "held": sum(self.held.values()), "unreachable": self.unreachable,
               "failed": sum(self.failed.values()), "uncertain": self.uncertain,
               "coupons": self.coupons, "refreshed": self.refreshed,
               **{k: v for k, v in self.cleaned.items()},
               **{f"delivery_{k}": v for k, v in self.delivery.items()},
               "reminded": self.reminded, "adopted": self.adopted, "resent": self.resent,
               "tagged": self.tagged, "moved": self.moved, "waiting": self.waiting}
        return {k: v for k, v in out.items() if v or k == "due"}

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "now": self.now.isoformat(), "dry_run": self.dry_run,
                "due": self.due, "already": self.already, "enqueued": self.enqueued,
                "sent": self.sent, "unreachable": self.unreachable, "uncertain": self.uncertain,
                "skipped": dict(self.skipped), "held": dict(self.held),
                "failed": {str(k): v for k, v in self.failed.items()},
                "would_send": dict(self.would_send), "refreshed": self.refreshed,
                "delivery": dict(self.delivery), "reminded": self.reminded,
                "adopted": self.adopted, "resent": self.resent, "tagged": self.tagged,
                "moved": self.moved, "waiting": self.waiting,
                "seconds": round(self.seconds, 3)}


def last_run(raw: str | None) -> tuple[str, dict[str, Any]]:
    """When a job last ran and what it did, from its ``keys.job_last`` record (JSON
    ``{"at": ..., <figure>: n}``; a bare string is the time alone)."""
    if not raw:
        return "", {}
    try:
        info = json.loads(raw)
    except ValueError:
        return raw, {}
    if not isinstance(info, dict):
        return str(info), {}
    info = dict(info)
    return str(info.pop("at", "")), info


class Progress:
    """Progress callbacks (the CLI draws a bar; elsewhere nothing)."""

    def start(self, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


T = TypeVar("T")


async def each_wecom_call(items: Iterable[T], call: Callable[[T], Awaitable[Any]], *,
                          summary: Summary, progress: Progress, log: logging.Logger,
                          what: str, not_done: Callable[[T], str]) -> bool:
    """``call(item)`` for each of ``items``, a progress step each. A WeCom configuration
    error or rate limit stops the pass (held; returns False); any other WeCom error fails
    that item only (counted by errcode, logged as ``not_done(item)``)."""
    for item in items:
        try:
            await call(item)
        except (WeComConfigError, WeComRateLimited) as e:
            summary.held_by_wecom(e)
            log.warning("%s stopped: %s", what, e)
            return False
        except WeComError as e:  # this item only; the others go on
            summary.failed[e.errcode] += 1
            log.warning("%s: %s", not_done(item), e)
        progress.advance()
    return True


async def all_of(coros: Iterable[Coroutine]) -> None:
    """Run ``coros`` together; the first failure cancels the others and is raised as itself
    (not in an ExceptionGroup), so a store outage reads as one."""
    try:
        async with asyncio.TaskGroup() as tg:
            for c in coros:
                tg.create_task(c)
    except BaseExceptionGroup as eg:
        first: BaseException = eg
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


async def ranged(reads: Indexes, index: str, lo: int, hi: int) -> list[str]:
    """Member ids whose integer ``index`` lies in [lo, hi], read page by page."""
    out: list[str] = []
    after = ""
    while True:
        rows = await reads.range(index, lo, hi, after=after, limit=PAGE)
        out.extend(r[0] for r in rows)
        if len(rows) < PAGE:
            return out
        after = rows[-1][0]


async def tagged(reads: Indexes, index: str, value: str) -> list[str]:
    out: list[str] = []
    after = ""
    while True:
        rows = await reads.tagged(index, value, after=after, limit=PAGE)
        out.extend(rows)
        if len(rows) < PAGE:
            return out
        after = rows[-1]


async def on_days(reads: Indexes, index: str, now: datetime, rules: Rules,
                  offsets: Iterable[int]) -> list[str]:
    """Members whose day ``index`` is exactly ``offset`` days from today, for each offset
    (30 and 7 days ahead; 30 days ago): a job reads only the members due that day."""
    today = local_day(now, rules.tz)
    ids: list[str] = []
    for days in offsets:
        n = day_num(today + timedelta(days=days))
        ids += await ranged(reads, index, n, n)
    return unique(ids)


async def within(reads: Indexes, index: str, now: datetime, rules: Rules, lo: int,
                 hi: int) -> list[str]:
    """Members whose day ``index`` lies ``lo``..``hi`` days from today (negative: ago): a
    job's window, so that a day without a run loses nothing (the period de-duplicates)."""
    today = local_day(now, rules.tz)
    return await ranged(reads, index, day_num(today + timedelta(days=lo)),
                        day_num(today + timedelta(days=hi)))


def stage(left: int, days: Iterable[int]) -> int | None:
    """Which of the warnings ``days`` ahead (30 and 7) is current ``left`` days before a
    deadline: the nearest one not yet passed (``None`` past the deadline or before the
    first). A warning whose moment has passed is superseded by the next."""
    if left < 0:
        return None
    ahead = [d for d in days if left <= d]
    return min(ahead) if ahead else None


def first_open(kind: str, m: Member, dues: Iterable[Due]) -> Due | None:
    """The first of ``dues`` (in order of preference) not yet marked on the member; when
    every one is, the first (it reads "already done"); ``None`` when nothing is due."""
    dues = list(dues)
    for d in dues:
        if f"{kind}:{d.period}" not in m.pushes:
            return d
    return dues[0] if dues else None


def unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def message_context(kind: str, facts: dict[str, Any], m: Member, rules: Rules) -> dict:
    tier = rules.tier(m.tier)
    return {"coupon": None, **facts, "kind": kind, "tier": tier.key, "tier_name": tier.name,
            "benefits": list(tier.benefits), "member_code": m.member_code,
            "tier_names": {t.key: t.name for t in rules.tiers},
            "tier_benefits": {t.key: list(t.benefits) for t in rules.tiers}}


def render_push(kind: str, facts: dict[str, Any], m: Member, rules: Rules,
                variant: Variant | None = None) -> str:
    """The text of a lifecycle message: ``bot/templates/lifecycle/<kind>.j2``, or an A/B
    test variant's template or text."""
    ctx = message_context(kind, facts, m, rules)
    if variant is not None and variant.text:
        return render_source(variant.text, **ctx)
    name = variant.template if variant is not None and variant.template else None
    return render(name or f"lifecycle/{kind}.j2", **ctx)


SAMPLE_COUPON = {"name": "示例券", "label": "满100减10", "code": "SAMPLE0001",
                 "valid_until": "2026-01-31"}


def route(m: Member, env: Context) -> tuple[str, str, str] | None:
    """How a member is reached: ("wecom", sender staff, external_userid), else ("oa", "",
    openid) when the template fallback is configured, else None (unreachable). Never from
    an owner who left (see :func:`waits_for_owner`)."""
    if env.wecom is not None and m.external_userid and not m.owner_left:
        owner = m.owner_userid or (m.follow_users[0] if m.follow_users else None)
        if owner:
            return "wecom", owner, m.external_userid
    if env.oa_template and m.openid and m.followed:
        return "oa", "", m.openid
    return None


def waits_for_owner(m: Member, env: Context) -> bool:
    """The member's WeCom pushes wait for a new owner: a handover is pending, or its owner
    left the company (change_contact delete_user). Held, never failed or skipped; sent from
    the new owner."""
    return env.wecom is not None and m.awaits_owner


def coupon_facts(res: dict[str, Any], rules: Rules) -> dict[str, Any]:
    until = datetime.fromtimestamp(res["valid_until"], rules.tz)
    return {"name": res["name"], "label": res["label"], "code": res["code"],
            "valid_until": local_day(until, rules.tz).isoformat()}
