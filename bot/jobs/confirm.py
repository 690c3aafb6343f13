"""confirm (every 5 minutes): WeCom turns ``add_msg_template`` into a task the staff member
confirms in the app, so a push is only *created* when the call returns. This job polls every
task memberbot created (``get_groupmsg_task``, then ``get_groupmsg_send_result`` for the
sender, cursor-paged) until it is final or ``wecom.confirm_days`` old, and records per member
``confirmed`` (status 1), ``not_friend`` (2), ``received_other`` (3) or ``unconfirmed`` (still 0
at the end). Staff who have not confirmed after ``wecom.remind_after_minutes`` are reminded
with ``remind_groupmsg_send``: at most 3 times per task in any 24 hours (WeCom's own limit), the
reminders spaced by that delay; each reminder is claimed in the store first, so two runners
never remind twice.

Rows: ``created`` → ``confirmed`` | ``not_friend`` | ``received_other`` | ``unconfirmed``, each a
compare-and-set from ``created``, so each member is counted once.
"""

from __future__ import annotations

import logging
from datetime import datetime

import orjson

from storage import OutboxRow

from .. import keys
from ..context import Context
from ..metrics import PUSHES
from .base import Job, Progress, Summary, each_wecom_call
from .schedule import Every, Schedule

log = logging.getLogger("memberbot.confirm")

KIND = "confirm"
TITLE = "群发确认跟踪与提醒（企业微信）"
PAGE = 10_000
CREATED = "created"
BY_CODE = {1: "confirmed", 2: "not_friend", 3: "received_other"}
FINAL = ("confirmed", "not_friend", "received_other", "unconfirmed")
REMINDERS_PER_DAY = 3
STAFF_SENT = 2  # get_groupmsg_task: the staff member confirmed the task


def schedule(rules: object) -> Schedule:
    return Every(300)


def tasks(rows: list[OutboxRow]) -> dict[tuple[str, str], list[OutboxRow]]:
    """Rows awaiting confirmation by (msgid, sender)."""
    out: dict[tuple[str, str], list[OutboxRow]] = {}
    for r in rows:
        if r.data.get("msgid"):
            out.setdefault((str(r.data["msgid"]), str(r.data.get("sender", ""))), []).append(r)
    return out


async def _settle(env: Context, row: OutboxRow, status: str, summary: Summary) -> None:
    if await env.members.move_row(row.id, status, {"confirmed_at": int(env.wall())},
                                  expect=CREATED):
        summary.delivery[status] += 1
        PUSHES.labels(row.kind, status).inc()


async def _remind(env: Context, msgid: str, created: float, summary: Summary) -> None:
    """Remind the staff of ``msgid`` when the delay has passed since the task (or the last
    reminder) and fewer than 3 reminders were sent in the last 24 hours."""
    delay = env.rules.wecom["remind_after_minutes"] * 60
    wall = env.wall()
    key = keys.groupmsg_reminders(msgid)
    raw = await env.members.cached(key)
    sent = [float(t) for t in orjson.loads(raw)] if raw else []
    recent = [t for t in sent if t > wall - 86400]
    if len(recent) >= REMINDERS_PER_DAY or wall - max([created, *sent]) < delay:
        return
    new = orjson.dumps([*recent, wall]).decode()
    ttl = 86400 * (env.rules.wecom["confirm_days"] + 1)
    # claim the reminder first: of two runners only one writes over what it read
    claimed = (await env.members.cache(key, new, ttl=ttl, expect=raw) if raw else
               await env.members.cache(key, new, ttl=ttl, only_new=True))
    if not claimed:
        return
    await env.wecom.remind_groupmsg_send(msgid)
    summary.reminded += 1


async def poll(env: Context, msgid: str, sender: str, rows: list[OutboxRow],
               summary: Summary) -> None:
    """One task: settle the members WeCom has decided, and the rest once it is too old."""
    created = min(float(r.data.get("created_at") or r.created_at) for r in rows)
    final = env.wall() - created >= env.rules.wecom["confirm_days"] * 86400
    staff = await env.wecom.get_groupmsg_task(msgid)
    confirmed = any(t.get("status") == STAFF_SENT for t in staff
                    if t.get("userid") in (sender, None, ""))
    codes: dict[str, int] = {}
    if confirmed:
        for s in await env.wecom.get_groupmsg_send_result(msgid, sender):
            codes[str(s.get("external_userid", ""))] = int(s.get("status", 0) or 0)
    waiting = 0
    for row in rows:
        code = codes.get(str(row.data.get("to", "")), 0)
        if code in BY_CODE:
            await _settle(env, row, BY_CODE[code], summary)
        elif final:
            await _settle(env, row, "unconfirmed", summary)
        else:
            waiting += 1
    if waiting and not confirmed and not final:
        await _remind(env, msgid, created, summary)


async def run(env: Context, now: datetime, *, dry_run: bool, summary: Summary,
              progress: Progress) -> None:
    """Poll every task awaiting confirmation (a dry run counts them)."""
    open_tasks = tasks(await env.members.outbox_rows(status=CREATED, limit=PAGE))
    summary.candidates = summary.due = len(open_tasks)
    progress.start(len(open_tasks))
    if dry_run or env.wecom is None:
        progress.advance(len(open_tasks))
        return
    await each_wecom_call(
        open_tasks.items(), lambda task: poll(env, *task[0], task[1], summary),
        summary=summary, progress=progress, log=log, what="confirmation",
        not_done=lambda task: f"task {task[0][0]} not polled")

JOB = Job(KIND, TITLE, schedule, run=run)
