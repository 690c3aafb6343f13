"""Chat commands and events of the Official Account (PRODUCT.md section 3).

One decorated ``async def`` per command, with its aliases and menu key, registered on one
:class:`Router` (the shape of aiogram's routers). A handler gets a :class:`Turn` and returns
the reply text, rendered from ``bot/templates/replies``; a :class:`Refusal` becomes its message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import keys
from ..channels.wechat import WeChatClient
from ..context import Context
from ..rules import invites, points, tiers
from ..rules.models import Member, Refusal
from ..rules.timeutil import from_ts, local_day
from ..templating import render
from .wxproto import Incoming

log = logging.getLogger("memberbot.oa")

INVITE_SCENE = "inv_"


@dataclass
class Turn:
    """One member's message being answered."""

    ctx: Context
    msg: Incoming
    member_id: str
    now: datetime
    arg: str = ""
    registration: dict | None = None  # set when this callback registered or re-activated
    memo: dict = field(default_factory=dict)  # per process: stored facts that never change
    spawn: Callable[[Coroutine], Any] | None = None  # background work after the reply

    @property
    def members(self):
        return self.ctx.members

    @property
    def rules(self):
        return self.ctx.rules

    @property
    def wechat(self) -> WeChatClient | None:
        return self.ctx.oa

    def day(self, t: int) -> str:
        return from_ts(t, self.rules.tz).date().isoformat()

    async def member(self) -> Member:
        m = await self.members.get(self.member_id)
        if m is None:
            raise Refusal("member_not_found", "未找到会员信息，请取消关注后重新关注")
        return m


Handler = Callable[[Turn], Awaitable[str | None]]


@dataclass(frozen=True)
class Command:
    name: str
    aliases: tuple[str, ...]
    menu: str | None
    takes_arg: bool
    usage: str
    help: str
    fn: Handler
    # the reply is a function of the use case's keyed result and the message key alone, so
    # retries need no stored copy of it (saves a durable write on the hottest command)
    same_on_retry: bool = False


