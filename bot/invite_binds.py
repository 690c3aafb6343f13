"""Invite use cases, mixed into :class:`bot.members.Members`: a member accepts another's
invite code; both sides are rewarded once, and no invite cycle stands, however many binds run
at the same time."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import AsyncIterator
from datetime import datetime

from storage.base import OutOfStock, StoreUnavailable

from . import keys
from .rules import coupons, invites, points
from .rules.models import Entry, Member, Refusal
from .rules.timeutil import ts

INVITE_CHAIN_MAX = 100
INVITE_LEASE_S = 10.0  # a bind holds it for milliseconds; a dead holder frees it this fast
INVITE_LEASE_WAIT_S = 5.0
BACKFILL_TRIES = 20


class _Moved(Exception):  # noqa: N818 - a retry signal inside the backfill
    """The member's invites changed after the ledger was read."""


def _backfill(counted: int, seen: int, now: datetime):
    """The step of :meth:`InviteBinds.backfill_invites`: ``counted`` rewarded invites read
    from the ledger while the member had ``seen`` invites."""

    def body(m: Member) -> tuple[dict, list[Entry]]:
        if m.invited_total != seen:  # an invite since the ledger was read
            raise _Moved
        before = m.invited_rewarded_total
        if counted <= before:
            return {"before": before, "after": before, "changed": False}, []
        m.invited_rewarded_total = counted
        return ({"before": before, "after": counted, "changed": True},
                [Entry("invite_backfill", ts(now), data={"before": before, "after": counted})])

    return body


