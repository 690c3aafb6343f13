"""Use cases of the member card in WeChat's card wallet (rules/card.py, PRODUCT 5b).

Taking the card binds its code to the member; the activation form completes the profile and
activates the card with the member's state in the same commit (an outbox entry the card
sync sends); deleting the card unbinds it and keeps the member's data.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson

from . import analytics, card_sync, keys
from .rules import card, points, profile
from .rules.models import Entry, Member, Refusal
from .rules.timeutil import local_day, ts

log = logging.getLogger("memberbot.card")

FORM_FLAGS = {"USER_FORM_INFO_FLAG_MOBILE": "phone", "USER_FORM_INFO_FLAG_BIRTHDAY": "birthday",
              "USER_FORM_INFO_FLAG_SEX": "gender"}


def form_values(info: dict) -> dict[str, str]:
    """phone / birthday / gender from ``card/membercard/userinfo/get``'s answer."""
    out: dict[str, str] = {}
    for f in (info.get("user_info") or {}).get("common_field_list") or []:
        name = FORM_FLAGS.get(str(f.get("name", "")))
        value = str(f.get("value", "")).strip()
        if name and value:
            out[name] = value
    return out


class CardHolders:
    """Needs the Members internals: store, rules, run, normalise, _finish."""

    store: Any
    rules: Any

    def _tier_name(self, m: Member) -> str:
        return self.rules.tier(m.tier).name

    async def bind_card(self, member_id: str, card_id: str, code: str, now: datetime, *,
                        channel: str = "", restored: bool = False, key: str) -> dict:
        """``user_get_card``: the card code belongs to the member from now on. A restored
        card (taken back from the wallet's history) is active as it was."""

        def body(m: Member) -> tuple[dict, list[Entry], list[dict]]:
            again = m.card_code == code and m.card_id == card_id
            outbox = []
            if not again:
                was_active = m.card_active
                m.card_id, m.card_code, m.card_channel = card_id, code, channel or None
                m.card_got_at, m.card_active = ts(now), False
                if restored and (was_active or m.profile_rewarded):
                    bal = points.balance(m, local_day(now, self.rules.tz))
                    outbox.append(card.restore(m, bal, self._tier_name(m)))
            entries = [] if again else [Entry("card_get", ts(now), ref=code, data={
                "card_id": card_id, "channel": channel, "restored": restored})]
            return {"card_code": code, "again": again}, entries, outbox

        return await self.run(member_id, now, body, key=keys.card_event(key))

    async def submit_card_form(self, member_id: str, code: str, info: dict, now: datetime, *,
                               key: str) -> dict:
        """``submit_membercard_user_info``: store the form (完善资料, the bonus once) and
        activate the card with the resulting balance and tier, in one commit."""
        values = form_values(info)
        phone = values.get("phone")
        if phone is not None:
            try:
                phone = profile.normal_phone(phone)
            except Refusal:
                phone = None  # a form value WeChat accepted but we cannot use: not stored
        if phone is not None and await self.store.claim("phone", phone, member_id) != member_id:
            phone = None  # another member's phone: the card still activates, the phone waits

        def body(m: Member) -> tuple[dict, list[Entry], list[dict]]:
            if m.card_code != code:
                raise Refusal("card_not_bound", "会员卡未绑定", code=code)
            birthday = values.get("birthday")
            if birthday is not None:
                try:
                    profile.normal_birthday(birthday, now, self.rules)
                except Refusal:
                    birthday = None
            res, entries = profile.update(m, now, self.rules, phone=phone, birthday=birthday,
                                          gender=values.get("gender"), source="card")
            outbox = []
            if not m.card_active:
                bal = points.balance(m, local_day(now, self.rules.tz))
                outbox.append(card.activate(m, bal, self._tier_name(m)))
                entries.append(Entry("card_activate", ts(now), ref=code,
                                     data={"bonus": bal, "tier": m.tier}))
            return {**res, "activated": bool(outbox)}, entries, outbox

        return await self.run(member_id, now, body, key=keys.card_event(key))

    async def unbind_card(self, member_id: str, code: str, now: datetime, *, key: str,
                          reason: str = "user_del_card") -> dict:
        """``user_del_card`` (or WeChat saying the code is gone): unbind, keep the data."""

        def body(m: Member) -> tuple[dict, list[Entry]]:
            if not code or m.card_code != code:
                return {"unbound": False}, []
            m.card_code, m.card_active = None, False
            return {"unbound": True}, [Entry("card_del", ts(now), ref=code,
                                             data={"reason": reason})]

        return await self.run(member_id, now, body, key=keys.card_event(key))

    # -- the card itself (module functions below), for handlers and commands -----------------
    async def card_definition(self) -> dict | None:
        return await definition(self.store)

    async def create_card(self, api: Any, now: datetime) -> dict:
        return await create_card(self.store, api, self.rules, now)

    async def update_card(self, api: Any) -> dict:
        return await update_card(self.store, api, self.rules)

    async def card_qr(self, api: Any, outer_str: str, code: str | None = None) -> str | None:
        return await card_qr(self.store, api, outer_str, code)

    async def card_overview(self, api: Any | None) -> dict:
        """What /admin shows: the card, its QR code, holders, sync backlog and failures."""
        known = await definition(self.store)
        qr = None
        if known is not None and api is not None:
            try:
                qr = await card_qr(self.store, api, "admin")
            except Exception as e:  # the page still shows the rest
                log.warning("card QR code not created: %s", e)
        counts = await card_sync.backlog(self.store)
        failures = await self.store.outbox(status=card_sync.FAILED, limit=10**6)
        return {"card_id": known and known["card_id"], "qr": qr,
                "figures": await analytics.card_figures(self.store, self.rules),
                "backlog": counts[card_sync.PENDING] + counts[card_sync.SENDING],
                "failed": len(failures),
                "recent": [{"member": r.member_id, "error": r.data.get("error"),
                            "errmsg": r.data.get("errmsg", "")} for r in failures[-5:]]}

    async def card_updated(self, member_id: str, code: str, data: dict, now: datetime, *,
                           key: str) -> dict:
        """``update_member_card``: WeChat's notice that the card changed, recorded."""
        return await self.run(member_id, now, lambda m: (
            {"recorded": True}, [Entry("card_updated", ts(now), ref=code, data=data)]),
            key=keys.card_event(key))


