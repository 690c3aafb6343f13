"""Sales-staff use cases (the WeCom sidebar, PRODUCT.md 5): who the staff member is, the
customer card they see, the scripts (话术) they may send, the coupons and points adjustments
they may make within their role, and the audit trail of those actions.

Every change goes through :class:`bot.members.Members` under one idempotency key derived from
the client's ``request_id``, so a double tap is one action. The per-staff daily cap spans
members, so it is not part of a member's commit: each adjustment first reserves its points in
a small per-staff-per-day record (compare-and-set in the store's kv, once per request), and a
refused adjustment gives its reservation back.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import click

from storage import ConflictError

from . import keys
from .channels.wecom import WeComClient, WeComError, jsapi_signature
from .jobs.base import coupon_facts, message_context
from .jobs.registry import JOBS
from .members import Members
from .offline import run_with_members
from .operator import load_settings
from .rules import points, tiers
from .rules.config import StaffRole
from .rules.models import Member, Refusal
from .rules.timeutil import local_day, ts
from .settings import Settings
from .templating import render, yuan

STATE_TTL = 600  # an OAuth round trip takes seconds; an older state is refused
QUOTA_TTL = 2 * 86400
AUDIT_KINDS = ["adjust", "staff_coupon", "tag"]
REASON_MAX = 100


@dataclass(frozen=True)
class Staff:
    """A signed-in staff member: their WeCom userid, role and whether they are an admin."""

    userid: str
    role: StaffRole
    admin: bool


class StaffDesk:
    """The sidebar's use cases over the member use cases (and so one store, one rules)."""

    def __init__(self, members: Members, settings: Settings) -> None:
        self.members = members
        self.store = members.store
        self.rules = members.rules
        self.settings = settings
        self.admins = tuple(settings.sidebar_admins)

    def admin_staff(self, name: str, role: str) -> Staff:
        """An /admin account acting on the member page: an operator has the rules' default
        staff role (its caps), an admin the admin role; ``admin:<name>`` in the audit."""
        staff = self.rules.staff
        key = staff.admin_role if role == "admin" else staff.default_role
        # admin=True: the member page serves any member, not only one's WeCom contacts
        return Staff(f"admin:{name}", staff.roles[key], True)

    def staff(self, userid: str) -> Staff:
        return Staff(userid, self.rules.staff.role_of(userid, admins=self.admins),
                     userid in self.admins)

    # -- OAuth2 login ---------------------------------------------------------------------------
    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(18)

    async def use_nonce(self, nonce: str, ttl: float) -> bool:
        """True the first time an OAuth ``state`` nonce is used (remembered while the state
        is valid), so a state works once."""
        return await self.store.kv_set(keys.sidebar_state(nonce), "1", ttl=ttl, only_new=True)

    async def login(self, wecom: WeComClient, code: str) -> str:
        """The userid of an OAuth2 ``code`` (auth/getuserinfo); a bad or used code, or a
        visitor outside the corp, is refused."""
        try:
            info = await wecom.get_user_info(code)
        except WeComError as e:
            raise Refusal("oauth_code", "登录已失效，请从企业微信重新打开",
                          errcode=e.errcode) from e
        userid = str(info.get("userid") or info.get("UserId") or "")
        if not userid:
            raise Refusal("oauth_not_staff", "仅限企业成员使用")
        return userid

    async def signatures(self, wecom: WeComClient, url: str, now: datetime) -> dict:
        """wx.config (corp jsapi ticket) and wx.agentConfig (agent_config ticket) for ``url``."""
        corp_ticket = await wecom.jsapi_ticket("jsapi")
        agent_ticket = await wecom.jsapi_ticket("agent_config")
        stamp = ts(now)
        n1, n2 = secrets.token_hex(8), secrets.token_hex(8)
        return {
            "config": {"appId": self.settings.wecom_corp_id, "timestamp": stamp, "nonceStr": n1,
                       "signature": jsapi_signature(corp_ticket, n1, stamp, url)},
            "agentConfig": {"corpid": self.settings.wecom_corp_id,
                            "agentid": self.settings.wecom_agent_id, "timestamp": stamp,
                            "nonceStr": n2,
                            "signature": jsapi_signature(agent_ticket, n2, stamp, url)},
        }

    # -- the customer -----------------------------------------------------------------------------
    async def _member(self, staff: Staff, *, external_userid: str = "",
                      member_code: str = "") -> Member:
        """The member behind a contact, if ``staff`` may serve them."""
        mid = await self.members.resolve(external_userid=external_userid or None,
                                         member_code=member_code or None)
        m = await self.members.get(mid) if mid else None
        if m is None:
            raise Refusal("not_member", "该客户还不是会员")
        if not staff.admin and staff.userid not in m.follow_users \
                and staff.userid != m.owner_userid:
            raise Refusal("not_your_customer", "该客户不在你的客户列表中")
        return m

    async def customer(self, staff: Staff, now: datetime, *, external_userid: str = "",
                       member_code: str = "") -> dict:
        m = await self._member(staff, external_userid=external_userid, member_code=member_code)
        return await self.card(staff, m, now)

    async def card(self, staff: Staff, m: Member, now: datetime) -> dict:
        tz = self.rules.tz
        base = self.members.card(m, now)
        prog = base["progress"]
        day = local_day(now, tz).isoformat()

        def date(t: int) -> str:
            return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d")

        def when(t: int) -> str:
            return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M")

        nxt = None
        if "next_tier" in prog:
            tier = self.rules.tier(prog["next_tier"])
            spent = prog["lifetime_fen"] if tier.metric == "lifetime" else prog["trailing_fen"]
            nxt = {"key": tier.key, "name": tier.name, "gap_fen": prog["next_gap_fen"],
                   "gap_yuan": yuan(prog["next_gap_fen"]),
                   "threshold_yuan": yuan(tier.threshold_fen), "spent_yuan": yuan(spent),
                   "percent": min(100, spent * 100 // tier.threshold_fen)
                   if tier.threshold_fen else 100}
        orders = sorted(m.orders.values(), key=lambda o: (o.paid_at, o.order_id),
                        reverse=True)[:5]
        used = await self._quota_used(staff.userid, day)
        role = staff.role
        return {
            "member_code": m.member_code, "nickname": m.nickname or "",
            "tier": {"key": prog["tier"], "name": prog["tier_name"],
                     "benefits": prog["benefits"]},
            "next_tier": nxt,
            "balance": base["balance"], "debt": base["debt"],
            "pending": {"points": base["pending_points"], "date": base["pending_until"]},
            "expiring": {"points": base["expiring_points"], "date": base["expiring_on"]},
            "coupons": [{"code": c["code"], "template": c["template"], "name": c["name"],
                         "label": self.rules.coupons[c["template"]].label()
                         if c["template"] in self.rules.coupons else "",
                         "valid_until": date(c["valid_until"])} for c in base["coupons"]],
            "orders": [{"order_id": o.order_id, "paid_at": when(o.paid_at),
                        "paid_yuan": yuan(o.paid_fen), "refunded_yuan": yuan(o.refunded_fen),
                        "points": o.points} for o in orders],
            "streak": base["streak"], "checked_in_today": base["checked_in_today"],
            "invites": base["invited"], "rfm": m.rfm or "", "tags": base["tags"],
            "opted_out": base["opted_out"], "followed": base["followed"],
            "scripts": self.scripts(m, now),
            "staff": {"userid": staff.userid, "role": role.key, "admin": staff.admin,
                      "coupons": [{"key": k, "name": self.rules.coupons[k].name,
                                   "label": self.rules.coupons[k].label()}
                                  for k in role.coupons],
                      "adjust_per_action": role.adjust_per_action,
                      "adjust_per_day": role.adjust_per_day, "adjusted_today": used},
        }

    def scripts(self, m: Member, now: datetime) -> list[dict]:
        """话术: the reply and lifecycle templates rendered for this member, what is due now
        first."""
        today = local_day(now, self.rules.tz)
        card = self.members.card(m, now)
        out: list[dict] = []
        for kind, j in JOBS.items():
            if not j.push:
                continue
            try:
                d = j.due(m, now, self.rules)
            except Exception:  # a job's due() is for its own index; never break the card
                d = None
            if d is not None:
                out.append({"kind": kind, "title": f"{j.title}（今日）", "due": True,
                            "text": render(f"lifecycle/{kind}.j2", **message_context(
                                kind, d.facts, m, self.rules))})
        soon, soon_day = points.expiring_within(m, today, 30, self.rules)
        if soon and not any(s["kind"] == "points_expiry" for s in out):
            left = (datetime.fromisoformat(soon_day).date() - today).days
            out.append({"kind": "points_expiry", "title": "积分到期提醒", "due": False,
                        "text": render("lifecycle/points_expiry.j2", **message_context(
                            "points_expiry", {"points": soon, "date": soon_day,
                                              "days_left": left}, m, self.rules))})
        out.append({"kind": "card", "title": "会员卡", "due": False,
                    "text": render("replies/card.j2", member_code=m.member_code,
                                   progress=tiers.progress(m, now, self.rules))})
        out.append({"kind": "welcome_wecom", "title": "欢迎语", "due": False,
                    "text": render("lifecycle/welcome_wecom.j2", staff="", linked=True,
                                   coupon=None, member_code=m.member_code,
                                   tier_name=card["progress"]["tier_name"],
                                   balance=card["balance"])})
        if card["coupons"]:
            c = card["coupons"][0]
            tpl = self.rules.coupons.get(c["template"])
            until = datetime.fromtimestamp(c["valid_until"], self.rules.tz).strftime("%Y-%m-%d")
            label = f"（{tpl.label()}）" if tpl else ""
            out.append({"kind": "coupon_reminder", "title": "优惠券提醒", "due": False,
                        "text": f"您有一张{c['name']}{label}，有效期至 {until}，"
                                "到店出示会员码即可使用。"})
        return out

    # -- actions --------------------------------------------------------------------------------
    @staticmethod
    def _request_id(request_id: str) -> str:
        rid = (request_id or "").strip()
        if not 8 <= len(rid) <= 64 or not all(ch.isalnum() or ch in "-_" for ch in rid):
            raise Refusal("request_id", "request_id 须为 8 到 64 位字母、数字、- 或 _")
        return rid

    async def issue_coupon(self, staff: Staff, template: str, request_id: str,
                           now: datetime, *, external_userid: str = "",
                           member_code: str = "") -> dict:
        rid = self._request_id(request_id)
        if template not in staff.role.coupons:
            raise Refusal("role_coupon", "你的角色不能发放这种优惠券", template=template)
        m = await self._member(staff, external_userid=external_userid, member_code=member_code)
        ref = keys.sidebar_coupon(f"{staff.userid}:{rid}")
        res = await self.members.issue_coupon(
            m.id, template, ref, now,
            audit={"staff": staff.userid, "role": staff.role.key, "via": "sidebar"})
        return {**res, **coupon_facts(res, self.rules), "member_code": m.member_code}

    async def adjust_points(self, staff: Staff, delta: int, reason: str, request_id: str,
                            now: datetime, *, external_userid: str = "",
                            member_code: str = "") -> dict:
        rid = self._request_id(request_id)
        role = staff.role
        reason = " ".join((reason or "").split())
        if not reason:
            raise Refusal("adjust_reason", "调整积分必须填写原因")
        if len(reason) > REASON_MAX:
            raise Refusal("adjust_reason", f"原因最多 {REASON_MAX} 个字")
        if role.adjust_per_action == 0:
            raise Refusal("role_adjust", "你的角色不能调整积分")
        if delta == 0 or abs(delta) > role.adjust_per_action:
            raise Refusal("adjust_cap", f"单次调整需在 1 到 {role.adjust_per_action} 分之间",
                          cap=role.adjust_per_action)
        m = await self._member(staff, external_userid=external_userid, member_code=member_code)
        key = f"sidebar:{staff.userid}:{rid}"
        done, res = await self.store.seen(m.id, keys.staff_adjust(key))
        if done:  # a double tap: the first answer, no second reservation
            return {**res, "member_code": m.member_code}
        day = local_day(now, self.rules.tz).isoformat()
        reserved = False
        if role.adjust_per_day:
            await self._reserve(staff.userid, day, rid, abs(delta), role.adjust_per_day)
            reserved = True
        try:
            res = await self.members.adjust_points(m.id, delta, reason, staff.userid, now,
                                                   key=key, via="sidebar")
        except Refusal:
            if reserved:
                await self._release(staff.userid, day, rid)
            raise
        return {**res, "member_code": m.member_code}

    async def _quota_used(self, userid: str, day: str) -> int:
        raw = await self.store.kv_get(keys.sidebar_quota(userid, day))
        return sum(json.loads(raw).values()) if raw else 0

    async def _reserve(self, userid: str, day: str, rid: str, amount: int, cap: int) -> None:
        key = keys.sidebar_quota(userid, day)
        for _ in range(100):
            raw = await self.store.kv_get(key)
            cur: dict[str, int] = json.loads(raw) if raw else {}
            if rid in cur:
                return  # this request reserved already (a retry)
            used = sum(cur.values())
            if used + amount > cap:
                raise Refusal("adjust_daily_cap", f"今日调整额度剩余 {max(cap - used, 0)} 分"
                              f"（每日上限 {cap} 分）", cap=cap, used=used)
            new = json.dumps({**cur, rid: amount})
            if raw is None:
                ok = await self.store.kv_set(key, new, ttl=QUOTA_TTL, only_new=True)
            else:
                ok = await self.store.kv_set(key, new, ttl=QUOTA_TTL, expect=raw)
            if ok:
                return
        raise ConflictError("the daily adjustment record is too busy: retry")

    async def _release(self, userid: str, day: str, rid: str) -> None:
        key = keys.sidebar_quota(userid, day)
        for _ in range(100):
            raw = await self.store.kv_get(key)
            cur: dict[str, int] = json.loads(raw) if raw else {}
            if rid not in cur:
                return
            cur.pop(rid)
            if await self.store.kv_set(key, json.dumps(cur), ttl=QUOTA_TTL, expect=raw):
                return

    # -- audit ----------------------------------------------------------------------------------
    async def audit(self, now: datetime, *, days: int = 30, staff: str = "",
                    limit: int = 500) -> list[dict[str, Any]]:
        """Staff actions (points adjustments, coupons issued by staff), newest first."""
        since = ts(now - timedelta(days=days))
        rows = await self.store.ledger(since=since, kinds=AUDIT_KINDS, limit=100_000)
        for r in rows:  # tags edited on /admin carry "by": the account that edited them
            if r.kind == "tag" and str(r.data.get("by", "")).startswith("admin:"):
                r.data = {**r.data, "staff": r.data["by"], "via": "admin"}
        rows = [r for r in rows if r.data.get("staff") and (not staff or
                                                             r.data["staff"] == staff)]
        rows = rows[::-1][:limit]
        codes: dict[str, str] = {}
        out = []
        for r in rows:
            if r.member_id not in codes:
                m = await self.members.get(r.member_id)
                codes[r.member_id] = m.member_code if m else r.member_id
            if r.kind == "adjust":
                d = int(r.data.get("delta", 0))
                change = f"积分 {d:+d}"
                if "before" in r.data:
                    change += f"（{r.data['before']} → {r.data['after']}）"
            elif r.kind == "tag":
                change = "标签 " + " ".join([*(f"+{t}" for t in r.data.get("add", [])),
                                             *(f"−{t}" for t in r.data.get("remove", []))])
            else:
                tpl = self.rules.coupons.get(r.data.get("template", ""))
                change = f"发券 {tpl.name if tpl else r.data.get('template')} " \
                         f"{r.data.get('code', '')}"
            out.append({"at": datetime.fromtimestamp(r.at, self.rules.tz)
                        .strftime("%Y-%m-%d %H:%M:%S"), "staff": r.data["staff"],
                        "member_code": codes[r.member_id], "kind": r.kind, "change": change,
                        "reason": r.data.get("reason", ""), "via": r.data.get("via", "")})
        return out

    def join_hint(self) -> dict:
        """What staff can tell (and send) a contact who is not a member yet."""
        url = self.settings.join_url
        text = "欢迎加入我们的会员！关注公众号即可成为会员，领取新人券" + \
            (f"：{url}" if url else "。")
        return {"join_url": url, "script": text,
                "hint": "发送入会邀请：客户关注公众号后自动成为会员"}


async def seed_demo(members: Members, now: datetime, *, staff: str,
                    external_userid: str = "wm_demo_customer") -> dict:
    """A demo WeCom customer of ``staff`` with orders, points, a streak and tags, for preview
    mode on a fresh database. Safe to repeat: the same customer and orders each time."""
    res = await members.link_wecom(external_userid, now, staff=staff, nickname="演示客户")
    mid = res["member_id"]
    for n, (fen, days) in enumerate(((128_800, 40), (36_600, 3)), 1):
        await members.record_order(mid, f"DEMO-{external_userid}-{n}", fen,
                                   now - timedelta(days=days), now)
    for days in (1, 0):
        await members.check_in(mid, now - timedelta(days=days))
    await members.tag(mid, now, add=("演示", "爱喝拿铁"), by="seed")
    m = await members.get(mid)
    return {"member_id": mid, "member_code": m.member_code, "external_userid": external_userid,
            "preview": f"/sidebar?preview_member={m.member_code}&preview_staff={staff}"}


def register(main: click.Group) -> None:
    @main.command("sidebar-seed")
    @click.option("--staff", required=True, help="the WeCom userid who follows the customer")
    @click.option("--external-userid", default="wm_demo_customer", show_default=True)
    def sidebar_seed(staff: str, external_userid: str) -> None:
        """A demo customer for the sales-staff sidebar's preview mode (docs/sidebar.md)."""
        async def go(members: Members, now: datetime) -> dict:
            return await seed_demo(members, now, staff=staff, external_userid=external_userid)

        res = run_with_members(load_settings(), go)
        click.echo(f"member {res['member_code']} (external_userid {res['external_userid']}), "
                   f"followed by {staff}")
        click.echo(f"preview (MEMBERBOT_SIDEBAR_PREVIEW=1): {res['preview']}")
