"""welcome (WeCom): sent from the /wecom callback at once with the event's WelcomeCode, which
WeCom accepts for 20 s and only once — never queued behind other work, never retried after
41051 (the code was used already, e.g. by another app); the outcome is recorded."""

from __future__ import annotations

import logging
from datetime import datetime

from .. import keys
from ..channels.wecom import WELCOME_CODE_USED, WeComClient, WeComError
from ..context import Context
from ..members import Members
from ..metrics import PUSHES
from ..rules.config import Rules
from ..rules.models import Entry, Member
from ..rules.timeutil import ts
from ..templating import render
from .base import Job, Progress, Summary
from .schedule import OnEvent, Schedule

log = logging.getLogger("memberbot.welcome")

KIND = "welcome"
TITLE = "欢迎语（企业微信）"


class NothingToRun(Exception):
    def __str__(self) -> str:
        return ("welcome is sent from the /wecom callback the moment a contact is added (its "
                "code lives 20 s); there is nothing to run")


def schedule(rules: Rules) -> Schedule:
    return OnEvent("a new contact (/wecom)")


def text(members: Members, m: Member | None, now: datetime, *, staff: str, linked: bool,
         coupon: dict | None) -> str:
    if m is None:  # the contact could not be looked up in time: a greeting only
        return render("lifecycle/welcome_wecom.j2", staff=staff, linked=False, coupon=None,
                      member_code="", tier_name="", balance=0)
    card = members.card(m, now)
    return render("lifecycle/welcome_wecom.j2", staff=staff, linked=linked, coupon=coupon,
                  member_code=m.member_code, tier_name=card["progress"]["tier_name"],
                  balance=card["balance"])


async def send(members: Members, wecom: WeComClient, *, member_id: str | None, welcome_code: str,
               staff: str, now: datetime, linked: bool, coupon: dict | None = None) -> str:
    """Send the welcome once per code; returns "sent", "code_used", "failed" or "duplicate"."""
    key = keys.wecom_welcome(welcome_code)
    if not await members.cache(key, member_id or "-", ttl=86400, only_new=True):
        return "duplicate"  # a retried callback: the code is spent either way
    m = await members.get(member_id) if member_id else None
    status, error = "sent", 0
    try:
        await wecom.send_welcome_msg(welcome_code, text(members, m, now, staff=staff,
                                                        linked=linked, coupon=coupon))
    except WeComError as e:
        status, error = ("code_used" if e.errcode == WELCOME_CODE_USED else "failed"), e.errcode
        log.warning("welcome for member %s not sent: errcode %s", member_id, e.errcode)
    PUSHES.labels(KIND, status).inc()
    if m is None:
        return status
    row = {"kind": KIND, "period": welcome_code, "status": "sent" if status == "sent" else
           "failed", "data": {"staff": staff, "result": status, "error": error}}

    def body(m: Member) -> tuple[dict, list[Entry], list[dict]]:
        entry = Entry("welcome", ts(now), ref=key, data={"staff": staff, "result": status,
                                                          "error": error})
        return {"status": status}, [entry], [row]

    await members.run(m.id, now, body, key=key)
    return status


async def run(env: Context, now: datetime, *, dry_run: bool, summary: Summary,
              progress: Progress) -> None:
    raise NothingToRun()


JOB = Job(KIND, TITLE, schedule, "welcome code", run=run)
