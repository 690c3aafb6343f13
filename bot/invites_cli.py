"""``memberbot invites backfill``: count the rewarded invites of before the invite ladder on
their inviters, so the ladder climbs from what they already did (idempotent)."""

from __future__ import annotations

from datetime import datetime

import click

from .members import Members
from .offline import run_with_members
from .operator import load_settings

PAGE = 1000


async def backfill(members: Members, now: datetime) -> dict[str, int]:
    """Every member: their ``inviter`` credits in the ledger become their rewarded-invite
    count where it is lower. A second run changes nothing."""
    out = {"members": 0, "inviters": 0, "backfilled": 0, "invites_added": 0}
    after = ""
    while True:
        ids = await members.member_ids(after, PAGE)
        for mid in ids:
            out["members"] += 1
            res = await members.backfill_invites(mid, now)
            out["inviters"] += res["after"] > 0
            if res["changed"]:
                out["backfilled"] += 1
                out["invites_added"] += res["after"] - res["before"]
        if len(ids) < PAGE:
            return out
        after = ids[-1]


def register(main: click.Group) -> None:
    @main.group("invites")
    def invites_group() -> None:
        """Invites and the invite ladder (阶梯式礼品)."""

    @invites_group.command("backfill")
    def backfill_cmd() -> None:
        """Count the rewarded invites each inviter earned before the invite ladder existed
        (from the ledger) so the next rung follows on. Safe to run again: it never counts
        an invite twice and never lowers a count; rungs already passed are not rewarded."""
        r = run_with_members(load_settings(), backfill)
        click.echo(f"members looked at {r['members']:,}; inviters {r['inviters']:,}; "
                   f"backfilled {r['backfilled']:,} (+{r['invites_added']:,} rewarded invites)")
