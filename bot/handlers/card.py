"""The member card on ``/wechat``: its events, the ``会员卡`` command, and the card sync that
runs in every serving process (rules/card.py, bot/cards.py, bot/card_sync.py).

Without a ``[card]`` section nothing here changes anything: the events are acknowledged and
``会员卡`` answers like ``会员``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ..channels.wechat_card import CardAPI
from ..context import CTX, Context
from ..rules import tiers
from ..templating import render
from .commands import Turn, router
from .wxproto import CARD_EVENTS

log = logging.getLogger("memberbot.card")

EVENTS = CARD_EVENTS
NEEDS_MEMBER = {"submit_membercard_user_info", "user_del_card", "update_member_card"}


def card_api(t: Turn) -> CardAPI | None:
    client = t.wechat
    return None if client is None else CardAPI(client)


@router.command("会员卡", "开卡", "领卡", menu="MEMBER_CARD", help="领取微信会员卡")
async def member_card(t: Turn) -> str:
    m = await t.member()
    qr = None
    api = card_api(t)
    if t.rules.card is not None and api is not None:
        try:  # a QR code that gives this member's card: card code = member code
            qr = await t.members.card_qr(api, "chat", m.member_code)
        except Exception as e:  # the member code alone still works at the counter
            log.warning("card QR for member %s not created: %s", m.id, e)
    return render("replies/card.j2", member_code=m.member_code,
                  progress=tiers.progress(m, t.now, t.rules), card_qr=qr,
                  carded=bool(m.card_code), active=m.card_active)


@router.event("user_get_card")
async def user_get_card(t: Turn) -> None:
    f = t.msg.fields
    code, card_id = f.get("UserCardCode", ""), f.get("CardId", "")
    if code and card_id:
        await t.members.bind_card(t.member_id, card_id, code, t.now,
                                  channel=f.get("OuterStr", "")[:64],
                                  restored=f.get("IsRestoreMemberCard") == "1",
                                  key=t.msg.dedup_key)
    return None


@router.event("submit_membercard_user_info")
async def submit_form(t: Turn) -> None:
    f = t.msg.fields
    code, card_id = f.get("UserCardCode", ""), f.get("CardId", "")
    api = card_api(t)
    if not code or not card_id:
        return None
    if api is None:
        log.error("card form of member %s not read: WECHAT_APPID/APPSECRET not set", t.member_id)
        return None
    info = await api.user_info(card_id, code)
    await t.members.submit_card_form(t.member_id, code, info, t.now, key=t.msg.dedup_key)
    return None


@router.event("user_del_card")
async def user_del_card(t: Turn) -> None:
    await t.members.unbind_card(t.member_id, t.msg.fields.get("UserCardCode", ""), t.now,
                                key=t.msg.dedup_key)
    return None


@router.event("update_member_card")
async def update_member_card(t: Turn) -> None:
    f = t.msg.fields
    data = {k: f[k] for k in ("CardId", "ModifyBonus", "ModifyBalance") if k in f}
    await t.members.card_updated(t.member_id, f.get("UserCardCode", ""), data, t.now,
                                 key=t.msg.dedup_key)
    return None


async def _sync(app: web.Application) -> AsyncIterator[None]:
    """The card sender of this process: started after the OA client exists, and draining
    what a crashed process left as soon as it starts."""
    ctx: Context = app[CTX]
    client = ctx.oa
    sync = None
    if ctx.rules.card is not None and client is not None:
        sync = ctx.new_card_sync(CardAPI(client))
        ctx.members.on_card = sync.wake
        sync.start()
        ctx.card_sync = sync
    elif ctx.rules.card is not None:
        ctx.problems["card_sync"] = ("[card] is configured but WECHAT_APPID/WECHAT_APPSECRET "
                                     "are not: the card is not kept in sync")
    yield
    if sync is not None:
        ctx.members.on_card = None
        await sync.stop()
        ctx.card_sync = None


def setup(app: web.Application) -> None:
    """After ``oa.setup``: its cleanup context opens the OA client this one uses."""
    app.cleanup_ctx.append(_sync)
