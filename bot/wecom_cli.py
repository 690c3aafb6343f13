"""WeCom operator commands: channel QR codes (``memberbot contact-way``) and customer handover
(``memberbot handover``)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import click

from . import keys
from .channels.wecom import WeComError
from .contacts import CHANNEL_STATES, INVITE_STATE, MAX_STATE
from .context import Context
from .jobs import handover
from .jobs.base import Summary
from .offline import run_with_context
from .operator import OperatorError, load_settings


def check_state(state: str) -> str:
    """A contact way's state: ``inv_<invite code>``, ``store_<id>`` or ``cmp_<campaign>``,
    at most 30 characters (WeCom's limit)."""
    if len(state) > MAX_STATE:
        raise OperatorError(f"--state: at most {MAX_STATE} characters (WeCom's limit), got "
                            f"{len(state)}")
    if not state.startswith((INVITE_STATE, *CHANNEL_STATES)) or state.endswith("_"):
        raise OperatorError("--state: must be inv_<invite code>, store_<id> or cmp_<campaign>")
    return state


async def _create(env: Context, staff: str, state: str, remark: str) -> dict[str, Any]:
    if state.startswith(INVITE_STATE):
        code = state[len(INVITE_STATE):].upper()
        if await env.members.invite_owner(code) is None:
            raise OperatorError(f"--state: no member has the invite code {code!r}")
        state = INVITE_STATE + code
    if env.wecom is None or not env.wecom.configured:
        raise OperatorError("WECOM_CORP_ID and WECOM_SECRET are not set")
    try:
        way = await env.wecom.add_contact_way(staff, state, remark)
    except WeComError as e:
        raise OperatorError(f"add_contact_way refused: errcode {e.errcode} {e.errmsg}") from e
    row = {**way, "staff": staff, "state": state, "remark": remark,
           "created_at": int(time.time())}
    for _ in range(20):  # append to the list, compare-and-set
        raw = await env.members.cached(keys.CONTACT_WAYS)
        ways = json.loads(raw) if raw else []
        new = json.dumps([*ways, row], ensure_ascii=False)
        if await env.members.cache(keys.CONTACT_WAYS, new, only_new=not raw, expect=raw or None):
            break
    return row


async def _list(env: Context) -> list[dict[str, Any]]:
    raw = await env.members.cached(keys.CONTACT_WAYS)
    return json.loads(raw) if raw else []


def _with_env(fn: Any, *args: Any) -> Any:
    return run_with_context(load_settings(), lambda env: fn(env, *args))


async def _handover(env: Context, frm: str, to: str, resigned: bool) -> Summary:
    if env.wecom is None or not env.wecom.configured:
        raise OperatorError("WECOM_CORP_ID and WECOM_SECRET are not set")
    now = datetime.now(env.rules.tz)
    summary = Summary("handover", now)
    try:
        await handover.start(env, frm, to, resigned=resigned, now=now, summary=summary)
        await handover.check(env, now, summary)
    except WeComError as e:
        raise OperatorError(f"transfer_customer refused: errcode {e.errcode} {e.errmsg}") from e
    return summary


def register(main: click.Group) -> None:
    @main.command("handover")
    @click.option("--from", "frm", required=True, help="the staff userid handing over")
    @click.option("--to", "to", required=True, help="the staff userid taking over")
    @click.option("--resigned", is_flag=True, help="FROM has left the company (离职继承)")
    def handover_cmd(frm: str, to: str, resigned: bool) -> None:
        """Hand every customer FROM owns over to TO (transfer_customer); the owner moves on
        the members once WeCom says each was taken over (the handover job checks)."""
        if frm == to:
            raise OperatorError("--to: must be another staff member than --from")
        s = _with_env(_handover, frm, to, resigned)
        failed = sum(s.failed.values())
        click.echo(f"handed over {s.enqueued} of {s.due} customers of {frm} to {to}: "
                   f"moved {s.moved}, waiting {s.waiting}, failed {failed}"
                   + "".join(f"\n  {k}: {v}" for k, v in sorted(s.failed.items(), key=str)))

    @main.group("contact-way")
    def contact_way() -> None:
        """Channel QR codes (渠道活码) of WeCom staff: add_contact_way with a state."""

    @contact_way.command("create")
    @click.option("--staff", required=True, help="the staff userid the QR code adds")
    @click.option("--state", default="", help="inv_<invite code>, store_<id> or "
                  "cmp_<campaign> (≤ 30 characters)")
    @click.option("--remark", default="", help="a note shown in the WeCom admin console")
    def create_cmd(staff: str, state: str, remark: str) -> None:
        """Create a contact QR code for STAFF and print its URL."""
        if state:
            check_state(state)
        row = _with_env(_create, staff, state, remark)
        click.echo(row["qr_code"])
        click.echo(f"config_id {row['config_id']}  staff {staff}  state {row['state'] or '—'}",
                   err=True)

    @contact_way.command("list")
    def list_cmd() -> None:
        """The contact QR codes memberbot created."""
        rows = _with_env(_list)
        if not rows:
            click.echo("no contact QR codes yet: memberbot contact-way create --staff U")
        for r in rows:
            click.echo(f"{r['config_id']}\t{r['staff']}\t{r['state'] or '—'}\t{r['qr_code']}")
