"""Customer handover (在职继承 / 离职继承): a staff member's customers move to another.

``memberbot handover --from U1 --to U2 [--resigned]`` (:func:`start`) hands U1's customers
over with ``transfer_customer`` or ``resigned/transfer_customer`` (at most 100 a call; a
serving staff member's customers get ``transfer_success_msg``, from the template
``wecom/transfer_success.j2``) and marks each accepted member's handover as pending (index
``handover``). The ``handover`` job (every 5 minutes; the command also checks once at once)
asks ``transfer_result`` / ``resigned/transfer_result`` until each customer is decided: taken
over (status 1) → the owner moves to U2 on the member; refused, over the limit or no record
(3, 4, 5) → the handover ends and the member keeps what it had. While a handover is pending,
pushes to the member wait (held, not failed) and go out from the new owner afterwards.
The ``transfer_fail`` event of /wecom ends a handover at once (:meth:`Members.end_handover`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ..channels.wecom import MAX_TRANSFER, WeComError
from ..context import Context
from ..templating import render
from .base import Job, Progress, Summary, tagged
from .schedule import Every, Schedule

log = logging.getLogger("memberbot.handover")

KIND = "handover"
TITLE = "客户继承结果（企业微信）"
TAKEN_OVER, WAITING = 1, 2
REASONS = {3: "customer_refused", 4: "customer_limit_exceed", 5: "no_transfer"}


def schedule(rules: object) -> Schedule:
    return Every(300)


async def start(env: Context, frm: str, to: str, *, resigned: bool, now: datetime,
                summary: Summary) -> None:
    """Hand ``frm``'s customers over to ``to`` and mark them pending."""
    ids = await tagged(env.members, "owner", frm)
    members = [m for m in [await env.members.get(i) for i in ids]
               if m is not None and m.external_userid and m.owner_userid == frm]
    summary.candidates = summary.due = len(members)
    message = "" if resigned else render("wecom/transfer_success.j2", staff=to)
    for i in range(0, len(members), MAX_TRANSFER):
        chunk = members[i:i + MAX_TRANSFER]
        res = await env.wecom.transfer_customer(frm, to, [m.external_userid for m in chunk],
                                                resigned=resigned, message=message)
        codes = {str(c.get("external_userid")): int(c.get("errcode", 0) or 0) for c in res}
        for m in chunk:
            code = codes.get(m.external_userid, 0)
            if code:
                summary.failed[code] += 1
                continue
            await env.members.begin_handover(m.id, frm, to, resigned, now)
            summary.enqueued += 1


async def check(env: Context, now: datetime, summary: Summary) -> None:
    """Ask WeCom how every pending handover stands and settle the decided ones."""
    pending = [m for m in [await env.members.get(i) for i in
                           await tagged(env.members, "handover", "pending")]
               if m is not None and m.handover]
    summary.candidates = summary.due = summary.due or len(pending)
    pairs: dict[tuple[str, str, bool], list[Any]] = {}
    for m in pending:
        h = m.handover
        pairs.setdefault((h["from"], h["to"], bool(h.get("resigned"))), []).append(m)
    for (frm, to, resigned), members in pairs.items():
        try:
            result = await env.wecom.transfer_result(frm, to, resigned=resigned)
        except WeComError as e:
            summary.failed[e.errcode] += len(members)
            log.warning("transfer_result %s → %s failed: %s", frm, to, e)
            continue
        status = {str(c.get("external_userid")): int(c.get("status", 0) or 0) for c in result}
        for m in members:
            st = status.get(m.external_userid or "", WAITING)
            if st == WAITING:
                summary.waiting += 1
            elif st == TAKEN_OVER:
                await env.members.end_handover(m.id, to, now, taken_over=True)
                summary.moved += 1
            else:
                reason = REASONS.get(st, str(st))
                await env.members.end_handover(m.id, to, now, taken_over=False, reason=reason)
                summary.failed[reason] += 1


async def run(env: Context, now: datetime, *, dry_run: bool, summary: Summary,
              progress: Progress) -> None:
    if dry_run or env.wecom is None:
        summary.due = len(await tagged(env.members, "handover", "pending"))
        return
    await env.members.finish_departures(now)  # staff who left, their customers half marked
    await check(env, now, summary)


JOB = Job(KIND, TITLE, schedule, run=run)
