"""``memberbot export members|ledger|orders [--since D] [--format csv|jsonl]``: data for CRM
and e-commerce systems (a T+1 CRM sync, twice-daily increments), with a progress bar.

Members are named by member code (the internal id stays inside); times are ISO 8601 in the
programme's zone; phones are masked (``139****8000``) and birthdays left out unless
``--with-pii --as NAME`` by an admin account (its password asked for; audited).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, time
from typing import IO, Any

from .admins import Accounts
from .masking import mask_phone
from .members import Members
from .rules import points
from .rules.config import Rules
from .rules.timeutil import local_day

log = logging.getLogger("memberbot.export")

PAGE = 1000
COLUMNS = {
    "members": ["member_code", "tier", "tier_name", "balance", "debt", "lifetime_spend_fen",
                "joined_at", "last_purchase_at", "last_activity_at", "followed", "opted_out",
                "rfm", "tags", "openid", "unionid", "external_userid", "phone", "birthday"],
    "ledger": ["id", "at", "member_code", "kind", "points", "amount_fen", "ref", "data"],
    "orders": ["id", "at", "member_code", "kind", "order_id", "refund_id", "paid_fen",
               "gross_fen", "coupon_off_fen", "points_cash_fen", "store_id", "paid_at"],
}


class Progress:
    def start(self, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


def since_ts(day: date | None, rules: Rules) -> int | None:
    if day is None:
        return None
    return int(datetime.combine(day, time(0), rules.tz).timestamp())


def _iso(t: int | None, rules: Rules) -> str | None:
    return None if not t else datetime.fromtimestamp(t, rules.tz).isoformat()


class Codes:
    """member id -> member code, read once each."""

    def __init__(self, reads: Members) -> None:
        self.reads = reads
        self.cache: dict[str, str] = {}

    async def __call__(self, mid: str) -> str:
        if mid not in self.cache:
            m = await self.reads.get(mid)
            self.cache[mid] = m.member_code if m is not None else ""
        return self.cache[mid]


async def members(reads: Members, rules: Rules, since: int | None, now: datetime,
                  with_pii: bool, progress: Progress) -> AsyncIterator[dict[str, Any]]:
    """Every member, or with ``since`` those with any change since then."""
    today = local_day(now, rules.tz)
    if since is None:
        progress.start(await reads.count_members())
        ids: list[str] = []
        after = ""
        while page := await reads.member_ids(after, PAGE):
            ids += page
            after = page[-1]
    else:
        changed = reads.ledger_since(since, page=PAGE)
        ids = list(dict.fromkeys([r.member_id async for r in changed]))
        progress.start(len(ids))
    for mid in ids:
        m = await reads.get(mid)
        progress.advance()
        if m is None:
            continue
        yield {
            "member_code": m.member_code, "tier": m.tier, "tier_name": rules.tier(m.tier).name,
            "balance": points.balance(m, today, rules), "debt": m.debt,
            "lifetime_spend_fen": m.lifetime_spend, "joined_at": _iso(m.joined_at, rules),
            "last_purchase_at": _iso(m.last_purchase, rules),
            "last_activity_at": _iso(m.last_activity, rules), "followed": m.followed,
            "opted_out": m.opted_out, "rfm": m.rfm, "tags": list(m.tags), "openid": m.openid,
            "unionid": m.unionid, "external_userid": m.external_userid,
            "phone": m.phone if with_pii else (mask_phone(m.phone) if m.phone else None),
            "birthday": m.birthday if with_pii else None,
        }


async def ledger(reads: Members, rules: Rules, since: int | None, progress: Progress,
                 kinds: list[str] | None = None) -> AsyncIterator[dict[str, Any]]:
    codes = Codes(reads)
    progress.start(None)  # type: ignore[arg-type]  # the count is not known up front
    async for r in reads.ledger_since(since, kinds, page=PAGE):
        progress.advance()
        yield {"id": r.id, "at": _iso(r.at, rules), "member_code": await codes(r.member_id),
               "kind": r.kind, "points": r.points, "amount_fen": r.amount_fen, "ref": r.ref,
               "data": r.data}


async def orders(reads: Members, rules: Rules, since: int | None,
                 progress: Progress) -> AsyncIterator[dict[str, Any]]:
    async for r in ledger(reads, rules, since, progress, kinds=["order", "refund"]):
        d = r["data"] or {}
        order = r["kind"] == "order"
        yield {"id": r["id"], "at": r["at"], "member_code": r["member_code"],
               "kind": r["kind"],
               "order_id": r["ref"].removeprefix("order:") if order else d.get("order_id"),
               "refund_id": None if order else r["ref"].removeprefix("refund:"),
               "paid_fen": r["amount_fen"], "gross_fen": d.get("gross"),
               "coupon_off_fen": d.get("coupon_off"), "points_cash_fen": d.get("points_cash"),
               "store_id": d.get("store_id"), "paid_at": _iso(d.get("paid_at"), rules)}


def writer(fmt: str, what: str, out: IO[str]) -> Callable[[dict[str, Any]], None]:
    if fmt == "jsonl":
        return lambda row: out.write(json.dumps(row, ensure_ascii=False) + "\n")
    w = csv.DictWriter(out, fieldnames=COLUMNS[what], extrasaction="ignore")
    w.writeheader()

    def row_csv(row: dict[str, Any]) -> None:
        w.writerow({k: _cell(v) for k, v in row.items()})

    return row_csv


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "|".join(map(str, v))
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return v


async def export(reads: Members, rules: Rules, what: str, since: date | None, fmt: str,
                 out: IO[str], now: datetime, *, with_pii: bool = False,
                 progress: Progress | None = None) -> int:
    progress = progress or Progress()
    t = since_ts(since, rules)
    source = {"members": lambda: members(reads, rules, t, now, with_pii, progress),
              "ledger": lambda: ledger(reads, rules, t, progress),
              "orders": lambda: orders(reads, rules, t, progress)}[what]()
    write = writer(fmt, what, out)
    n = 0
    async for row in source:
        write(row)
        n += 1
    return n


async def _admin_only(accounts: Accounts, settings: Any, name: str, password: str,
                      what: str) -> None:
    """Personal data leaves only for an admin account whose password was given; recorded
    in the accounts' audit trail (/admin/audit)."""
    import hashlib
    import hmac

    from .admins import BOOTSTRAP

    name = name.strip().lower()
    if name == BOOTSTRAP:
        pw = settings.admin_password
        ok = bool(pw) and hmac.compare_digest(hashlib.sha256(password.encode()).digest(),
                                              hashlib.sha256(pw.encode()).digest())
    else:
        acc = await accounts.verify(name, password)
        ok = acc is not None and acc.role == "admin"
    if not ok:
        raise PermissionError(f"--with-pii: {name!r} is not an enabled admin account with "
                              "that password")
    await accounts.log(datetime.now().astimezone(), "export with PII", what, "—",
                       "phones and birthdays in clear", by=f"cli:{name}")


