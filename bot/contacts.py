"""WeCom contact use cases, mixed into :class:`bot.members.Members`: a staff member and an
external contact connect (link to the OA member by unionid, or create one) or disconnect."""

from __future__ import annotations

import json
import secrets
from datetime import datetime

from . import keys
from .rules import wecom_tags
from .rules.models import Change, Entry, Member, Refusal
from .rules.timeutil import ts

INVITE_STATE = "inv_"
CHANNEL_STATES = ("store_", "cmp_")
MAX_STATE = 30  # WeCom: a contact way's state is at most 30 characters


class WeComContacts:
    """Needs the Members internals: store, rules, normalise, _finish, _update, _claim_new."""

    async def link_wecom(self, external_userid: str, now: datetime, *, staff: str,
                         unionid: str | None = None, follow_users: list[str] | None = None,
                         nickname: str | None = None) -> dict:
        """A WeCom external contact: the member already linked, else the one with the same
        unionid (an OA follower), else a new member as :meth:`register` makes one. Records the
        owner staff and ``follow_users``. Safe to repeat and to run concurrently."""
        linked = await self.store.lookup("external_userid", external_userid)
        mid = linked or (unionid and await self.store.lookup("unionid", unionid)) \
            or secrets.token_hex(8)
        if unionid:
            owner = await self.store.claim("unionid", unionid, mid)
            if linked is None:
                mid = owner
            elif owner != mid:
                unionid = None  # another member's: never merge two members silently
        mid = await self.store.claim("external_userid", external_userid, mid)
        existing = await self.store.get(mid)
        code, invite = ("", "") if existing is not None else await self._fresh_codes(mid)

        def step(m: Member | None) -> Change:
            entries, returns = [], []
            if m is None:
                m = Member(id=mid, member_code=code, unionid=unionid, nickname=nickname,
                           joined_at=ts(now), last_activity=ts(now), invite_code=invite,
                           tier=self.rules.tiers[0].key, followed=False)
                entries.append(Entry("join", ts(now), ref=f"wecom:{external_userid}",
                                     data={"via": "wecom", "followed": False}))
            else:
                entries, returns = self.normalise(m, now)
            follows = list(dict.fromkeys([*(follow_users or m.follow_users), staff]))
            m.external_userid, m.unionid = external_userid, m.unionid or unionid
            m.follow_users = follows
            before, waited = m.owner_userid, bool(m.owner_left)
            m.owner_left = {}  # a new owner is known: waiting pushes go out from it
            if m.owner_userid not in follows:
                m.owner_userid = staff
            entries.append(Entry("wecom_link", ts(now), data={"staff": staff}))
            out = self._owner_tags(m, before, waited)
            return self._finish(m, now, {"new": existing is None}, entries, returns, out)

        res = await self._update(mid, step, None)
        m = await self._release_unused(mid, code, invite)
        coupon = None
        if res["new"]:
            try:
                coupon = await self.issue_coupon(mid, "welcome",
                                                 keys.coupon(mid, "welcome", "join"), now)
            except Refusal:
                pass
        return {**res, "member_id": mid, "linked": existing is not None,
                "member_code": m.member_code, "coupon": coupon}

    async def attribute_contact(self, member_id: str, state: str, now: datetime) -> dict:
        """The ``State`` of the contact QR a WeCom contact came by: ``inv_<code>`` binds the
        invite exactly as the OA's invite QR does (same use case: rewards, caps, refusals);
        ``store_<id>`` / ``cmp_<campaign>`` are kept as the member's channel (the first one
        wins). Anything else is ignored."""
        if state.startswith(INVITE_STATE):
            try:
                return {"invite": await self.bind_invite(member_id, state[len(INVITE_STATE):],
                                                         now)}
            except Refusal as r:
                return {"refused": r.code}
        if not state.startswith(CHANNEL_STATES) or len(state) > MAX_STATE:
            return {}

        def body(m: Member) -> tuple[dict, list[Entry]]:
            if m.channel:
                return {"channel": m.channel}, []
            m.channel = state
            return {"channel": state}, [Entry("channel", ts(now), data={"channel": state})]

        return await self.run(member_id, now, body, key=keys.channel(member_id))

    async def begin_handover(self, member_id: str, frm: str, to: str, resigned: bool,
                             now: datetime) -> dict:
        """WeCom accepted to hand this customer of ``frm`` over to ``to``: pending until
        transfer_result decides (pushes wait meanwhile)."""

        def body(m: Member) -> tuple[dict, list[Entry]]:
            if m.owner_userid != frm:
                return {"started": False}, []
            m.handover = {"from": frm, "to": to, "resigned": resigned, "at": ts(now)}
            return {"started": True}, [Entry("handover_start", ts(now), data={
                "from": frm, "to": to, "resigned": resigned})]

        return await self.run(member_id, now, body)

    async def end_handover(self, member_id: str, to: str, now: datetime, *, taken_over: bool,
                           reason: str = "") -> dict:
        """The handover to ``to`` is decided: taken over → ``to`` is the owner (and the old
        owner no longer a follow user); else it ends and the member keeps its owner."""

        def body(m: Member) -> tuple[dict, list[Entry]]:
            h = m.handover
            if not h or h.get("to") != to:
                return {"changed": False}, []
            m.handover = {}
            out: list[dict] = []
            if taken_over:
                m.owner_userid, m.owner_left = to, {}
                m.follow_users = list(dict.fromkeys(
                    [to, *[u for u in m.follow_users if u != h["from"]]]))
                out = self._owner_tags(m, h["from"], True)  # same commit: marked once
            return {"changed": True}, [Entry("handover_end", ts(now), data={
                "from": h["from"], "to": to, "taken_over": taken_over, "reason": reason})], out

        return await self.run(member_id, now, body)

    async def unlink_wecom(self, external_userid: str, staff: str, now: datetime) -> dict:
        """Staff and contact no longer connected: the customer deleted the staff member
        (del_follow_user) or the staff member deleted the customer (del_external_contact).
        The owner passes to another follow user, else the member has no WeCom owner any more
        (a push goes by the OA fallback or is unreachable: nobody can reach them on WeCom)."""
        mid = await self.store.lookup("external_userid", external_userid)
        if mid is None:
            return {"changed": False}

        def body(m: Member) -> tuple[dict, list[Entry], list[dict]]:
            if staff not in m.follow_users and m.owner_userid != staff:
                return {"changed": False, "member_id": m.id}, [], []
            m.follow_users = [u for u in m.follow_users if u != staff]
            out: list[dict] = []
            if m.owner_userid == staff:
                m.owner_userid = m.follow_users[0] if m.follow_users else None
                m.owner_left = {}
                out = self._owner_tags(m, staff, False)
            return {"changed": True, "member_id": m.id}, [
                Entry("wecom_unlink", ts(now), data={"staff": staff})], out

        return await self.run(mid, now, body)

    # -- a staff member leaves the company (address book: change_contact / delete_user) -------
    async def staff_left(self, staff: str, now: datetime) -> int:
        """``staff`` left the company: each customer it owns passes to another follow user,
        or keeps ``staff`` as owner and waits (``owner_left``) for a handover (离职继承) or a
        new contact; its pushes are held, never failed. The departure is noted in the store
        first and dropped when every customer is done, so a crash midway is finished by
        :meth:`finish_departures` (the handover job runs it). Returns the members changed."""
        await self.note_departure(staff, now)
        changed = 0
        after = ""
        while ids := await self.store.tagged("owner", staff, after=after, limit=500):
            for mid in ids:
                changed += bool((await self.owner_departed(mid, staff, now))["changed"])
            after = ids[-1]
        await self._departures_edit(lambda d: {k: v for k, v in d.items() if k != staff})
        return changed

    async def note_departure(self, staff: str, now: datetime) -> None:
        """Note in the store that ``staff`` left (before its customers are marked)."""
        await self._departures_edit(lambda d: d if staff in d else {**d, staff: ts(now)})

    async def finish_departures(self, now: datetime) -> int:
        """Finish every departure a crash left half done (see :meth:`staff_left`)."""
        raw = await self.store.kv_get(keys.staff_departures())
        return sum([await self.staff_left(s, now) for s in json.loads(raw or "{}")])

    async def owner_departed(self, member_id: str, staff: str, now: datetime) -> dict:
        """One customer of a staff member who left (see :meth:`staff_left`); idempotent."""

        def body(m: Member) -> tuple[dict, list[Entry], list[dict]]:
            if m.owner_userid != staff or m.owner_left or not m.external_userid:
                return {"changed": False}, [], []
            m.follow_users = [u for u in m.follow_users if u != staff]
            out: list[dict] = []
            if m.follow_users:
                m.owner_userid = m.follow_users[0]
                out = self._owner_tags(m, staff, False)
            else:
                m.owner_left = {"staff": staff, "at": ts(now)}
            return {"changed": True}, [Entry("owner_left", ts(now), data={
                "staff": staff, "waiting": bool(m.owner_left)})], out

        return await self.run(member_id, now, body)

    async def _departures_edit(self, edit) -> None:
        key = keys.staff_departures()
        for _ in range(50):  # compare-and-set: concurrent departures never lose each other
            raw = await self.store.kv_get(key)
            old = json.loads(raw or "{}")
            new = edit(old)
            if new == old:
                return
            if not new:
                if await self.store.kv_delete(key, expect=raw):
                    return
                continue
            value = json.dumps(new, sort_keys=True)
            if raw is None:
                if await self.store.kv_set(key, value, only_new=True):
                    return
            elif await self.store.kv_set(key, value, expect=raw):
                return
        raise RuntimeError("staff departures kept changing under this update")

    def _owner_tags(self, m: Member, before: str | None, waited: bool) -> list[dict]:
        """The tag mark for a new owner (or a relation made anew), in the same commit."""
        if not m.wecom_tags or (m.owner_userid == before and not waited):
            return []
        row = wecom_tags.remark(m, self.rules.tier(m.tier).name, m.owner_userid or "")
        return [row] if row else []

