"""Delivery of the outbox, exactly once: rows pending → sending → sent | failed | unreachable
| skipped | uncertain.

A batch is one ``add_msg_template`` call (one staff sender, one text, ≤ 10,000 contacts) or
one OA template message. Its record in the store's kv (``keys.push_batch``) moves claimed →
calling → done | failed | reverted | uncertain, each move a compare-and-set, and its rows move
pending → sending (compare-and-set, so two senders never claim one row) before the call and to
their final state after. A sender that dies leaves rows ``sending``; once the batch's lease has
passed, the next sender resolves them from the record: never called → pending again; called
with no answer recorded → ``uncertain``, never blindly resent; answered → the recorded msgid
and fail_list (checked with get_groupmsg_send_result).

Held, not dropped: quiet hours (the rules' push.quiet_start to quiet_end), a rate limit still
on after backing off, a configuration error (40001), WeCom unreachable, WeCom's per-customer
limit, a member waiting for a new owner (handover pending, owner left). Those rows stay
pending for the next run. A row of a kind ``push.targets`` restricts, for a member out of
the target, is skipped (``out_of_target``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import date, datetime, timedelta
from typing import Any

import aiohttp
import orjson

from storage import OutboxRow

from .. import keys
from ..channels.wecom import (
    CONFIG_ERRORS,
    MAX_RECIPIENTS,
    WeComConfigError,
    WeComError,
    WeComRateLimited,
)
from ..context import Context
from ..metrics import PUSHES
from ..rules.config import send_limit
from ..rules.targets import in_target
from .base import Job, Progress, Summary, all_of, render_push, route, waits_for_owner
from .schedule import Every, Schedule, in_quiet_hours

log = logging.getLogger("memberbot.outbox")

KIND = "outbox"
TITLE = "投递（含 tier_upgrade 与被暂缓的消息）"
PAGE = 10_000
BATCH_TTL = 7 * 86400
SEND_COUNT_TTL = 32 * 86400  # longer than any period of WeCom's per-customer limit
OA_RATE_LIMITED = (45009, 45033, 45047)
FINAL_FROM = ("sending", "uncertain")


def schedule(rules: Any) -> Schedule:
    return Every(60)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _kind(row_id: str) -> str:
    return row_id.split("|")[1] if row_id.count("|") >= 2 else "?"


async def _final(env: Context, row_id: str, status: str, data: dict, summary: Summary,
                 expect: tuple[str, ...]) -> int:
    """Move a row to a final state from one of ``expect``; count it when this call did."""
    for exp in expect:
        if await env.members.move_row(row_id, status, data, expect=exp):
            break
    else:
        return 0
    if status in ("sent", "created"):
        summary.sent += 1
    elif status == "failed":
        summary.failed[data.get("error", "?")] += 1
    elif status == "unreachable":
        summary.unreachable += 1
    elif status == "skipped":
        summary.skipped[data.get("reason", "?")] += 1
    elif status == "uncertain":
        summary.uncertain += 1
    PUSHES.labels(_kind(row_id), status).inc()
    return 1


async def _pending(env: Context, kinds: list[str] | None, held: dict[str, str]) -> list[OutboxRow]:
    if kinds:
        rows = [r for k in kinds for r in await env.members.outbox_rows(status="pending", kind=k,
                                                                        limit=PAGE)]
    else:
        rows = await env.members.outbox_rows(status="pending", limit=PAGE)
    return [r for r in rows if r.id not in held]


def _text(row: OutboxRow, m: Any, env: Context) -> str:
    # scheduled kinds were rendered when enqueued; tier_upgrade rows carry only the facts
    return row.data.get("text") or render_push(row.kind, row.data.get("facts", row.data), m,
                                               env.rules)


# -- resolving what a dead sender left ----------------------------------------------------------
async def _revert(env: Context, row_ids: Any) -> None:
    for rid in row_ids:
        for exp in FINAL_FROM:
            if await env.members.move_row(rid, "pending", expect=exp):
                break


async def _confirm(env: Context, rec: dict) -> dict:
    """A batch answered before its sender died: ask WeCom who is in the task."""
    if rec["channel"] != "wecom" or not rec.get("msgid") or env.wecom is None:
        return rec
    try:
        sent = await env.wecom.get_groupmsg_send_result(rec["msgid"], rec["sender"])
    except WeComError as e:
        log.warning("cannot confirm batch %s (%s): using its recorded fail_list", rec["msgid"], e)
        return rec
    listed = {s.get("external_userid") for s in sent}
    fail = set(rec["fail_list"]) | {t for t in rec["rows"].values() if t not in listed}
    return {**rec, "fail_list": sorted(fail)}


def task_data(rec: dict, to: str, created_at: float) -> dict:
    """What a row created in a WeCom task keeps for its confirmation (bot.jobs.confirm)."""
    return {"msgid": rec.get("msgid", ""), "channel": "wecom", "sender": rec["sender"],
            "to": to, "created_at": int(created_at)}


async def _apply_done(env: Context, rec: dict, summary: Summary) -> int:
    """A batch WeCom (or the OA) answered: its rows are ``created`` (a WeCom task, confirmed
    later by the staff member) or ``sent`` (an OA template message), or failed."""
    fail = set(rec["fail_list"])
    bad = {"error": "fail_list", "msgid": rec.get("msgid", ""), "channel": rec["channel"]}
    at = rec.get("called_at") or env.wall()

    def ok(t: str) -> tuple[str, dict]:
        if rec["channel"] == "wecom":
            return "created", task_data(rec, t, at)
        return "sent", {"msgid": rec.get("msgid", ""), "channel": rec["channel"]}

    done = await asyncio.gather(*(
        _final(env, rid, *(("failed", bad) if t in fail else ok(t)), summary, FINAL_FROM)
        for rid, t in rec["rows"].items()))
    return sum(done)


async def resolve(env: Context, summary: Summary) -> None:
    """Settle rows left ``sending`` by a sender that is gone (its batch's lease passed)."""
    batches: dict[str, list[OutboxRow]] = {}
    for row in await env.members.outbox_rows(status="sending", limit=PAGE):
        batches.setdefault(str(row.data.get("batch", "")), []).append(row)
    for bid, rows in batches.items():
        key = keys.push_batch(bid)
        raw = await env.members.cached(key) if bid else None
        rec = orjson.loads(raw) if raw else None
        if rec is None:
            for row in rows:
                await _final(env, row.id, "uncertain", {"reason": "no batch record"}, summary,
                             ("sending",))
            continue
        state = rec["state"]
        if state == "done":
            await _apply_done(env, await _confirm(env, rec), summary)
        elif state in ("claimed", "calling") and rec["deadline"] > env.wall():
            summary.held["in_flight"] += len(rows)  # its sender may still be at work
        elif state == "claimed":  # died before calling: nothing went out
            if await env.members.cache(key, _dumps({**rec, "state": "reverted"}), ttl=BATCH_TTL,
                                       expect=raw):
                await _revert(env, [r.id for r in rows])
        elif state == "calling":  # died during the call: it may have gone out, never resend
            if await env.members.cache(key, _dumps({**rec, "state": "uncertain"}),
                                       ttl=BATCH_TTL, expect=raw):
                log.warning("batch %s was in flight when its sender died: %d rows uncertain",
                            bid, len(rows))
                for row in rows:
                    await _final(env, row.id, "uncertain", {"reason": "in flight at a crash"},
                                 summary, ("sending",))
        elif state == "reverted":
            await _revert(env, [r.id for r in rows])
        else:  # failed, uncertain: finish what the sender began
            status = "failed" if state == "failed" else "uncertain"
            for row in rows:
                await _final(env, row.id, status, {"error": rec.get("error", "?")}, summary,
                             ("sending",))


# -- sending ---------------------------------------------------------------------------------
def _classify(e: Exception, env: Context) -> tuple[str, Any]:
    """("revert", reason): certainly not sent, keep pending; ("failed", errcode);
    ("uncertain", errcode): it may have gone out. Anything else is a bug and propagates."""
    if isinstance(e, WeComConfigError):
        return "revert", "config"
    if isinstance(e, WeComRateLimited):
        return "revert", "rate_limit"
    if isinstance(e, WeComError):
        if e.maybe_sent:
            return "uncertain", e.errcode
        return ("revert", "unavailable") if e.errcode == -1 else ("failed", e.errcode)
    code = getattr(e, "errcode", None)  # the OA client's WeChatAPIError
    if isinstance(code, int):
        if code in CONFIG_ERRORS or code == -1:
            env.problems["wechat_template"] = (
                f"OA template messages refused (errcode {code}): check WECHAT_APPID, "
                "WECHAT_APPSECRET and WECHAT_TEMPLATE_ID")
            log.error("%s", env.problems["wechat_template"])
            return "revert", "config"
        return ("revert", "rate_limit") if code in OA_RATE_LIMITED else ("failed", code)
    if isinstance(e, aiohttp.ClientConnectorError):
        return "revert", "unavailable"
    if isinstance(e, aiohttp.ClientError | asyncio.TimeoutError | orjson.JSONDecodeError):
        return "uncertain", -1
    raise e


async def _call(env: Context, channel: str, sender: str, targets: list[str], text: str) -> dict:
    if channel == "wecom":
        return await env.wecom.add_msg_template(sender, targets, text)
    res = await env.oa.send_template(targets[0], env.oa_template, {"content": {"value": text}})
    return {"msgid": str(res.get("msgid", "")), "fail_list": []}


async def _send_batch(env: Context, channel: str, sender: str, text: str,
                      items: list[tuple[OutboxRow, str]], summary: Summary,
                      stopped: dict[str, str], held: dict[str, str]) -> int:
    if channel in stopped:
        held.update((row.id, stopped[channel]) for row, _ in items)
        return 0
    key = keys.push_batch(secrets.token_hex(8))
    bid = key.rsplit(":", 1)[1]
    rec = {"sid": env.sid, "channel": channel, "sender": sender, "state": "claimed",
           "deadline": env.wall() + env.lease, "rows": {row.id: t for row, t in items},
           "text": text}
    raw = _dumps(rec)
    await env.members.cache(key, raw, ttl=BATCH_TTL)
    oks = await asyncio.gather(*(env.members.move_row(row.id, "sending", {"batch": bid},
                                                      expect="pending") for row, _ in items))
    mine = {row.id: t for (row, t), ok in zip(items, oks, strict=True) if ok}
    if not mine:
        await env.members.forget(key, expect=raw)
        return 0
    rec = {**rec, "rows": mine, "state": "calling", "called_at": int(env.wall())}
    if not await env.members.cache(key, _dumps(rec), ttl=BATCH_TTL, expect=raw):
        return 0  # a resolver took the batch over (we outlived the lease): it was never called
    raw = _dumps(rec)
    try:
        res = await _call(env, channel, sender, list(mine.values()), text)
    except Exception as e:  # classified; a bug is re-raised by _classify
        verdict, detail = _classify(e, env)
        state = {"revert": "reverted", "failed": "failed", "uncertain": "uncertain"}[verdict]
        new = _dumps({**rec, "state": state, "error": detail})
        if not await env.members.cache(key, new, ttl=BATCH_TTL, expect=raw):
            await env.members.cache(key, new, ttl=BATCH_TTL)  # we know better than a resolver
        if verdict == "revert":
            log.warning("%s batch not sent (%s): kept pending", channel, detail)
            stopped[channel] = detail
            if detail == "rate_limit" and env.wecom is not None:
                cap = env.wecom.backoff.cap
                await env.members.cache(keys.OUTBOX_PAUSED, str(env.wall() + cap), ttl=cap)
            await _revert(env, mine)
            held.update((rid, detail) for rid in mine)
            return 0
        status = "failed" if verdict == "failed" else "uncertain"
        return sum([await _final(env, rid, status, {"error": detail}, summary, FINAL_FROM)
                    for rid in mine])
    if channel == "oa":
        env.problems.pop("wechat_template", None)
    done = {**rec, "state": "done", "msgid": res.get("msgid", ""),
            "fail_list": list(res.get("fail_list") or [])}
    if not await env.members.cache(key, _dumps(done), ttl=BATCH_TTL, expect=raw):
        await env.members.cache(key, _dumps(done), ttl=BATCH_TTL)
    return await _apply_done(env, done, summary)


def stale(row: OutboxRow, today: date) -> bool:
    """A scheduled push held too long says something no longer true: past the last day it
    may go out (``until``, set when enqueued from the job's ``hold_days`` and what the
    message is about: the member-day coupon is valid that day only; most kinds may wait one
    night of quiet hours, not longer). Rows enqueued without ``until`` may wait one night."""
    until = row.data.get("until")
    if until:
        return today > date.fromisoformat(until)
    day = row.data.get("day")
    return bool(day) and date.fromisoformat(day) < today - timedelta(days=1)


async def _within_limit(env: Context, external_userid: str, today: date) -> bool:
    """Reserve one of the customer's group messages in WeCom's limit for the period (rules
    ``wecom.send_limit``), or say it is used up. A reservation whose batch is not sent stays
    counted: the limit may hold a push too many, never send one WeCom would refuse."""
    period, limit = send_limit(env.rules, today)
    key = keys.wecom_sends(external_userid, period)
    for _ in range(20):
        raw = await env.members.cached(key)
        n = int(raw or 0)
        if n >= limit:
            return False
        if raw is None:
            ok = await env.members.cache(key, "1", ttl=SEND_COUNT_TTL, only_new=True)
        else:
            ok = await env.members.cache(key, str(n + 1), ttl=SEND_COUNT_TTL, expect=raw)
        if ok:
            return True
    return False


async def _plan(env: Context, rows: list[OutboxRow], summary: Summary, stopped: dict[str, str],
                held: dict[str, str], now: datetime
                ) -> tuple[dict[tuple[str, str, str], list], int]:
    """Group rows by (channel, sender, text); settle those that cannot be sent."""
    groups: dict[tuple[str, str, str], list[tuple[OutboxRow, str]]] = {}
    done = 0
    today = now.astimezone(env.rules.tz).date()
    for row in rows:
        m = await env.members.get(row.member_id)
        if stale(row, today):
            done += await _final(env, row.id, "skipped", {"reason": "stale"}, summary,
                                 ("pending",))
        elif m is None:
            done += await _final(env, row.id, "failed", {"error": "member_gone"}, summary,
                                 ("pending",))
        elif m.opted_out:  # 退订 after the push was enqueued
            done += await _final(env, row.id, "skipped", {"reason": "opt_out"}, summary,
                                 ("pending",))
        elif not in_target(env.rules.push, row.kind, m):  # push.targets of its kind
            done += await _final(env, row.id, "skipped", {"reason": "out_of_target"},
                                 summary, ("pending",))
        elif waits_for_owner(m, env):
            held[row.id] = "no_owner"  # handover pending or owner left: the new owner sends
        elif (r := route(m, env)) is None:
            done += await _final(env, row.id, "unreachable", {}, summary, ("pending",))
        elif r[0] in stopped:
            held[row.id] = stopped[r[0]]
        elif r[0] == "wecom" and not await _within_limit(env, r[2], today):
            held[row.id] = "send_limit"  # kept pending: WeCom would refuse it this period
        else:
            groups.setdefault((r[0], r[1], _text(row, m, env)), []).append((row, r[2]))
    return groups, done


async def deliver(env: Context, now: datetime, *, kinds: list[str] | None = None,
                  summary: Summary | None = None) -> Summary:
    """Send what is pending (of ``kinds``, or all), as of ``now`` for quiet hours."""
    summary = summary or Summary(KIND, now, quiet_end=env.rules.push["quiet_end"])
    await resolve(env, summary)
    held: dict[str, str] = {}
    p = env.rules.push
    if in_quiet_hours(now, env.rules.tz, p["quiet_start"], p["quiet_end"]):
        summary.held["quiet"] += len(await _pending(env, kinds, held))
        return summary
    stopped: dict[str, str] = {}
    paused = await env.members.cached(keys.OUTBOX_PAUSED)
    if paused and float(paused) > env.wall():
        stopped["wecom"] = "rate_limit"
    sem = asyncio.Semaphore(env.concurrency)
    while rows := await _pending(env, kinds, held):
        groups, done = await _plan(env, rows, summary, stopped, held, now)
        results: list[int] = []

        async def one(batch: tuple, results: list[int] = results) -> None:
            async with sem:
                results.append(await _send_batch(env, *batch, summary, stopped, held))

        await all_of(one((channel, sender, text, items[i:i + size]))
                     for (channel, sender, text), items in groups.items()
                     for size in [MAX_RECIPIENTS if channel == "wecom" else 1]
                     for i in range(0, len(items), size))
        if done + sum(results) == 0:
            break
    for reason in held.values():
        summary.held[reason] += 1
    return summary


async def preview(env: Context, now: datetime, kinds: list[str] | None, summary: Summary) -> None:
    """Dry run: what delivering now would do, rendering each text; writes nothing."""
    p = env.rules.push
    quiet = in_quiet_hours(now, env.rules.tz, p["quiet_start"], p["quiet_end"])
    for row in await _pending(env, kinds, {}):
        summary.due += 1
        m = await env.members.get(row.member_id)
        if m is None:
            summary.failed["member_gone"] += 1
            continue
        _text(row, m, env)
        if m.opted_out:
            summary.skipped["opt_out"] += 1
        elif not in_target(env.rules.push, row.kind, m):
            summary.skipped["out_of_target"] += 1
        elif waits_for_owner(m, env):
            summary.held["no_owner"] += 1
        elif (r := route(m, env)) is None:
            summary.unreachable += 1
        elif quiet:
            summary.held["quiet"] += 1
        else:
            summary.would_send[r[0]] += 1


async def run(env: Context, now: datetime, *, dry_run: bool, summary: Summary,
              progress: Progress) -> None:
    """``memberbot jobs run outbox``: deliver everything pending (and settle a crash)."""
    if dry_run:
        await preview(env, now, None, summary)
    else:
        await deliver(env, now, summary=summary)


JOB = Job(KIND, TITLE, schedule, run=run)
