"""Changes for other systems: the ledger, read in commit order, as events.

Every change to a member is committed together with its ledger rows, so the ledger is the
outbox of record: ``GET /api/changes`` pages through it by cursor, and each webhook endpoint
tails it with a cursor of its own (:mod:`bot.webhooks`). An event's id is its ledger row
(``evt_<row id>``): the same change always has the same id, so a receiver de-duplicates on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from storage import LedgerRow, Store

EVENTS = ("member.created", "points.changed", "tier.changed", "coupon.issued",
          "coupon.redeemed", "order.recorded", "order.refunded")
POINTS_KINDS = {"credit", "spend", "expire", "reverse"}
# the ledger kinds an event can come from: the feed reads only these
KINDS = ["join", *sorted(POINTS_KINDS), "tier_change", "coupon_issue", "coupon_redeem",
         "order", "refund"]


def _iso(t: int | None, tz: ZoneInfo) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, tz).isoformat()


def event_type(row: LedgerRow) -> str | None:
    k = row.kind
    if k == "join":
        return "member.created"
    if k in POINTS_KINDS and row.points:
        return "points.changed"
    return {"tier_change": "tier.changed", "coupon_issue": "coupon.issued",
            "coupon_redeem": "coupon.redeemed", "order": "order.recorded",
            "refund": "order.refunded"}.get(k)


def event_data(kind: str, row: LedgerRow, tz: ZoneInfo) -> dict[str, Any]:
    d = row.data or {}
    if kind == "member.created":
        return {"via": d.get("via", "oa")}
    if kind == "points.changed":
        return {"delta": row.points, "reason": d.get("reason") or row.kind, "ref": row.ref}
    if kind == "tier.changed":
        return {"from": d.get("from"), "to": d.get("to"), "up": bool(d.get("up"))}
    if kind == "coupon.issued":
        return {"code": d.get("code"), "template": d.get("template")}
    if kind == "coupon.redeemed":
        return {"code": d.get("code"), "template": d.get("template"),
                "order_id": row.ref.removeprefix("order:"), "discount_fen": row.amount_fen}
    if kind == "order.recorded":
        return {"order_id": row.ref.removeprefix("order:"), "paid_fen": row.amount_fen,
                "amount_fen": d.get("gross"), "coupon_off_fen": d.get("coupon_off"),
                "points_cash_fen": d.get("points_cash"), "store_id": d.get("store_id"),
                "paid_at": _iso(d.get("paid_at"), tz)}
    if kind == "order.refunded":
        return {"order_id": d.get("order_id"), "refund_id": row.ref.removeprefix("refund:"),
                "refunded_fen": -row.amount_fen}
    return {}


async def member_codes(store: Store, ids: Iterable[str], cache: dict[str, str]) -> None:
    """Fill ``cache`` with the member codes of ``ids`` (events name members by code: the
    internal id is not shown to other systems)."""
    for mid in ids:
        if mid not in cache:
            m = await store.get(mid)
            cache[mid] = m.member_code if m is not None else ""


async def read(store: Store, tz: ZoneInfo, cursor: int, limit: int,
               wanted: Callable[[str], bool] = lambda _t: True,
               codes: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Events after ledger row ``cursor``: up to ``limit`` of those ``wanted``, and the
    cursor to continue from (past rows that are no event, so a quiet feed moves on)."""
    codes = {} if codes is None else codes
    out: list[dict[str, Any]] = []
    after = cursor
    while len(out) < limit:
        rows = await store.ledger(kinds=KINDS, after_id=after, limit=max(limit, 100))
        if not rows:
            break
        await member_codes(store, {r.member_id for r in rows}, codes)
        for r in rows:
            after = r.id
            kind = event_type(r)
            if kind is None or not wanted(kind):
                continue
            out.append({"id": f"evt_{r.id}", "type": kind, "at": _iso(r.at, tz),
                        "member_code": codes.get(r.member_id, ""),
                        "data": event_data(kind, r, tz)})
            if len(out) >= limit:
                break
    return out, after