# -- the card itself: created once, its id kept in the store --------------------------------
QR_CACHE_SECONDS = 7 * 86400


async def definition(store: Any) -> dict | None:
    """The created card: ``{"card_id", "created_at", ...}``, or ``None`` before create."""
    raw = await store.kv_get(keys.CARD_DEFINITION)
    return orjson.loads(raw) if raw else None


async def create_card(store: Any, api: Any, rules: Any, now: datetime) -> dict:
    """``card/create`` then ``activateuserform/set`` (and 支付即会员 when configured); the
    card id is kept in the store. A card created before is kept: create runs once."""
    if rules.card is None:
        raise Refusal("card_not_configured", "rules file has no [card] section")
    known = await definition(store)
    if known is not None:
        return {**known, "created": False}
    card_id = await api.create(rules.card, rules.tiers)
    rec = {"card_id": card_id, "created_at": ts(now), "form": False, "pay_gift": None}
    await store.kv_set(keys.CARD_DEFINITION, orjson.dumps(rec).decode())
    await api.set_form(rules.card, card_id)
    rec["form"] = True
    if rules.card.pay_gift is not None:
        res = await api.pay_gift(rules.card, card_id)
        rec["pay_gift"] = res.get("rule_id")
    await store.kv_set(keys.CARD_DEFINITION, orjson.dumps(rec).decode())
    return {**rec, "created": True}


async def update_card(store: Any, api: Any, rules: Any) -> dict:
    """``card/update``: push a changed definition of the card created before."""
    known = await definition(store)
    if rules.card is None or known is None:
        raise Refusal("card_not_created", "no card yet: run memberbot card create first")
    res = await api.update(rules.card, rules.tiers, known["card_id"])
    await api.set_form(rules.card, known["card_id"])
    return {"card_id": known["card_id"], "send_check": bool(res.get("send_check"))}


async def card_qr(store: Any, api: Any, outer_str: str, code: str | None = None) -> str | None:
    """The URL of a QR code that gives the card (cached), or ``None`` before create."""
    known = await definition(store)
    if known is None:
        return None
    cache = keys.card_qr(f"{outer_str}:{code or ''}")
    url = await store.kv_get(cache)
    if url:
        return url
    res = await api.qrcode(known["card_id"], outer_str=outer_str, code=code)
    url = res.get("show_qrcode_url") or res.get("url")
    if url:
        await store.kv_set(cache, url, ttl=QR_CACHE_SECONDS)
    return url