@dataclass
class Router:
    """Text commands (exact, or ``name <arg>``), menu keys and events, each to one handler."""

    commands: list[Command] = field(default_factory=list)
    events: dict[str, Handler] = field(default_factory=dict)
    _exact: dict[str, Command] = field(default_factory=dict)
    _prefix: list[tuple[str, Command]] = field(default_factory=list)
    _menu: dict[str, Command] = field(default_factory=dict)

    def command(self, name: str, *aliases: str, menu: str | None = None, arg: bool = False,
                usage: str = "", help: str = "",
                same_on_retry: bool = False) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            cmd = Command(name, aliases, menu, arg, usage or name, help, fn, same_on_retry)
            self.commands.append(cmd)
            for n in (name, *aliases):
                n = normalise(n).lower()
                if n in self._exact:
                    raise ValueError(f"command {n!r} registered twice")
                self._exact[n] = cmd
                if arg:
                    self._prefix.append((n, cmd))
            self._prefix.sort(key=lambda p: -len(p[0]))
            if menu:
                self._menu[menu] = cmd
            return fn
        return deco

    def event(self, *names: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            for n in names:
                self.events[n.lower()] = fn
            return fn
        return deco

    def match(self, text: str) -> tuple[Command | None, str]:
        """The command a text means and its argument, after trim and NFKC normalisation."""
        t = normalise(text)
        low = t.lower()
        cmd = self._exact.get(low)
        if cmd is not None:
            return cmd, ""
        for name, cmd in self._prefix:
            if low.startswith(name):
                rest = t[len(name):]
                # "绑定ABC123" works; "helpme" is not "help" + "me"
                if rest[:1] == " " or not name.isascii():
                    return cmd, rest.strip()
        return None, ""

    def menu(self, key: str) -> Command | None:
        return self._menu.get(key.strip().upper())


# full-width ASCII (U+FF01..U+FF5E) to ASCII, the ideographic space to a space
_HALF_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def normalise(text: str) -> str:
    """Full-width to half-width (``？``→``?``, ``　``→space, ``ＡＢＣ２``→``ABC2``), trimmed,
    inner blanks collapsed. Only the width: not NFKC, which also makes ``¹``, ``²``, ``①``
    and ``⑴`` plain digits, so that ``兑换 ²`` chose item 2."""
    return re.sub(r"\s+", " ", text.translate(_HALF_WIDTH)).strip()


router = Router()


# -- commands ---------------------------------------------------------------------------------
@router.command("签到", "打卡", menu="CHECKIN", help="每日签到领积分", same_on_retry=True)
async def checkin(t: Turn) -> str:
    mine = t.msg.dedup_key
    # The use case's key is per day: every later call gets the day's first result back, and
    # ``by`` says which message made it: copies of that message say what it earned, any other
    # message 今天已签到. Both come from the stored result only (no live balance), so every
    # copy of a message answers the same, and the day's (by, streak) can be remembered.
    day = local_day(t.now, t.rules.tz).isoformat()
    key = keys.checkin(t.member_id, day)
    known = t.memo.get(key)
    if known is not None and known[0] != mine:
        return render("replies/checkin.j2", already=True, streak=known[1])
    done, res = await t.members.seen(t.member_id, key)
    if not done:
        res = await t.members.check_in(t.member_id, t.now, by=mine)
    if len(t.memo) >= 100_000:
        t.memo.clear()
    t.memo[key] = (res.get("by"), res["streak"])
    if res.get("by") == mine:
        return with_notices(render("replies/checkin.j2", **res), res.get("notices") or [])
    return render("replies/checkin.j2", already=True, streak=res["streak"])


@router.command("积分", "余额", "我的积分", menu="BALANCE", help="积分、即将过期积分和等级进度")
async def balance(t: Turn) -> str:
    m = await t.member()
    today = local_day(t.now, t.rules.tz)
    soon = t.members.balance_by_day(m, today)
    pend, pend_day = points.pending(m, today)
    return render("replies/balance.j2", balance=points.balance(m, today, t.rules), debt=m.debt,
                  pending=pend, pending_day=pend_day,
                  expiring=sum(v for _, v in soon), expiring_days=soon,
                  progress=tiers.progress(m, t.now, t.rules),
                  keep_gap=tiers.keep_gap(m, t.now, t.rules),
                  grace_day=t.day(m.grace_until) if m.grace_until else None)


@router.command("积分明细", "明细", menu="HISTORY", help="最近 10 笔积分变动和当前积分")
async def history(t: Turn) -> str:
    return render("replies/history.j2", **await t.members.statement(t.member_id, t.now))


@router.command("优惠券", "我的优惠券", "券", menu="COUPONS", help="可用的优惠券")
async def my_coupons(t: Turn) -> str:
    m = await t.member()
    card = t.members.card(m, t.now)
    rows = []
    for c in card["coupons"]:  # soonest expiry first
        tpl = t.rules.coupons.get(c["template"])
        rows.append({"name": c["name"], "label": tpl.label() if tpl else "", "code": c["code"],
                     "until": t.day(c["valid_until"])})
    return render("replies/coupons.j2", coupons=rows)


@router.command("邀请码", "邀请", "我的邀请码", menu="INVITE", help="邀请好友，双方各得积分")
async def invite_code(t: Turn) -> str:
    m = await t.member()
    nxt = invites.next_rung(m, t.rules)
    rung = nxt and {"invites": nxt.invites, "gap": nxt.invites - m.invited_rewarded_total,
                    "points": nxt.points,
                    "coupon": nxt.coupon and t.rules.coupons[nxt.coupon].name}
    return render("replies/invite.j2", code=m.invite_code, invited=m.invited_total, rung=rung,
                  inviter_points=t.rules.invite["inviter_points"],
                  invitee_points=t.rules.invite["invitee_points"],
                  window=t.rules.invite["bind_window_days"], qr=await _invite_qr(t, m))


async def _invite_qr(t: Turn, m: Member) -> str | None:
    """The member's invite QR link, cached in the store for most of its 30-day life."""
    client = t.wechat
    if client is None or not m.invite_code:
        return None
    scene = INVITE_SCENE + m.invite_code
    cache = keys.invite_qr(scene)
    url = await t.members.cached(cache)
    if url:
        return url
    try:
        url = await client.create_invite_qr(scene)
    except Exception as e:  # the code alone still works: 绑定 <code>
        log.warning("invite QR for member %s not created: %s", m.id, e)
        return None
    await t.members.cache(cache, url, 25 * 86400)
    return url


@router.command("绑定", arg=True, usage="绑定 邀请码", help="接受好友邀请")
async def bind(t: Turn) -> str:
    code = t.arg.replace(" ", "").upper()
    if not code:
        return render("replies/usage.j2", usage="绑定 邀请码", example="绑定 ABC234")
    return await bind_reply(t, code)


async def bind_reply(t: Turn, code: str) -> str:
    m = await t.member()
    again = m.inviter_id is not None and m.inviter_id == await t.members.invite_owner(code)
    try:
        # called again even when bound already: both sides are keyed by the invitee, so a
        # bind cut off between the two sides (a crash, a store blip) is finished here
        res = await t.members.bind_invite(t.member_id, code, t.now)
    except Refusal as r:
        return render("replies/refusal.j2", message=r.message)
    if again:  # the use case answers with the first result (+50): this is another message
        return render("replies/bind.j2", again=True)
    if res.get("inviter_rewarded") and t.spawn is not None:
        t.spawn(tell_inviter(t.ctx, res["inviter_id"], t.member_id, res["inviter_points"],
                             t.now))
    return render("replies/bind.j2", **res)


def with_notices(text: str | None, notices: list[dict]) -> str:
    """A reply followed by the member's pending notices (an invite reward they earned)."""
    if not notices:
        return text or ""
    note = render("replies/notices.j2", notices=notices)
    return f"{text}\n\n{note}" if text else note


CS_WINDOW_S = 48 * 3600  # WeChat allows customer-service messages this long after a message


async def tell_inviter(ctx: Context, inviter_id: str, invitee_id: str, points: int,
                       now: datetime) -> None:
    """A customer-service message to the inviter about the reward, once per invite, when
    WeChat still allows one (the inviter wrote within 48 h); otherwise their next reply
    tells them (the notice is kept on the member either way)."""
    client = ctx.oa
    if client is None:
        return
    try:
        m = await ctx.members.get(inviter_id)
        if (m is None or not m.openid or not m.followed
                or now.timestamp() - m.last_activity > CS_WINDOW_S):
            return
        if not await ctx.members.cache(keys.invite_notice(invitee_id), "1", CS_WINDOW_S * 2,
                                       only_new=True):
            return  # another copy of the bind already sent it
        await client.send_text(m.openid, render("replies/invite_reward.j2", points=points))
    except Exception as e:  # the reward stands and the next reply tells them
        log.warning("invite reward message to %s not sent: %s", inviter_id, e)


@router.command("会员", "等级", "会员码", menu="CARD", help="等级、权益和会员码")
async def card(t: Turn) -> str:
    m = await t.member()
    return render("replies/card.j2", member_code=m.member_code,
                  progress=tiers.progress(m, t.now, t.rules))


_ITEM = re.compile(r"[0-9]{1,4}")


@router.command("兑换", arg=True, menu="REDEEM", usage="兑换 / 兑换 序号",
                help="积分兑换优惠券")
async def exchange(t: Turn) -> str:
    if not t.arg:
        m = await t.member()
        return render("replies/catalogue.j2", items=await t.members.catalogue(m, t.now),
                      balance=points.balance(m, local_day(t.now, t.rules.tz), t.rules))
    # ASCII digits, a few (full-width ones arrive as ASCII): '²', '①' and 4,400 digits are no item
    if not _ITEM.fullmatch(t.arg):
        return render("replies/usage.j2", usage="兑换 序号", example="兑换 1")
    res = await t.members.exchange(t.member_id, int(t.arg), t.now, key=t.msg.dedup_key)
    m = await t.member()
    return render("replies/exchange.j2", coupon=res, until=t.day(res["valid_until"]),
                  balance=points.balance(m, local_day(t.now, t.rules.tz), t.rules))


@router.command("任务", "每日任务", menu="TASKS", help="今日任务和完成进度")
async def task_board(t: Turn) -> str:
    m = await t.member()
    return render("replies/tasks.j2", tasks=t.members.task_board(m, t.now))


_DATE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")


@router.command("生日", arg=True, usage="生日 YYYY-MM-DD", help="设置生日，首次 +50 积分")
async def birthday(t: Turn) -> str:
    found = _DATE.match(t.arg) or re.match(r"^(\d{4})(\d{2})(\d{2})$", t.arg)
    if not found:
        return render("replies/usage.j2", usage="生日 YYYY-MM-DD", example="生日 1990-05-20")
    y, mo, d = found.groups()
    res = await t.members.set_birthday(t.member_id, f"{y}-{int(mo):02d}-{int(d):02d}", t.now,
                                       key=keys.chat_action("birthday", t.msg.dedup_key))
    return render("replies/birthday.j2", **res)


@router.command("手机", "手机号", arg=True, usage="手机 手机号",
                help="登记手机号，与生日一起完善资料得积分")
async def phone(t: Turn) -> str:
    if not t.arg:
        return render("replies/usage.j2", usage="手机 手机号", example="手机 13800138000")
    res = await t.members.set_profile(t.member_id, t.now, phone=t.arg,
                                      key=keys.chat_action("phone", t.msg.dedup_key))
    return render("replies/profile.j2", field="手机号", **res)


@router.command("退订", "取消推送", help="不再接收活动推送")
async def opt_out(t: Turn) -> str:
    await t.members.set_opt_out(t.member_id, True, t.now)
    return render("replies/opt_out.j2")


@router.command("订阅", "恢复推送", help="恢复接收活动推送")
async def opt_in(t: Turn) -> str:
    await t.members.set_opt_out(t.member_id, False, t.now)
    return render("replies/opt_in.j2")


@router.command("帮助", "菜单", "?", "help", menu="HELP", help="查看全部指令")
async def help_(t: Turn) -> str:
    return render("replies/help.j2", commands=router.commands)


async def hint(t: Turn) -> str:
    """Anything the bot does not understand: a short hint, never silence."""
    return render("replies/hint.j2")


# -- events -----------------------------------------------------------------------------------
@router.event("subscribe")
async def subscribe(t: Turn) -> str:
    reg = t.registration or {}
    coupon = reg.get("coupon")
    invite = None
    code = invite_scene(t.msg.event_key)
    if code:
        invite = await bind_reply(t, code)
    m = await t.member()
    return render("replies/welcome.j2", member_code=m.member_code,
                  tier_name=t.rules.tier(m.tier).name, back=not reg.get("new", True),
                  coupon=coupon and {**coupon, "until": t.day(coupon["valid_until"])},
                  invite=invite, invite_points=t.rules.invite["inviter_points"])


@router.event("scan")
async def scan(t: Turn) -> str | None:
    code = invite_scene(t.msg.event_key)
    if code is None:
        return None  # a campaign QR code memberbot does not own
    return await bind_reply(t, code)


def invite_scene(event_key: str) -> str | None:
    """The invite code in a QR scene: ``qrscene_inv_<code>`` (subscribe), ``inv_<code>`` (SCAN)."""
    key = event_key.strip()
    if key.startswith("qrscene_"):
        key = key[len("qrscene_"):]
    if key.startswith(INVITE_SCENE):
        return key[len(INVITE_SCENE):].strip().upper()[:32] or None
    return None
