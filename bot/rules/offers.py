"""The 兑换 catalogue and its limited offers (限时爆款兑换): an item gives one coupon for
points, or points + cash (积分+现金: the points are spent at 兑换 and the coupon carries the
cash that the till collects when it is used). An item may have a window, a total stock of its
own and a per-member limit. Pure: ``now`` and the member are arguments.

Numbering is the item's place in the rules file, so ``兑换 3`` means the same item whatever
else opened or closed meanwhile; the list shows only the items open now."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .fields import RulesError, _instant, _int, _str
from .models import Member, Refusal
from .sections import entries

KNOWN = ("key", "name", "coupon", "points", "cash_fen", "start", "end", "stock",
         "per_member_limit")


@dataclass(frozen=True)
class Offer:
    """One catalogue item (its number ``n`` is its place in the file, from 1)."""

    n: int
    key: str
    coupon: str  # the coupon template it gives
    points: int
    cash_fen: int = 0  # 积分+现金: what the till collects when the coupon is used
    name: str = ""  # shown instead of the coupon's name when set
    start: datetime | None = None
    end: datetime | None = None
    stock: int = 0  # units of this item in total; 0 = only the coupon template's stock
    per_member_limit: int = 0  # exchanges of this item per member; 0 = no limit of its own

    def open_at(self, now: datetime) -> bool:
        return (self.start is None or now >= self.start) and (self.end is None or now <= self.end)

    @property
    def limited(self) -> bool:
        """Counted on a stock of its own."""
        return self.stock > 0


def parse(items: Any, coupons: dict[str, Any], min_points: int, tz: ZoneInfo
          ) -> tuple[Offer, ...]:
    """The ``[[catalogue]]`` tables; an error names the field."""
    out: list[Offer] = []
    for i, (p, item) in enumerate(entries(items, "catalogue", set(KNOWN), RulesError)):
        item = {"cash_fen": 0, "stock": 0, "per_member_limit": 0, "name": "", **item}
        coupon = _str(item, "coupon", p)
        if coupon not in coupons:
            raise RulesError(f"{p}.coupon: no coupon template {coupon!r}")
        key = item.get("key", coupon)
        if not isinstance(key, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_]{0,31}", key):
            raise RulesError(f"{p}.key: must be lower-case letters, digits and _, got {key!r}")
        if not isinstance(item["name"], str):
            raise RulesError(f"{p}.name: must be a text")
        offer = Offer(i + 1, key, coupon, _int(item, "points", p, minimum=min_points),
                      _int(item, "cash_fen", p), item["name"],
                      _instant(item, "start", p, tz), _instant(item, "end", p, tz, end=True),
                      _int(item, "stock", p), _int(item, "per_member_limit", p))
        if offer.start and offer.end and offer.end < offer.start:
            raise RulesError(f"{p}.end: before {p}.start")
        if any(o.key == key for o in out):
            raise RulesError(f"{p}.key: duplicate item key {key!r} (give each item a key "
                             "of its own)")
        out.append(offer)
    return tuple(out)


def exchanged(m: Member, offer: Offer) -> int:
    """How many coupons the member got from this item."""
    return sum(1 for c in m.coupons if c.offer == offer.key)


def check(m: Member, offer: Offer, now: datetime) -> None:
    """Refuse an exchange of ``offer`` now: outside its window, or over the member's limit."""
    if not offer.open_at(now):
        when = "尚未开始" if offer.start and now < offer.start else "已结束"
        raise Refusal("exchange_closed", f"该兑换活动{when}，发送「兑换」查看当前可兑换项目",
                      item=offer.n, key=offer.key)
    if offer.per_member_limit and exchanged(m, offer) >= offer.per_member_limit:
        raise Refusal("exchange_limit", f"每人限兑 {offer.per_member_limit} 次，你已兑完",
                      item=offer.n, key=offer.key, limit=offer.per_member_limit)


def sold_out(offer: Offer) -> Refusal:
    return Refusal("exchange_sold_out", "该商品已兑完，发送「兑换」查看其他可兑换项目",
                   item=offer.n, key=offer.key)


def find(catalogue: tuple[Offer, ...], n: int) -> Offer:
    if not 1 <= n <= len(catalogue):
        raise Refusal("exchange_unknown_item", f"没有第 {n} 项，发送「兑换」查看可兑换项目")
    return catalogue[n - 1]


def open_now(catalogue: tuple[Offer, ...], now: datetime) -> list[Offer]:
    return [o for o in catalogue if o.open_at(now)]
