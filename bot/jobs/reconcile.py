"""reconcile (every 5 minutes): a batch that was in flight when its sender died (or timed out)
is ``uncertain``: WeCom may or may not have created its task. This job asks WeCom: the tasks
the batch's sender created since the call (``get_groupmsg_list_v2``: creator, a window of at
most a month, 100 a page) with the batch's text, whose recipients
(``get_groupmsg_send_result``) include the batch's members.

- found → its ``msgid`` is adopted (rows ``created``, confirmed by the ``confirm`` job) and
  nothing is resent; members of the batch the task does not list were refused (``failed``);
- not found ``wecom.reconcile_after_minutes`` after the call → WeCom never created it: the rows
  are pending again and resent **once** (``data.resent``); a resent row that ends uncertain
  again and is still not found is ``failed`` (``lost``). A push is never left undecided.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson

from storage import OutboxRow

from .. import keys
from ..context import Context
from .base import Job, Progress, Summary, each_wecom_call, route
from .outbox import _text, deliver, task_data
from .schedule import Every, Schedule

log = logging.getLogger("memberbot.reconcile")

KIND = "reconcile"
TITLE = "中断批次核对（企业微信）"
PAGE = 10_000
WINDOW = 30 * 86400  # get_groupmsg_list_v2 takes at most a month
EARLY = 120  # seconds before the recorded call time the task may carry (clock skew)


def schedule(rules: object) -> Schedule:
    return Every(300)


async def _batches(env: Context, rows: list[OutboxRow]) -> list[tuple[dict, list[OutboxRow]]]:
    """Each uncertain batch with what is known of it: sender, text, call time, targets (from
    its record; a row without one is rebuilt from its member)."""
    by_batch: dict[str, list[OutboxRow]] = {}
    for r in rows:
        by_batch.setdefault(str(r.data.get("batch", "")), []).append(r)
    out: list[tuple[dict, list[OutboxRow]]] = []
    for bid, group in by_batch.items():
        raw = await env.members.cached(keys.push_batch(bid)) if bid else None
        rec: dict[str, Any] | None = orjson.loads(raw) if raw else None
        if rec is not None and rec.get("channel") == "wecom" and rec.get("text"):
            info = {"sender": rec["sender"], "text": rec["text"], "rows": rec["rows"],
                    "called_at": rec.get("called_at") or min(r.created_at for r in group)}
            out.append((info, group))
            continue
        for r in group:  # no usable record: one row at a time, from its member
            m = await env.members.get(r.member_id)
            if m is None or (rt := route(m, env)) is None or rt[0] != "wecom":
                out.append(({"sender": "", "text": "", "rows": {}, "called_at": r.created_at},
                            [r]))
                continue
            out.append(({"sender": rt[1], "text": _text(r, m, env), "rows": {r.id: rt[2]},
                         "called_at": r.created_at}, [r]))
    return out


async def _find(env: Context, info: dict, known: set[str]) -> tuple[str, int, set[str]] | None:
    """The task WeCom created for the batch: (msgid, create_time, its recipients)."""
    start = int(info["called_at"]) - EARLY
    end = min(int(env.wall()), start + WINDOW)
    targets = set(info["rows"].values())
    for t in await env.wecom.get_groupmsg_list_v2(info["sender"], start, end):
        msgid = str(t.get("msgid", ""))
        if not msgid or msgid in known or (t.get("text") or {}).get("content") != info["text"]:
            continue
        listed = {str(s.get("external_userid")) for s in
                  await env.wecom.get_groupmsg_send_result(msgid, info["sender"])}
        if targets & listed:
            return msgid, int(t.get("create_time") or info["called_at"]), listed
    return None


async def _known_msgids(env: Context) -> set[str]:
    """Msgids of tasks awaiting confirmation: a task is adopted by one batch only."""
    return {str(r.data.get("msgid")) for r in await env.members.outbox_rows(status="created",
                                                                            limit=PAGE)}


async def reconcile(env: Context, info: dict, rows: list[OutboxRow], known: set[str],
                    summary: Summary) -> None:
    if info["sender"]:
        found = await _find(env, info, known)
    else:
        found = None
    if found is not None:
        msgid, created, listed = found
        known.add(msgid)
        rec = {"msgid": msgid, "sender": info["sender"]}
        for r in rows:
            to = info["rows"].get(r.id, "")
            if to in listed:
                if await env.members.move_row(r.id, "created", {**task_data(rec, to, created),
                                                                "adopted": True},
                                              expect="uncertain"):
                    summary.adopted += 1
            elif await env.members.move_row(r.id, "failed", {"error": "fail_list",
                                                             "msgid": msgid},
                                            expect="uncertain"):
                summary.failed["fail_list"] += 1
        return
    wait = env.rules.wecom["reconcile_after_minutes"] * 60
    if info["sender"] and env.wall() - float(info["called_at"]) < wait:
        summary.held["reconcile_wait"] += len(rows)  # WeCom may not list it yet
        return
    for r in rows:
        if r.data.get("resent"):  # resent once already and lost again: decided, not resent
            if await env.members.move_row(r.id, "failed", {"error": "lost"},
                                          expect="uncertain"):
                summary.failed["lost"] += 1
        elif await env.members.move_row(r.id, "pending", {"resent": 1, "batch": ""},
                                        expect="uncertain"):
            summary.resent += 1


async def run(env: Context, now: datetime, *, dry_run: bool, summary: Summary,
              progress: Progress) -> None:
    """Decide every uncertain batch, then deliver what is to be resent."""
    rows = await env.members.outbox_rows(status="uncertain", limit=PAGE)
    summary.candidates = summary.due = len(rows)
    if dry_run or env.wecom is None or not rows:
        return
    known = await _known_msgids(env)
    batches = await _batches(env, rows)
    progress.start(len(batches))
    if not await each_wecom_call(
            batches, lambda batch: reconcile(env, *batch, known, summary), summary=summary,
            progress=progress, log=log, what="reconciliation",
            not_done=lambda _batch: "an uncertain batch could not be reconciled"):
        return
    if summary.resent:
        await deliver(env, now, summary=summary)


JOB = Job(KIND, TITLE, schedule, run=run)
