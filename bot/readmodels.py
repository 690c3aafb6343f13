"""Read models of the use-case layer: what handlers and jobs show or check, read from the
store here so that they never touch it themselves (the member's statement, balance by day,
a message's stored reply, who owns an invite code, small cached values and once-marks, the
indexes jobs find members by, the outbox rows they deliver and move, the store's health),
and what the operator commands read of the whole programme (every member, the ledger in
order, the report figures).

:class:`bot.members.Members` carries these, so a handler has one object for all it needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

from storage import LedgerRow, OutboxRow, Store

from . import analytics, campaign_report, changes, experiment_report
from .rules import points
from .rules.config import Rules
from .rules.experiments import Experiment
from .rules.models import Change, Member
from .rules.timeutil import from_ts, local_day

# The ledger kinds that move points, and the words a member reads for each (by its reason).
POINT_KINDS = ["credit", "spend", "expire", "reverse", "restore"]
REASONS = {
    ("credit", "purchase"): "消费得积分", ("credit", "checkin"): "签到",
    ("credit", "inviter"): "邀请好友", ("credit", "invitee"): "受邀加入",
    ("credit", "profile"): "完善资料", ("credit", "adjust"): "客服调整",
    ("credit", "refund"): "退款退回", ("spend", "exchange"): "积分兑换",
    ("spend", "order"): "积分抵现", ("spend", "adjust"): "客服调整",
    ("expire", ""): "积分过期", ("reverse", ""): "退款扣回",
    ("reverse", "invite_cycle"): "邀请无效扣回", ("restore", ""): "退款退回抵现积分",
}


def reason_text(kind: str, reason: str) -> str:
    """The Chinese reason of a points line (``积分变动`` for one without words yet)."""
    return REASONS.get((kind, reason)) or REASONS.get((kind, "")) or "积分变动"


class ReadModels:
    store: Store
    rules: Rules

    async def ledger_page(self, member_id: str, page: int, size: int = 20
                          ) -> tuple[list[dict[str, Any]], bool]:
        """Page ``page`` (1 = newest) of the member's whole ledger, and whether one follows:
        every line, with who made it and why (the admin member page)."""
        rows = await self.store.ledger(member_id=member_id, newest_first=True,
                                       limit=page * size + 1)
        tz = self.rules.tz
        out = []
        for r in rows[(page - 1) * size:page * size]:
            d = r.data or {}
            out.append({"at": datetime.fromtimestamp(r.at, tz).strftime("%Y-%m-%d %H:%M"),
                        "kind": r.kind, "points": r.points, "amount_fen": r.amount_fen,
                        "reason": reason_text(r.kind, str(d.get("reason", "")))
                        if r.points else "", "why": str(d.get("reason", "")) if r.kind in (
                            "adjust", "staff_coupon") else "",
                        "by": str(d.get("staff") or d.get("by") or ""), "ref": r.ref})
        return out, len(rows) > page * size

    async def statement(self, member_id: str, now: datetime, limit: int = 10) -> dict[str, Any]:
        """The member's last ``limit`` points lines, newest first (day, reason in Chinese,
        signed points), with the balance and any debt as of ``now``."""
        rows = await self.store.ledger(member_id=member_id, kinds=POINT_KINDS,
                                       newest_first=True, limit=limit)
        m = await self.store.get(member_id)
        tz = self.rules.tz
        today = local_day(now, tz)
        return {
            "entries": [{"day": from_ts(r.at, tz).date().isoformat(),
                         "reason": reason_text(r.kind, str(r.data.get("reason") or "")),
                         "points": r.points} for r in rows if r.points],
            "balance": points.balance(m, today, self.rules) if m else 0,
            "debt": m.debt if m else 0,
        }

    def balance_by_day(self, m: Member, today: date, days: int = 30) -> list[tuple[str, int]]:
        """Points expiring within ``days``, summed per expiry day, soonest first."""
        horizon = (today + timedelta(days=days)).isoformat()
        by_day: dict[str, int] = {}
        for lot in points.lots_as_of(m, today, self.rules):
            if today.isoformat() <= lot.expires_on <= horizon and lot.remaining:
                by_day[lot.expires_on] = by_day.get(lot.expires_on, 0) + lot.remaining
        return sorted(by_day.items())

    async def seen(self, member_id: str, key: str) -> tuple[bool, Any]:
        """Whether the member's step under ``key`` is done, and its stored result."""
        return await self.store.seen(member_id, key)

    async def keep_reply(self, member_id: str, key: str, text: str) -> str:
        """Store the reply to a message under its key, once: a retry gets the first one."""
        return await self.store.update(member_id, lambda _m: Change(None, text), key=key)

    async def invite_owner(self, code: str) -> str | None:
        return await self.store.lookup("invite_code", code)

    @property
    def one_process(self) -> bool:
        """Whether only one serving process writes the store (SQLite): then what this process
        holds in memory and what is stored is all there is (callback nonces)."""
        return self.store.one_process

    async def cached(self, key: str) -> str | None:
        """A small value kept in the store's kv (a QR link, a mark) under ``keys.*``."""
        return await self.store.kv_get(key)

    async def cache(self, key: str, value: str, ttl: float | None = None, *,
                    only_new: bool = False, expect: str | None = None) -> bool:
        """Keep ``value`` under ``key`` for ``ttl`` seconds (``only_new``: unless set: a
        mark taken once; ``expect``: only over that value, a compare-and-set); returns
        whether it was written."""
        return await self.store.kv_set(key, value, ttl=ttl, only_new=only_new, expect=expect)

    async def forget(self, key: str, *, expect: str | None = None) -> bool:
        """Drop what ``cache`` kept under ``key`` (a notice shown once; ``expect``: only
        while it holds that value, a lock given back)."""
        return await self.store.kv_delete(key, expect=expect)

    # -- what the jobs read and move besides members ---------------------------------------
    async def range(self, index: str, lo: int, hi: int, *, after: str = "",
                    limit: int | None = None) -> list[tuple[str, int]]:
        """Members whose integer ``index`` lies in ``[lo, hi]`` (a job's candidates)."""
        return await self.store.range(index, lo, hi, after=after, limit=limit)

    async def tagged(self, index: str, value: str, *, after: str = "",
                     limit: int | None = None) -> list[str]:
        """Members whose text ``index`` equals (or whose list contains) ``value``."""
        return await self.store.tagged(index, value, after=after, limit=limit)

    async def tag_counts(self, index: str) -> dict[str, int]:
        """How many members carry each value of the text ``index``."""
        return await self.store.tag_counts(index)

    async def outbox_rows(self, *, status: str | None = None, kind: str | None = None,
                          limit: int = 10000) -> list[OutboxRow]:
        """Outbox rows (of a status, a kind) the senders deliver."""
        return await self.store.outbox(status=status, kind=kind, limit=limit)

    async def move_row(self, row_id: str, status: str, data: dict[str, Any] | None = None, *,
                       expect: str | None = None) -> bool:
        """Move an outbox row to ``status`` (only from ``expect``, a compare-and-set),
        merging ``data``; whether this call moved it."""
        return await self.store.outbox_set(row_id, status, data, expect=expect)

    async def health(self) -> dict[str, Any]:
        """The store's health (``{"kind", "ok", ...}``) for /healthz."""
        return await self.store.ping()

    @property
    def store_kind(self) -> str:
        """Which backend keeps the members (sqlite, redis, redis-cluster, postgresql)."""
        return self.store.kind

    async def coupon_holder(self, code: str) -> str | None:
        """The member a coupon code was issued to, or None."""
        return await self.store.lookup("coupon_code", code.strip().upper())

    async def changes(self, cursor: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The change feed (GET /api/changes) after ``cursor``: events and the next cursor."""
        return await changes.read(self.store, self.rules.tz, cursor, limit)

    async def stock_left(self, template: str) -> int | None:
        """Units of a coupon template not yet taken (``None``: never stocked)."""
        return await self.store.stock(template)

    async def report(self, as_of: date, days: int) -> dict[str, Any]:
        """The operators' figures (:func:`bot.analytics.compute`) for the days up to
        ``as_of``, for the dashboard: its points-age curve (a read of every member) may be
        up to an hour old."""
        return await analytics.compute(self.store, self.rules, as_of, days, reuse_age=True)

    async def count(self, key: str, window: float) -> int:
        """One more in a counter that lives ``window`` seconds (rate limits)."""
        return await self.store.incr_window(key, window)

    # -- what the operator commands read of the whole programme ----------------------------
    async def member_ids(self, after: str = "", limit: int = 1000) -> list[str]:
        """Up to ``limit`` member ids in id order after ``after`` (a page of all members)."""
        return await self.store.member_ids(after, limit)

    async def count_members(self) -> int:
        return await self.store.count_members()

    async def ledger_since(self, since: int | None, kinds: list[str] | None = None,
                           page: int = 1000) -> AsyncIterator[LedgerRow]:
        """Every ledger row (of ``kinds``) at or after ``since``, oldest first, read a page
        of ``page`` rows at a time."""
        after = 0
        while True:
            rows = await self.store.ledger(since=since, kinds=kinds, after_id=after, limit=page)
            for r in rows:
                yield r
            if len(rows) < page:
                return
            after = rows[-1].id

    async def campaign_figures(self) -> list[dict[str, Any]]:
        """Each campaign's figures (:func:`bot.campaign_report.figures`)."""
        return await campaign_report.figures(self.store, self.rules)

    async def experiment_figures(self, exp: Experiment) -> dict[str, Any]:
        """An A/B test's figures per variant (:func:`bot.experiment_report.compute`)."""
        return await experiment_report.compute(self.store, self.rules, exp)
