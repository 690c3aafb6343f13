"""The 兑换 catalogue's use cases, mixed into :class:`bot.members.Members`: what is open now
with the units left, and an exchange of one item (its points, its coupon, its units of stock
in one commit: see ``Members.issue_coupon``)."""

from __future__ import annotations

from datetime import datetime

from . import keys
from .rules import offers
from .rules.models import Member


class Exchanges:
    """Needs the Members internals: store, rules, issue_coupon."""

    async def exchange(self, member_id: str, item: int, now: datetime, *, key: str) -> dict:
        """兑换 item ``item`` (its place in the catalogue, from 1), once per ``key``: its
        points are spent and its coupon issued in one commit, within its window, its stock
        and the member's limit."""
        offer = offers.find(self.rules.catalogue, item)
        return await self.issue_coupon(member_id, offer.coupon, keys.exchange(key), now,
                                       spend_points=offer.points, offer=offer)

    async def catalogue(self, m: Member, now: datetime) -> list[dict]:
        """The items open now (兑换), each with its price, the units left of a limited one
        and how many more the member may take."""
        out = []
        for o in offers.open_now(self.rules.catalogue, now):
            tpl = self.rules.coupons[o.coupon]
            left = None
            if o.limited:
                left = await self.store.stock(keys.offer_stock(o.key))
                left = o.stock if left is None else left
            mine = (max(0, o.per_member_limit - offers.exchanged(m, o))
                    if o.per_member_limit else None)
            out.append({"n": o.n, "key": o.key, "name": o.name or tpl.name,
                        "label": tpl.label(), "points": o.points, "cash_fen": o.cash_fen,
                        "stock_left": left, "mine_left": mine,
                        "end": o.end.astimezone(self.rules.tz) if o.end else None})
        return out
