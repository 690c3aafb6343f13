"""Registration use cases, mixed into :class:`bot.members.Members`: a follower becomes a
member (its member code and invite code claimed unique, the welcome coupon given once), in as
few commits as the path allows. Safe to repeat and to run concurrently."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from storage.base import OutOfStock, UniqueTaken

from . import keys
from .rules import coupons, invites
from .rules.models import Change, Entry, Member, Refusal
from .rules.timeutil import ts

log = logging.getLogger("memberbot.members")


def random_code(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_member_code() -> str:
    return str(secrets.randbelow(9 * 10**11) + 10**11)  # 12 digits, no leading zero


class Registration:
    """Needs the Members internals: store, rules, normalise, _finish, _update, issue_coupon,
    ensure_stock."""

    async def _claim_new(self, kind: str, make: Callable[[], str], member_id: str) -> str:
        for _ in range(20):
            value = make()
            if await self.store.claim(kind, value, member_id) == member_id:
                return value
        raise RuntimeError(f"could not find a free {kind}")

    async def _fresh_codes(self, member_id: str) -> tuple[str, str]:
        """A new member's member code and invite code, each claimed unique in the store."""
        code = await self._claim_new("member_code", new_member_code, member_id)
        invite = await self._claim_new(
            "invite_code",
            lambda: random_code(invites.INVITE_ALPHABET, invites.INVITE_LENGTH),
            member_id)
        return code, invite

    async def _release_unused(self, member_id: str, code: str, invite: str) -> Member:
        """The committed member; codes claimed for it that a concurrent creation made
        unnecessary are given back."""
        m = await self.store.get(member_id)
        for kind, value in (("member_code", code), ("invite_code", invite)):
            if value and value not in (m.member_code, m.invite_code):
                await self.store.release(kind, value, member_id)
        return m

    async def register(self, openid: str, now: datetime, *, unionid: str | None = None,
                       nickname: str | None = None) -> dict:
        """Follow: create the member (or re-activate, or link by unionid) and give the
        new-member coupon once. Safe to repeat and to run concurrently."""
        mid = await self.store.lookup("openid", openid)
        if mid is None and not unionid:
            joined = await self._join(openid, now, nickname)
            if joined is not None:
                return joined
            mid = await self.store.lookup("openid", openid)  # registered concurrently
        if mid is None and unionid:
            mid = await self.store.lookup("unionid", unionid)
        if mid is None:
            mid = secrets.token_hex(8)
        union_owner = None
        if unionid:  # a WeCom contact linked concurrently may own the unionid: join it
            mid = union_owner = await self.store.claim("unionid", unionid, mid)
        # the openid decides last: an existing follower keeps its member
        mid = await self.store.claim("openid", openid, mid)
        if unionid and union_owner != mid:
            # a follower who joined before its unionid was known, and a WeCom contact that
            # became a member meanwhile: two records of one person. Never write the unionid
            # onto a second member; leave the pair for an operator to merge.
            log.warning("members %s and %s share a unionid: merge them", mid, union_owner)
            unionid = None
        existing = await self.store.get(mid)
        code, invite = ("", "") if existing is not None else await self._fresh_codes(mid)

        def step(m: Member | None) -> Change:
            if m is None:
                return self._new_member(mid, openid, now, code, invite, unionid=unionid,
                                        nickname=nickname)
            entries, returns = self.normalise(m, now)
            m.openid = m.openid or openid
            m.unionid = m.unionid or unionid
            reactivated = not m.followed
            if reactivated:
                m.followed, m.unfollowed_at = True, None
                entries.append(Entry("refollow", ts(now)))
            elif m.openid == openid and not m.joined_at:
                m.joined_at = ts(now)
            m.last_activity = ts(now)
            return self._finish(m, now, {"new": False, "reactivated": reactivated}, entries,
                                returns)

        res = await self._update(mid, step, None)
        m = await self._release_unused(mid, code, invite)
        return await self._welcome({**res, "member_id": mid, "member_code": m.member_code,
                                    "invite_code": m.invite_code}, now)

    def _new_member(self, mid: str, openid: str, now: datetime, code: str, invite: str, *,
                    unionid: str | None = None, nickname: str | None = None,
                    then: Callable[[Member], tuple] | None = None) -> Change:
        """The change creating a member; ``then`` (a step body) runs on it before its
        indexes are derived and gives the change's result."""
        m = Member(id=mid, member_code=code, openid=openid, unionid=unionid, nickname=nickname,
                   joined_at=ts(now), last_activity=ts(now), invite_code=invite,
                   tier=self.rules.tiers[0].key)
        entries = [Entry("join", ts(now), ref=keys.register(openid), data={"followed": True})]
        result: Any = {"new": True, "reactivated": False}
        if then is not None:
            result, more = then(m)[:2]
            entries += more
        return self._finish(m, now, result, entries, [])

    async def _join(self, openid: str, now: datetime, nickname: str | None) -> dict | None:
        """A follower never seen, in one commit instead of one per part: the member with its
        openid, member code and invite code claims (the openid's is where concurrent first
        messages meet: one commit wins it, the others write nothing) and the welcome coupon
        with its code's claim and unit of stock under the coupon's key (as ``issue_coupon``
        would, so a later issue under that key finds it); without stock or coupon, the member
        alone (on Redis Cluster the openid's claim goes first, in a commit of its own: see
        ``Store.claims_at_commit``). None when the openid is another member's or the member
        was created meanwhile: the general path goes on."""
        tpl = self.rules.coupons.get("welcome")
        if tpl is not None:
            await self.ensure_stock(templates=("welcome",), items=())
        mid = secrets.token_hex(8)
        if not self.store.claims_at_commit and \
                await self.store.claim("openid", openid, mid) != mid:
            return None  # (Redis Cluster) the openid's own commit first: see Store
        ref = keys.coupon(mid, "welcome", "join")
        for _ in range(20):
            code = new_member_code()
            invite = random_code(invites.INVITE_ALPHABET, invites.INVITE_LENGTH)
            coupon = random_code(coupons.CODE_ALPHABET, coupons.CODE_LENGTH) if tpl else None

            def give(m: Member, coupon: str | None = coupon,
                     tpl: Any = tpl) -> tuple[dict, list[Entry]]:
                c, more = coupons.issue(m, tpl, coupon, ref, now, self.rules)
                return {"code": c.code, "template": tpl.key, "name": tpl.name,
                        "label": tpl.label(), "valid_until": c.valid_until,
                        "points_spent": 0}, more

            def step(m: Member | None, code: str = code, invite: str = invite,
                     coupon: str | None = coupon,
                     give: Callable[[Member], tuple] = give) -> Change:
                if m is not None:  # created meanwhile by the general path: none written
                    raise UniqueTaken("member_id", mid, mid)
                change = self._new_member(mid, openid, now, code, invite, nickname=nickname,
                                          then=give if coupon else None)
                change.claims = [("openid", openid), ("member_code", code),
                                 ("invite_code", invite)]
                if coupon is not None:
                    change.claims.append(("coupon_code", coupon))
                    change.stock_takes = [("welcome", ref)]
                return change

            try:
                res = await self._update(mid, step, ref if coupon else None)
            except UniqueTaken as e:
                if e.kind in ("member_id", "openid"):  # another first message won
                    return None
                continue  # a member code, invite code or coupon code drawn twice
            except (OutOfStock, Refusal):
                tpl = None  # no welcome coupon to give: the member alone
                continue
            return {"new": True, "reactivated": False, "member_id": mid, "member_code": code,
                    "invite_code": invite, "coupon": res if coupon else None}
        raise RuntimeError("could not find a free member code and invite code")

    async def _welcome(self, res: dict, now: datetime) -> dict:
        """The new-member coupon, once (its ref is its key)."""
        mid = res["member_id"]
        coupon = None
        try:
            coupon = await self.issue_coupon(mid, "welcome", keys.coupon(mid, "welcome", "join"),
                                             now)
        except Refusal:
            pass  # out of stock or already had it: registration still succeeds
        if coupon is not None:  # a returning member hears of the coupon only while usable
            c = coupons.find(await self.store.get(mid), coupon["code"])
            if c is None or c.status != "issued" or c.valid_until < ts(now):
                coupon = None
        return {**res, "coupon": coupon}