def register(main: Any) -> None:
    import contextlib
    import re
    import sys

    import click

    from .context import Context
    from .offline import run_with_context
    from .operator import fail, load_settings
    from .settings import SettingsError

    @main.command("export")
    @click.argument("what", type=click.Choice(["members", "ledger", "orders"]))
    @click.option("--since", metavar="YYYY-MM-DD",
                  help="only what changed from that day on (members: with any change)")
    @click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv",
                  show_default=True)
    @click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
                  help="write to this file (default: standard output)")
    @click.option("--with-pii", is_flag=True,
                  help="phones and birthdays in clear: an admin account only (--as), "
                       "recorded in the admin audit")
    @click.option("--as", "as_user", metavar="NAME",
                  help="the admin account running --with-pii; its password is asked for "
                       "(the bootstrap 'admin': MEMBERBOT_ADMIN_PASSWORD)")
    def export_cmd(what: str, since: str | None, fmt: str, output: str | None,
                   with_pii: bool, as_user: str | None) -> None:
        """Export members, the ledger or orders as CSV or JSON lines."""
        password = ""
        if with_pii:
            if not as_user:
                fail("--with-pii is for admins: add --as NAME (an account with the admin "
                     "role); its password is asked for")
            password = click.prompt(f"password of {as_user}", hide_input=True, err=True)
        day = None
        if since is not None:
            try:
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", since):
                    raise ValueError(since)
                day = date.fromisoformat(since)
            except ValueError:
                fail(f"--since {since!r} is not a date YYYY-MM-DD")
        settings = load_settings()

        async def go(ctx: Context) -> int:
            from .jobs.cli import Bar

            if with_pii:
                await _admin_only(ctx.accounts, settings, as_user or "", password, what)
                log.warning("export %s --with-pii by %s: personal data in clear", what,
                            as_user)
                click.echo(f"warning: exporting {what} with phones and birthdays in clear",
                           err=True)
            with contextlib.ExitStack() as stack:
                out = stack.enter_context(open(output, "w", encoding="utf-8", newline="")) \
                    if output else sys.stdout
                bar = stack.enter_context(Bar(f"export {what}"))
                return await export(ctx.members, ctx.rules, what, day, fmt, out, ctx.now(),
                                    with_pii=with_pii, progress=bar)

        try:
            n = run_with_context(settings, go)
        except (SettingsError, PermissionError) as e:
            fail(str(e))
        except OSError as e:
            fail(f"cannot write {output} ({e.strerror})")
        click.echo(f"exported {n} {what} rows", err=True)