class InviteBinds:
    """Needs the Members internals: store, rules, run."""

    async def bind_invite(self, invitee_id: str, code: str, now: datetime) -> dict:
        """Accept an invite: the invitee's side, then the inviter's, both under one key.

        The cycle check reads the inviter chain, which other members' binds change: binds
        take turns on a short lease of the invite graph while they read it and commit. Should
        a lease run out under a stalled process, the chain is read again after the commit and
        a bind that closed a cycle is reversed (with a ledger entry) before any inviter is
        rewarded. Never one transaction across members."""
        code = code.strip().upper()
        inviter_id = await self.store.lookup("invite_code", code)
        if inviter_id is None:
            raise Refusal("invite_unknown", "邀请码不存在，请核对后再试")
        key = keys.invite(invitee_id)
        async with self._invite_lease():
            inviter = await self.store.get(inviter_id)
            ancestors = await self._inviter_chain(inviter_id)
            res = await self.run(invitee_id, now,
                                 lambda m: self._bind(m, inviter, ancestors, now), key=key)
            if res["inviter_id"] != inviter_id:
                raise Refusal("invite_already", "你已绑定过邀请人，不能重复绑定")
            if invitee_id in await self._inviter_chain(inviter_id):
                await self._undo_bind(invitee_id, inviter_id, res["points"], now)
        if (await self.store.get(invitee_id)).inviter_id != inviter_id:
            raise Refusal("invite_cycle", "不能互相邀请")  # this bind closed a cycle: undone
        rew = await self._reward_inviter(inviter_id, invitee_id, key, now)
        return {**res, "inviter_points": rew["points"], "inviter_rewarded": rew["rewarded"]}

    async def _reward_inviter(self, inviter_id: str, invitee_id: str, key: str,
                              now: datetime) -> dict:
        """The inviter's reward and the ladder rung it reaches, in one step under ``key``.
        A rung with a coupon takes a claimed code and a unit of its stock in that commit; with
        none left, or a coupon the inviter may not receive, the rung gives its points alone
        (and says so in the ledger)."""
        ladder: dict = {}
        for _ in range(5):
            takes = ladder.pop("_takes", ())
            try:
                res = await self.run(inviter_id, now, lambda m, kw=ladder: invites.reward_inviter(
                    m, invitee_id, key, now, self.rules, **kw), key=key,
                    **({"takes": takes} if takes else {}))
            except invites.LadderCoupon as e:
                await self._drop_code(inviter_id, ladder)
                # a template first used by the ladder starts its stock, as an issue does
                await self.ensure_stock(templates=(e.rung.coupon,))
                code = await self._claim_new(
                    "coupon_code", lambda: "".join(
                        secrets.choice(coupons.CODE_ALPHABET)
                        for _ in range(coupons.CODE_LENGTH)), inviter_id)
                take = (e.rung.coupon, keys.invite_ladder(inviter_id, e.rung.invites))
                ladder = {"coupon_code": code, "coupon_rung": e.rung.invites,
                          "_takes": (take,)}
                continue
            except OutOfStock:
                await self._drop_code(inviter_id, ladder)
                ladder = {"out_of_stock": True}
                continue
            except invites.LadderCouponRefused:
                # the inviter may not receive it (any more): the rung counts without it
                await self._drop_code(inviter_id, ladder)
                ladder = {}
                continue
            got = ((res.get("ladder") or {}).get("coupon") or {}).get("code")
            if ladder.get("coupon_code") and ladder["coupon_code"] != got:
                await self._drop_code(inviter_id, ladder)
            return res
        raise StoreUnavailable("the invite ladder kept moving: retry later")

    async def _drop_code(self, member_id: str, ladder: dict) -> None:
        if ladder.get("coupon_code"):
            await self.store.release("coupon_code", ladder["coupon_code"], member_id)

    async def _inviter_chain(self, member_id: str) -> list[str]:
        """The ids above ``member_id`` (its inviter, that one's inviter, ...), as stored now."""
        chain: list[str] = [member_id]
        cur = await self.store.get(member_id)
        while cur is not None and cur.inviter_id and len(chain) <= INVITE_CHAIN_MAX:
            if cur.inviter_id in chain:
                break
            chain.append(cur.inviter_id)
            cur = await self.store.get(cur.inviter_id)
        return chain[1:]

    async def _undo_bind(self, invitee_id: str, inviter_id: str, pts: int,
                         now: datetime) -> None:
        def body(m: Member) -> tuple[dict, list[Entry]]:
            if m.inviter_id != inviter_id:
                return {"undone": False}, []
            m.inviter_id = None
            ref = keys.invite_undo(invitee_id)
            entries = [Entry("invite_cycle", ts(now), ref=ref, data={"inviter": inviter_id})]
            entries += points.reverse(m, pts, keys.invite(invitee_id), ref, now, self.rules,
                                      reason="invite_cycle")
            return {"undone": True}, entries

        await self.run(invitee_id, now, body, key=keys.invite_undo(invitee_id))

    async def backfill_invites(self, member_id: str, now: datetime) -> dict:
        """Count an inviter's rewarded invites of before the invite ladder (its ``inviter``
        credits in the ledger) on the member, so the ladder climbs from there. Idempotent:
        the count never goes down and a second run changes nothing. Rungs already passed
        are not rewarded afterwards. An invite committed meanwhile makes it read again."""
        for _ in range(BACKFILL_TRIES):
            m = await self.store.get(member_id)
            if m is None or not m.invited_total:
                return {"before": 0, "after": 0, "changed": False}
            rows = await self.store.ledger(member_id=member_id, kinds=["credit"],
                                           limit=10**9)
            counted = sum(1 for r in rows if r.data.get("reason") == "inviter")
            seen = m.invited_total
            if counted <= m.invited_rewarded_total:  # nothing to add (a second run)
                n = m.invited_rewarded_total
                return {"before": n, "after": n, "changed": False}

            try:
                return await self.run(member_id, now, _backfill(counted, seen, now),
                                      key=keys.invite_backfill(member_id, counted))
            except _Moved:
                continue
        raise StoreUnavailable(f"member {member_id} kept receiving invites: retry later")

    @contextlib.asynccontextmanager
    async def _invite_lease(self) -> AsyncIterator[None]:
        key, token = keys.invite_graph_lease(), secrets.token_hex(8)
        deadline = time.monotonic() + INVITE_LEASE_WAIT_S
        while not await self.store.kv_set(key, token, ttl=INVITE_LEASE_S, only_new=True):
            if time.monotonic() > deadline:
                raise StoreUnavailable("the invite graph stayed leased: retry later")
            await asyncio.sleep(random.uniform(0.002, 0.02))
        try:
            yield
        finally:
            await self.store.kv_delete(key, expect=token)

    def _bind(self, m: Member, inviter: Member, ancestors: list[str],
              now: datetime) -> tuple[dict, list[Entry]]:
        res, entries = invites.bind(m, inviter, ancestors, keys.invite(m.id), now, self.rules)
        return {**res, "inviter_id": inviter.id, "inviter_code": inviter.invite_code}, entries

