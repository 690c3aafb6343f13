"""Running a push job: find who is due, decide (opt-out, daily cap by priority), issue the
coupon, then mark and enqueue in one store update under ``push:<member>:<kind>:<period>``,
and deliver what was enqueued.

The mark (``member.pushes`` and ``member.push_days``) and the outbox row are one commit, so a
crash never loses or doubles a push: a rerun finds the mark (or the key) and moves on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from .. import keys
from ..context import Context
from ..masking import mask_code, mask_phone
from ..metrics import JOB_SECONDS
from ..rules import experiments
from ..rules.config import Rules
from ..rules.coupons import window_end
from ..rules.experiments import HOLDOUT
from ..rules.models import Entry, Member, Refusal
from ..rules.targets import in_target
from ..rules.timeutil import local_day, ts
from ..templating import describe_failure
from .base import (
    NOT_RENDERED,
    Due,
    Job,
    Progress,
    Summary,
    all_of,
    coupon_facts,
    render_push,
    route,
    waits_for_owner,
)
from .outbox import deliver
from .registry import job, priority
from .schedule import in_quiet_hours

log = logging.getLogger("memberbot.jobs")

CHUNK = 256
STEPS_IN_FLIGHT = 32
KEEP_MARKS_DAYS = 400  # longer than any period (a year for birthdays)
KEEP_DAYS = 7


def sent_today(m: Member, day: str) -> list[str]:
    return [k for k in m.push_days.get(day, "").split(",") if k]


def decide(mod: Job, m: Member, now: datetime, rules: Rules) -> tuple[str, Due | None]:
    """Pure: "not_due", "already", "out_of_target", "opt_out", "cap" or "ok", and what is
    due. ``out_of_target``: the rules' ``push.targets`` restricts the kind to tiers or
    segments the member is not in (no coupon, no mark: it is not the member's push).

    The daily cap counts pushes already marked today and the higher-priority kinds that are
    due today too (their jobs may run later in the day), so the cap keeps the most important
    push whatever order the jobs run in."""
    d = mod.due(m, now, rules)
    if d is None:
        return "not_due", None
    if f"{mod.kind}:{d.period}" in m.pushes:
        return "already", d
    if not in_target(rules.push, mod.kind, m):
        return "out_of_target", d
    if m.opted_out:
        return "opt_out", d
    prio = priority(rules)
    if mod.kind in prio:
        today = sent_today(m, local_day(now, rules.tz).isoformat())
        higher = 0
        for k in prio[:prio.index(mod.kind)]:
            if k in today:
                continue
            dk = job(k).due(m, now, rules)
            if dk is not None and f"{k}:{dk.period}" not in m.pushes \
                    and in_target(rules.push, k, m):
                higher += 1
        if len(today) + higher >= rules.push["daily_cap"]:
            return "cap", d
    return "ok", d


def mark(mod: Job, now: datetime, rules: Rules, period: str, data: dict[str, Any],
         arm: dict[str, str] | None = None):
    """The store step body: decide again on the fresh member, then mark and enqueue. In an
    A/B test (``arm``: experiment and variant) a holdout member is marked but not pushed."""

    def body(m: Member) -> tuple[dict, list[Entry], list[dict]]:
        status, d = decide(mod, m, now, rules)
        at = ts(now)
        key = keys.push(m.id, mod.kind, period)
        if status == "ok" and d.period != period:
            status = "changed"
        if status != "ok":
            skip = [Entry("push_skip", at, ref=key, data={"kind": mod.kind, "period": period,
                                                           "reason": status})]
            return {"status": status}, skip if status in ("cap", "opt_out") else [], []
        day = local_day(now, rules.tz).isoformat()
        m.pushes = {k: v for k, v in m.pushes.items() if v >= at - KEEP_MARKS_DAYS * 86400}
        m.pushes[f"{mod.kind}:{period}"] = at
        info = {"kind": mod.kind, "period": period, **(arm or {})}
        if arm is not None and arm["variant"] == HOLDOUT:
            # no message and no place in the daily cap: the experiment's baseline
            return {"status": "holdout"}, [Entry("push_holdout", at, ref=key, data=info)], []
        oldest = (local_day(now, rules.tz) - timedelta(days=KEEP_DAYS)).isoformat()
        m.push_days = {k: v for k, v in m.push_days.items() if k >= oldest}
        m.push_days[day] = ",".join([*sent_today(m, day), mod.kind])
        return ({"status": "enqueued", "period": period},
                [Entry("push", at, ref=key, data=info)],
                [{"kind": mod.kind, "period": period, "data": {**data, **(arm or {})}}])

    return body


async def _coupon(env: Context, mid: str, template: str, period: str, now: datetime,
                  summary: Summary) -> dict | None:
    try:
        res = await env.members.issue_coupon(mid, template, keys.coupon(mid, template, period),
                                             now)
    except Refusal as e:
        summary.coupon_refused[e.code] += 1
        return None
    summary.coupons += 1
    return coupon_facts(res, env.rules)


def _preview_coupon(template: str, now: datetime, rules: Rules) -> dict | None:
    tpl = rules.coupons.get(template)
    if tpl is None:
        return None
    return {"name": tpl.name, "label": tpl.label(), "code": "(dry run)",
            "valid_until": local_day(window_end(tpl, now, rules), rules.tz).isoformat()}


def _render(mod: Job, facts: dict[str, Any], m: Member, rules: Rules,
            exp: experiments.Experiment | None, arm: dict[str, str] | None,
            summary: Summary) -> str | None:
    """The member's message, or None when it does not render (an A/B variant's template
    gone or failing on this member's facts): that push fails with the reason counted and
    logged once per run; the job goes on with the other members."""
    variant = experiments.variant(exp, arm["variant"]) if exp and arm else None
    try:
        return render_push(mod.kind, facts, m, rules, variant)
    except Exception as e:  # whatever a template raises: one member's push, not the run
        which = f"{exp.name}/{arm['variant']}" if exp and arm else mod.kind
        reason = f"{NOT_RENDERED} ({which}): {describe_failure(e)}"
        summary.failed[reason] += 1
        if summary.failed[reason] == 1:
            log.warning("%s: %s", mod.kind, reason)
        return None


async def _one(env: Context, mod: Job, mid: str, now: datetime, dry_run: bool,
               summary: Summary, quiet: bool) -> None:
    m = await env.members.get(mid)
    if m is None:
        return
    env.members.normalise(m, now)  # a copy: expired lots and coupons, tier, as of now
    status, d = decide(mod, m, now, env.rules)
    if status == "not_due":
        return
    summary.due += 1
    if status == "already":
        summary.already += 1
        return
    if status == "out_of_target":
        summary.skipped[status] += 1
        return
    exp = experiments.for_kind(env.rules.experiments, mod.kind)
    arm = {"experiment": exp.name, "variant": experiments.assign(exp, mid)} if exp else None
    held_out = arm is not None and arm["variant"] == HOLDOUT
    coupon = None
    if d.coupon and not held_out:  # a benefit: issued even when capped or opted out
        coupon = (_preview_coupon(d.coupon, now, env.rules) if dry_run else
                  await _coupon(env, mid, d.coupon, d.period, now, summary))
    facts = {**d.facts, "coupon": coupon}
    text = "" if held_out else _render(mod, facts, m, env.rules, exp, arm, summary)
    if text is None:
        return
    if dry_run:
        via = ""
        if status == "ok" and held_out:
            summary.skipped["holdout"] += 1
            via = f"held out ({exp.name})"
        elif status != "ok":
            summary.skipped[status] += 1
            via = f"not sent ({status})"
        elif waits_for_owner(m, env):
            summary.held["no_owner"] += 1
            via = "held: waiting for a new owner"
        elif (r := route(m, env)) is None:
            summary.unreachable += 1
            via = "unreachable"
        elif quiet:
            summary.held["quiet"] += 1
            via = "held until quiet hours end"
        else:
            summary.would_send[r[0]] += 1
            via = f"via {r[0]}"
        if len(summary.samples) < summary.show:
            summary.samples.append({"member": mask_code(m.member_code),
                                    "tier": env.rules.tier(m.tier).name,
                                    "phone": mask_phone(m.phone), "via": via, "text": text})
        return
    today = local_day(now, env.rules.tz)
    until = today + timedelta(days=mod.hold_days)
    if d.until is not None:
        until = min(until, d.until)
    data = {"facts": facts, "text": text, "day": today.isoformat(), "until": until.isoformat()}
    try:
        res = await env.members.run(mid, now, mark(mod, now, env.rules, d.period, data, arm),
                                    key=keys.push(mid, mod.kind, d.period))
    except Refusal:
        return
    if res["status"] == "enqueued":
        summary.enqueued += 1
    else:
        summary.skipped[res["status"]] += 1


async def run_push(env: Context, mod: Job, now: datetime, *, dry_run: bool,
                   summary: Summary, progress: Progress) -> None:
    ids = await mod.candidates(env.members, now, env.rules)
    summary.candidates = len(ids)
    progress.start(len(ids))
    p = env.rules.push
    quiet = in_quiet_hours(now, env.rules.tz, p["quiet_start"], p["quiet_end"])
    sem = asyncio.Semaphore(STEPS_IN_FLIGHT)

    async def one(mid: str) -> None:
        async with sem:
            await _one(env, mod, mid, now, dry_run, summary, quiet)

    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        await all_of(one(mid) for mid in chunk)
        progress.advance(len(chunk))
    if not dry_run:
        await deliver(env, now, kinds=[mod.kind], summary=summary)


async def run_kind(env: Context, kind: str, now: datetime, *, dry_run: bool = False,
                   progress: Progress | None = None, show: int = 0) -> Summary:
    """Run job ``kind`` as of ``now``: enqueue who is due and deliver it (a dry run renders
    and counts, and writes nothing; it keeps ``show`` rendered messages)."""
    mod = job(kind)
    summary = Summary(kind, now, dry_run, show=show if dry_run else 0,
                      quiet_end=env.rules.push["quiet_end"])
    progress = progress or Progress()
    t0 = time.perf_counter()
    if mod.push:
        await run_push(env, mod, now, dry_run=dry_run, summary=summary, progress=progress)
    else:
        await mod.run(env, now, dry_run=dry_run, summary=summary, progress=progress)
    summary.seconds = time.perf_counter() - t0
    if not dry_run:
        await record_run(env, summary)
    return summary


async def record_run(env: Context, summary: Summary) -> None:
    """The job's duration metric and its last run with what it did (``keys.job_last``, shown
    by ``jobs list`` and the admin job table)."""
    JOB_SECONDS.labels(summary.kind).observe(summary.seconds)
    ran = datetime.fromtimestamp(env.wall(), env.rules.tz)
    now = summary.now
    at = f"{ran:%Y-%m-%d %H:%M}" + (f" (as of {now:%Y-%m-%d})" if ran.date() != now.date()
                                     else "")
    await env.members.cache(keys.job_last(summary.kind),
                            json.dumps({"at": at, **summary.result()}, ensure_ascii=False),
                            ttl=400 * 86400)
