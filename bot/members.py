"""Use cases: each is a pure rules step wrapped in one ``store.update`` with one key.

Every step first brings the member up to date at ``now`` (expired lots and coupons, tier and
grace, RFM) and its indexes are derived after it, so the commit always carries a consistent
aggregate, ledger, indexes and outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from storage.base import OutOfStock, Store, UniqueTaken

from . import keys
from .campaign_grants import with_grants
from .cards import CardHolders
from .contacts import WeComContacts
from .exchanges import Exchanges
from .invite_binds import InviteBinds
from .readmodels import ReadModels
from .registration import Registration, random_code
from .rules import (
    card,
    coupons,
    indexes,
    invites,
    offers,
    orders,
    points,
    profile,
    rfm,
    tasks,
    tiers,
    wecom_tags,
)
from .rules.checkin import check_in as _check_in
from .rules.config import Rules
from .rules.models import Change, Entry, Member, Refusal
from .rules.offers import Offer
from .rules.timeutil import local_day, ts

Body = Callable[[Member], tuple[Any, list[Entry]] | tuple[Any, list[Entry], list[dict]]]


MAX_TAGS = 50
TAG_MAX_LEN = 20


def _tag(text: str) -> str:
    t = " ".join(text.split())
    if not t or len(t) > TAG_MAX_LEN or "," in t:
        raise Refusal("tag_invalid", f"标签需为 1 到 {TAG_MAX_LEN} 个字符，且不含逗号",
                      tag=text[:40])
    return t


class Members(Registration, WeComContacts, ReadModels, InviteBinds, CardHolders,
              Exchanges):
    """The member use cases over one store and one rules object."""

    def __init__(self, store: Store, rules: Rules) -> None:
        self.store = store
        self.rules = rules
        self.on_card: Callable[[], None] | None = None  # wakes the card sync after a commit
        self.card_dirty = False

    # -- the one way to change a member ---------------------------------------------------
    def normalise(self, m: Member, now: datetime) -> tuple[list[Entry], list[tuple[str, str]]]:
        """Expire lots and coupons, settle tier and grace: the state as of ``now``."""
        entries = points.expire(m, now, self.rules)
        ce, returns = coupons.expire_coupons(m, now)
        entries += ce
        entries += tiers.evaluate(m, now, self.rules)
        return entries, returns

    def _finish(self, m: Member, now: datetime, result: Any, entries: list[Entry],
                returns: list[tuple[str, str]], outbox: list[dict] | None = None) -> Change:
        outbox = list(outbox or ())
        today = local_day(now, self.rules.tz)
        day = today.isoformat()
        for e in entries:
            if e.kind == "tier_change" and e.data.get("up"):
                outbox.append({"kind": "tier_upgrade", "period": f"{e.data['to']}:{day}",
                               "data": {"from": e.data["from"], "to": e.data["to"]}})
        m.rfm = rfm.segment(m, now, self.rules)  # after the step: its order counts at once
        # the one place a card holder's balance or tier change becomes a card update, in the
        # same commit as the change (an outbox entry the card sync sends)
        shows = self.rules.card is not None and self.rules.card.pending_field_name
        sync = card.sync(m, points.balance(m, today), self.rules.tier(m.tier).name, entries,
                         points.pending(m, today)[0] if shows else None)
        if sync is not None:
            outbox.append(sync)
            self.card_dirty = True
        # a linked member's new tier or segment becomes one corp-tag mark, in this commit
        tag = wecom_tags.mark(m, self.rules.tier(m.tier).name)
        if tag is not None:
            outbox.append(tag)
        idx = indexes.derive(m, today, self.rules)
        return Change(m, result, entries, outbox, idx, returns)

    async def run(self, member_id: str, now: datetime, body: Body, *,
                  key: str | None = None, claims: tuple[tuple[str, str], ...] = (),
                  takes: tuple[tuple[str, str], ...] = ()) -> Any:
        """Apply ``body`` to an existing member in one atomic, idempotent step.

        ``claims`` (kind, value) are bound to the member and ``takes`` (template, key) take
        their unit of stock by the same commit, or the store refuses it whole."""

        def step(m: Member | None) -> Change:
            if m is None:
                raise Refusal("member_not_found", "未找到会员", member_id=member_id)
            entries, returns = self.normalise(m, now)
            out = body(m)  # (result, entries) or (result, entries, outbox entries)
            change = self._finish(m, now, out[0], entries + out[1], returns,
                                  out[2] if len(out) > 2 else None)
            change.claims, change.stock_takes = list(claims), list(takes)
            return change

        return await self._update(member_id, step, key)

    async def _update(self, member_id: str, step: Callable, key: str | None) -> Any:
        try:  # its latency is the store's metric (storage.StoreMetrics)
            return await self.store.update(member_id, step, key=key)
        finally:
            if self.card_dirty and self.on_card is not None:
                self.card_dirty = False
                self.on_card()

    async def get(self, member_id: str) -> Member | None:
        return await self.store.get(member_id)

    async def resolve(self, *, member_code: str | None = None, openid: str | None = None,
                      unionid: str | None = None, phone: str | None = None,
                      external_userid: str | None = None) -> str | None:
        """The member id for the first identity given."""
        for kind, value in (("member_code", member_code), ("openid", openid),
                            ("unionid", unionid), ("phone", phone),
                            ("external_userid", external_userid)):
            if value:
                return await self.store.lookup(kind, value)
        return None

    async def unfollow(self, member_id: str, now: datetime) -> dict:
        def body(m: Member) -> tuple[dict, list[Entry]]:
            if not m.followed:
                return {"changed": False}, []
            m.followed, m.unfollowed_at = False, ts(now)
            return {"changed": True}, [Entry("unfollow", ts(now))]

        return await self.run(member_id, now, body)

    # -- member actions -------------------------------------------------------------------------
    async def check_in(self, member_id: str, now: datetime, *, by: str | None = None) -> dict:
        """Once per day. ``by`` (a chat message's key) is kept in the stored result, so a
        later message that day can tell it is not the one that checked in."""
        day = local_day(now, self.rules.tz).isoformat()

        def body(m: Member) -> tuple[dict, list[Entry]]:
            res, entries = _check_in(m, now, self.rules)
            if by and m.notices:  # a chat check-in: its reply is the member's next reply
                res = {**res, "notices": invites.take_notices(m)}
            return ({**res, "by": by} if by else res), entries

        return await self.run(member_id, now, body, key=keys.checkin(member_id, day))

    async def reply_with_notices(self, member_id: str, key: str, now: datetime,
                         compose: Callable[[list[dict]], str]) -> str:
        """Store the reply to chat message ``key`` once: ``compose(notices)`` gives its text
        with the member's pending notices, which are cleared in the same step. Without
        notices the member is not rewritten."""

        def step(m: Member | None) -> Change:
            if m is None or not m.notices:
                return Change(None, compose([]))
            notes = invites.take_notices(m)
            return self._finish(m, now, compose(notes),
                                [Entry("notice", ts(now), data={"told": notes})], [])

        return await self._update(member_id, step, key)

    async def touch(self, member_id: str, now: datetime) -> dict:
        """Record an interaction (any chat message) once per day: dormancy counts from it."""
        day = local_day(now, self.rules.tz).isoformat()

        def body(m: Member) -> tuple[dict, list[Entry]]:
            m.last_activity = max(m.last_activity, ts(now))
            return {"day": day}, []

        return await self.run(member_id, now, body, key=keys.activity(member_id, day))

    async def set_birthday(self, member_id: str, birthday: str, now: datetime, *,
                           key: str | None = None) -> dict:
        return await self.run(
            member_id, now, lambda m: orders.set_birthday(m, birthday, now, self.rules), key=key)

    async def set_profile(self, member_id: str, now: datetime, *, phone: str | None = None,
                          birthday: str | None = None, gender: str | None = None,
                          source: str = "chat", key: str | None = None) -> dict:
        """Phone, birthday, gender (完善资料): the bonus once when phone and birthday are set.
        A phone is unique across members."""
        if phone is not None:
            phone = profile.normal_phone(phone)
            if await self.store.claim("phone", phone, member_id) != member_id:
                raise Refusal("phone_taken", "该手机号已被其他会员使用")
        before = (await self.store.get(member_id) or Member("", "")).phone
        try:
            res = await self.run(member_id, now, lambda m: profile.update(
                m, now, self.rules, phone=phone, birthday=birthday, gender=gender,
                source=source), key=key)
        except Refusal:
            if phone is not None and phone != before:
                await self.store.release("phone", phone, member_id)
            raise
        if phone is not None and before and before != phone:
            await self.store.release("phone", before, member_id)
        return res

    async def set_opt_out(self, member_id: str, opted_out: bool, now: datetime) -> dict:
        def body(m: Member) -> tuple[dict, list[Entry]]:
            changed = m.opted_out != opted_out
            m.opted_out = opted_out
            kind = "opt_out" if opted_out else "opt_in"
            return {"opted_out": opted_out, "changed": changed}, (
                [Entry(kind, ts(now))] if changed else [])

        return await self.run(member_id, now, body)

    # -- coupons ------------------------------------------------------------------------------
    async def ensure_stock(self, *, templates: tuple[str, ...] | None = None,
                           items: tuple[Offer, ...] | None = None) -> None:
        """Start the stock counters of coupon templates and limited catalogue items the
        first time they are seen (a counter is never reset; all of them by default)."""
        for key in self.rules.coupons if templates is None else templates:
            if await self.store.stock(key) is None:
                await self.store.stock_init(key, self.rules.coupons[key].stock)
        for o in self.rules.catalogue if items is None else items:
            if o.limited and await self.store.stock(keys.offer_stock(o.key)) is None:
                await self.store.stock_init(keys.offer_stock(o.key), o.stock)

    async def issue_coupon(self, member_id: str, template: str, ref: str, now: datetime,
                           *, spend_points: int = 0, audit: dict | None = None,
                           offer: Offer | None = None) -> dict:
        """Issue one coupon under ``ref`` (its idempotency key), taking one unit of stock,
        optionally paid with points (兑换 of catalogue item ``offer``, whose own stock, window
        and per-member limit count in the same commit). Stock is given back if the member is
        refused. ``audit`` (who issued it, from where) is written to the ledger in the same
        commit as a ``staff_coupon`` entry."""
        tpl = self.rules.coupons.get(template)
        if tpl is None:
            raise Refusal("coupon_unknown_template", "没有这种优惠券", template=template)
        done, res = await self.store.seen(member_id, ref)
        if done:
            return res
        m = await self.store.get(member_id)
        if m is None:
            raise Refusal("member_not_found", "未找到会员")
        coupons.check_issue(m, tpl)
        takes = [(template, ref)]
        if offer is not None:
            offers.check(m, offer, now)
            if offer.limited:
                takes.append((keys.offer_stock(offer.key), ref))
                if await self.store.stock(takes[1][0]) == 0:
                    raise offers.sold_out(offer)
        await self.ensure_stock(templates=(template,), items=(offer,) if offer else ())
        code = await self._claim_new(
            "coupon_code", lambda: random_code(coupons.CODE_ALPHABET, coupons.CODE_LENGTH),
            member_id)

        def body(m: Member) -> tuple[dict, list[Entry]]:
            if offer is not None:
                offers.check(m, offer, now)
            entries = points.spend(m, spend_points, ref, now, self.rules, reason="exchange")
            c, more = coupons.issue(m, tpl, code, ref, now, self.rules)
            extra: dict = {}
            if offer is not None:
                c.offer, c.cash_fen = offer.key, offer.cash_fen
                extra = {"offer": offer.key, "cash_fen": offer.cash_fen}
                for e in more:  # the coupon_issue entry: what the till collects is audited
                    e.data.update(extra)
            if audit is not None:
                more = [*more, Entry("staff_coupon", ts(now), ref=ref,
                                     data={**audit, "template": tpl.key, "code": c.code})]
            return {"code": c.code, "template": tpl.key, "name": tpl.name,
                    "label": tpl.label(), "valid_until": c.valid_until,
                    "points_spent": spend_points, **extra}, entries + more

        try:
            # the coupon and its units of stock are one commit: a refused or retried issue
            # never takes a unit it does not keep
            res = await self.run(member_id, now, body, key=ref, takes=tuple(takes))
        except OutOfStock as e:
            await self.store.release("coupon_code", code, member_id)
            if offer is not None and e.template == keys.offer_stock(offer.key):
                raise offers.sold_out(offer) from None
            raise Refusal("coupon_out_of_stock", f"{tpl.name}已领完") from None
        except Refusal:
            await self.store.release("coupon_code", code, member_id)
            raise
        if res["code"] != code:  # a concurrent retry of the same ref issued it
            await self.store.release("coupon_code", code, member_id)
        return res

    async def redeem_coupon(self, code: str, order_id: str, amount_fen: int,
                            now: datetime) -> dict:
        code = code.strip().upper()
        if not coupons.valid_code(code):
            raise Refusal("coupon_not_found", "未找到该优惠券", code=code)
        mid = await self.store.lookup("coupon_code", code)
        if mid is None:
            raise Refusal("coupon_not_found", "未找到该优惠券", code=code)

        def body(m: Member) -> tuple[dict, list[Entry]]:
            c, off, entries = coupons.redeem(m, code, order_id, amount_fen, now, self.rules)
            # 积分+现金: the till collects the coupon's cash besides the discount
            return {"code": c.code, "order_id": order_id, "discount_fen": off,
                    "cash_fen": c.cash_fen, "member_code": m.member_code,
                    "template": c.template, "amount_fen": amount_fen}, entries

        res = await self.run(mid, now, body, key=keys.redeem(code, order_id))
        if res.get("amount_fen", amount_fen) != amount_fen:  # a replay with another amount
            raise Refusal("coupon_conflict", "该优惠券已按另一金额用于此订单", code=code,
                          amount_fen=res["amount_fen"])
        return res

    # -- orders --------------------------------------------------------------------------------
    async def record_order(self, member_id: str, order_id: str, amount_fen: int,
                           paid_at: datetime, now: datetime, *, store_id: str = "",
                           coupon_code: str | None = None, points_used: int = 0,
                           body_hash: str = "") -> dict:
        """Record an order once per ``order_id``; the same id with another body is a conflict."""
        if coupon_code:  # another member's coupon: say so, as POST /api/coupons/redeem does
            holder = await self.store.lookup("coupon_code", coupon_code.strip().upper())
            if holder is not None and holder != member_id:
                raise Refusal("coupon_owner", "该优惠券不属于此会员", code=coupon_code)
        if await self.store.lookup("order", order_id) not in (None, member_id):
            raise Refusal("order_conflict", "订单号已被其他会员使用", order_id=order_id)
        try:
            # only the commit that records the order binds its id: a refused one leaves it
            # free; a campaign's budget is taken for it as the step asks (campaign_grants)
            res = await with_grants(self.store, keys.order(order_id), lambda grants: self.run(
                member_id, now, lambda m: orders.record(
                    m, order_id, amount_fen, paid_at, now, self.rules, store_id=store_id,
                    coupon_code=coupon_code, points_used=points_used, body_hash=body_hash,
                    grants=grants), key=keys.order(order_id), claims=(("order", order_id),)))
        except UniqueTaken as e:
            raise Refusal("order_conflict", "订单号已被其他会员使用", order_id=order_id) from e
        if body_hash and res.get("body_hash") and res["body_hash"] != body_hash:
            raise Refusal("order_conflict", "订单号已存在且内容不同", order_id=order_id)
        return res

    async def refund(self, order_id: str, refund_id: str, amount_fen: int | None,
                     now: datetime) -> dict:
        """Refund once per ``refund_id``; refund ids are unique across members, and only a
        recorded refund binds its id."""
        mid = await self.store.lookup("order", order_id)
        if mid is None:
            raise Refusal("order_not_found", "未找到该订单", order_id=order_id)
        conflict = Refusal("refund_conflict", "退款单号已存在且内容不同", refund_id=refund_id)
        if await self.store.lookup("refund", refund_id) not in (None, mid):
            raise conflict
        try:
            return await self.run(mid, now, lambda m: orders.refund(
                m, order_id, refund_id, amount_fen, now, self.rules), key=keys.refund(refund_id),
                claims=(("refund", refund_id),))
        except UniqueTaken as e:
            raise conflict from e

    # -- tasks (任务积分) ------------------------------------------------------------------------
    async def report_task(self, member_id: str, event_id: str, task: str, at: datetime,
                          now: datetime) -> dict:
        """A reported task completion, rewarded once per ``event_id`` (unique across
        members); the same id with another task or time is a conflict."""
        conflict = Refusal("event_conflict", "事件号已存在且内容不同", event_id=event_id)
        if await self.store.lookup("event", event_id) not in (None, member_id):
            raise conflict
        try:
            res = await self.run(member_id, now, lambda m: tasks.complete(
                m, self.rules.tasks, task, event_id, at, now, self.rules),
                key=keys.task_event(event_id), claims=(("event", event_id),))
        except UniqueTaken as e:
            raise conflict from e
        if res["task"] != task or res["at"] != int(at.timestamp()):
            raise conflict
        m = await self.store.get(member_id)
        return {**res, "member_code": m.member_code if m else ""}

    def task_board(self, m: Member, now: datetime) -> list[dict]:
        """The tasks open today with the member's progress (chat 任务)."""
        today = local_day(now, self.rules.tz)
        return [tasks.progress(m, t, today) for t in self.rules.tasks.values()
                if t.open_on(today)]

    # -- staff and housekeeping -------------------------------------------------------------------
    async def adjust_points(self, member_id: str, delta: int, reason: str, staff: str,
                            now: datetime, *, key: str, via: str = "") -> dict:
        """A staff adjustment with a reason, capped by the rules, written to the ledger."""
        cap = self.rules.staff.adjust_cap
        if not reason.strip():
            raise Refusal("adjust_reason", "调整积分必须填写原因")
        if delta == 0 or abs(delta) > cap:
            raise Refusal("adjust_cap", f"单次调整需在 1 到 {cap} 分之间", cap=cap)

        def body(m: Member) -> tuple[dict, list[Entry]]:
            day = local_day(now, self.rules.tz)
            before = points.balance(m, day)
            if delta > 0:
                more = points.credit(m, delta, key, now, now, self.rules, reason="adjust")
            else:
                more = points.spend(m, -delta, key, now, self.rules, reason="adjust")
            bal = points.balance(m, day)
            audit = Entry("adjust", ts(now), points=0, ref=key,
                          data={"staff": staff, "reason": reason, "delta": delta,
                                "before": before, "after": bal,
                                **({"via": via} if via else {})})
            return {"delta": delta, "balance": bal}, [audit, *more]

        return await self.run(member_id, now, body, key=keys.staff_adjust(key))

    async def tag(self, member_id: str, now: datetime, *, add: tuple[str, ...] = (),
                  remove: tuple[str, ...] = (), by: str = "") -> dict:
        """Operator tags (indexed as ``tags``): add and remove, audited in the ledger."""
        add_t, rm_t = [_tag(t) for t in add], [" ".join(t.split()) for t in remove]

        def body(m: Member) -> tuple[dict, list[Entry]]:
            before = list(m.tags)
            tags = [t for t in before if t not in rm_t]
            tags += [t for t in dict.fromkeys(add_t) if t not in tags]
            if len(tags) > MAX_TAGS:
                raise Refusal("tags_too_many", f"每位会员最多 {MAX_TAGS} 个标签", max=MAX_TAGS)
            m.tags = tags
            added = [t for t in tags if t not in before]
            removed = [t for t in before if t not in tags]
            entries = [Entry("tag", ts(now), data={"add": added, "remove": removed, "by": by})]
            return {"tags": tags}, entries if added or removed else []

        return await self.run(member_id, now, body)

    async def refresh(self, member_id: str, now: datetime) -> dict:
        """Settle expiry, tier and RFM as of ``now`` (nightly jobs); ``cleaned`` counts what
        changed: points and coupons expired, stock returned, tiers, grace, RFM segment."""

        def step(m: Member | None) -> Change:
            if m is None:
                raise Refusal("member_not_found", "未找到会员", member_id=member_id)
            segment = m.rfm
            entries, returns = self.normalise(m, now)
            change = self._finish(m, now, None, entries, returns)
            cleaned = {
                "points_expired": -sum(e.points for e in entries if e.kind == "expire"),
                "coupons_expired": sum(e.kind == "coupon_expire" for e in entries),
                "stock_returned": len(returns),
                "tiers_lowered": sum(e.kind == "tier_change" and not e.data.get("up")
                                     for e in entries),
                "tiers_raised": sum(e.kind == "tier_change" and bool(e.data.get("up"))
                                    for e in entries),
                "grace_started": sum(e.kind == "grace_start" for e in entries),
                "grace_ended": sum(e.kind == "grace_end" for e in entries),
                "segments_changed": int(m.rfm != segment),
            }
            change.result = {"tier": m.tier, "cleaned": cleaned}
            return change

        return await self._update(member_id, step, None)

    # -- read models ------------------------------------------------------------------------------
    def card(self, m: Member, now: datetime) -> dict:
        """Everything a reply, the sidebar or the API shows about a member, as of ``now``."""
        today = local_day(now, self.rules.tz)
        soon, soon_day = points.expiring_within(m, today, 30, self.rules)
        pend, pend_day = points.pending(m, today)
        return {
            "member_id": m.id, "member_code": m.member_code,
            "balance": points.balance(m, today, self.rules),
            "debt": m.debt, "expiring_points": soon, "expiring_on": soon_day,
            "pending_points": pend, "pending_until": pend_day,
            "progress": tiers.progress(m, now, self.rules), "invite_code": m.invite_code,
            "invited": m.invited_total, "streak": m.checkin_streak,
            "checked_in_today": m.checkin_last == today.isoformat(),
            "coupons": [{"code": c.code, "template": c.template,
                         "name": self.rules.coupons[c.template].name
                         if c.template in self.rules.coupons else c.template,
                         "valid_until": c.valid_until, "cash_fen": c.cash_fen}
                        for c in coupons.valid(m, now)],
            "opted_out": m.opted_out, "rfm": m.rfm, "tags": list(m.tags),
            "followed": m.followed,
        }
