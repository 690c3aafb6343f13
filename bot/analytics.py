"""Programme analytics (PRODUCT.md 7) for a period, computed from the ledger and the outbox.

Every figure is recomputed from ledger rows (and outbox rows for pushes), never from counters
that could drift; the same figures feed ``memberbot report`` and ``/admin``. The definitions
below are the ones docs/operators.md explains.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from storage import Store

from . import keys, points_age
from .rules import rfm
from .rules.config import Rules
from .rules.models import Member, Order
from .rules.timeutil import local_day, start_of_day, ts

PAGE = 5000
ACTIVE_DAYS = 30
REDEEM_REASONS = ("order", "exchange")
PUSH_STATUSES = ("sent", "failed", "unreachable", "pending", "sending", "skipped")
# a WeCom task created, then what the staff member's confirmation made of it (bot.jobs.confirm)
DELIVERY_STATUSES = ("created", "confirmed", "not_friend", "received_other", "unconfirmed")
DELIVERY_COLUMNS = ("created", "confirmed", "unconfirmed", "not_friend", "received_other",
                    "awaiting")
NO_SEGMENT = "未消费"

DEFINITIONS = {
    "card_conversion": "开卡转化率 = 期内新开卡会员数 / 期内新关注人数（首次关注与重新关注）",
    "active_ratio": "活跃会员比 = 截至期末前 30 天内有消费（未全额退款）的会员数 / 期末会员总数",
    "arpu": "ARPU = 期内净消费（期内支付订单实付 − 期内退款） / 期内有消费的会员数",
    "repurchase": "复购率 = 期内消费 2 单及以上的会员数 / 期内有消费的会员数",
    "points_redeem": "积分兑换率 = 期内兑换消耗的积分（抵现与兑券） / 期内发放的积分",
    "checkin_dau": "签到 DAU = 期内每天签到的会员数的日均值",
    "unsubscribe": "退订率 = 期内发送「退订」的会员数 / 期末会员总数",
    "unfollow": "取关率 = 期内取消关注的会员数 / 期末会员总数",
    "coupon_rate": "券核销率 = 期内发放的券中截至期末已核销的张数 / 期内发放张数（按模板）",
    "tiers": "等级分布 = 期末各等级会员数；升级/降级 = 期内等级变更次数",
    "pushes": "推送 = 期内进入发送队列的消息按状态计数（已发送 / 失败 / 无法触达）",
    "channels": "渠道 = 期内经渠道活码（store_… 门店 / cmp_… 活动）添加企业微信的会员数",
    "delivery": "企业微信确认 = 期内创建的 1v1 群发任务（按类型）：员工确认后客户已收到"
                " / 3 天仍未确认 / 非好友 / 已收到其他群发（达上限）/ 等待确认",
    "rfm": "RFM 分群 = 截至期末，近 12 个月的最近消费、消费频次、消费金额打分后的八类客户",
    "invite_per_inviter": "邀请系数（每位邀请人）= 期内获奖励的邀请数 / 期内有获奖励邀请的会员数",
    "invite_per_new": "邀请系数（每位新会员）= 期内获奖励的邀请数 / 期内新开卡会员数",
    "tier_promotion": "等级晋升率 = 期内升级过的会员数 / 期末会员总数",
    "aov": "客单价 = 期内净消费（实付 − 期内退款） / 期内订单数",
    "points_issue_rate": "积分发放率 = 期内发放积分的价值（按兑换比例，100 积分 = ¥1）"
                         "/ 期内净消费",
    "points_age": "积分账龄 = 当前未用积分按获得时间分段；获得 6 个月及以上仍未使用的积分标记提醒",
}


def ratio(num: float, den: float) -> float | None:
    return None if not den else num / den


@dataclass
class _Scan:
    """Accumulators filled by one pass over the ledger up to the end of the period."""

    since: int
    until: int
    active_from: int
    members: set[str] = field(default_factory=set)
    joined: set[str] = field(default_factory=set)
    followers: set[str] = field(default_factory=set)
    orders: dict[tuple[str, str], list] = field(default_factory=dict)  # (mid, ref) -> row
    refunds_in_period: int = 0
    refunded: Counter = field(default_factory=Counter)  # (mid, order_id) -> fen
    issued: Counter = field(default_factory=Counter)  # reason -> points
    redeemed: int = 0
    expired: int = 0
    reversed: int = 0
    coupon_issued: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    coupon_expired: Counter = field(default_factory=Counter)
    redeemed_codes: set[str] = field(default_factory=set)
    tier_of: dict[str, str] = field(default_factory=dict)
    upgrades: Counter = field(default_factory=Counter)
    downgrades: Counter = field(default_factory=Counter)
    checkins: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    opted_out: set[str] = field(default_factory=set)
    unfollowed: set[str] = field(default_factory=set)
    channels: Counter = field(default_factory=Counter)  # 渠道: contacts attributed by QR
    inviters: Counter = field(default_factory=Counter)  # member -> rewarded invites in period
    offers: Counter = field(default_factory=Counter)  # catalogue item -> exchanges in period
    upgraded: set[str] = field(default_factory=set)

    def add(self, r: Any, rules: Rules) -> None:
        k, mid, d = r.kind, r.member_id, r.data
        if k == "order":  # by when it was paid: an order imported later counts in its period
            paid_at = d.get("paid_at", r.at)
            if paid_at < self.until:
                self.members.add(mid)
                self.orders[(mid, r.ref)] = [paid_at, r.amount_fen]
            return
        if r.at >= self.until:
            return
        inside = self.since <= r.at
        self.members.add(mid)
        if k == "join":
            if inside:
                self.joined.add(mid)
                if d.get("followed", True):
                    self.followers.add(mid)
        elif k == "refollow" and inside:
            self.followers.add(mid)
        elif k == "refund":
            self.refunded[(mid, f"order:{d.get('order_id')}")] += -r.amount_fen
            if inside:
                self.refunds_in_period += -r.amount_fen
        elif k == "coupon_redeem":
            self.redeemed_codes.add(d.get("code"))
        elif k == "coupon_return":  # a full refund gave it back: not redeemed after all
            self.redeemed_codes.discard(d.get("code"))
        elif k == "tier_change":
            self.tier_of[mid] = d.get("to")
            if inside:
                (self.upgrades if d.get("up") else self.downgrades)[d.get("to")] += 1
                if d.get("up"):
                    self.upgraded.add(mid)
        if not inside:
            return
        if k == "credit":
            self.issued[d.get("reason", "credit")] += r.points
            if d.get("reason") == "inviter":  # one rewarded invite
                self.inviters[mid] += 1
        elif k == "spend" and d.get("reason") in REDEEM_REASONS:
            self.redeemed += -r.points
        elif k == "restore":  # points paid with, given back by a refund: not redeemed after all
            self.redeemed -= r.points
        elif k == "expire":
            self.expired += -r.points
        elif k == "reverse":
            self.reversed += -r.points
        elif k == "coupon_issue":
            self.coupon_issued[d.get("template")].add(d.get("code"))
            if d.get("offer"):
                self.offers[d["offer"]] += 1
        elif k == "coupon_expire":
            self.coupon_expired[d.get("template")] += 1
        elif k == "checkin":
            self.checkins[d.get("day") or local_day(
                datetime.fromtimestamp(r.at, rules.tz), rules.tz).isoformat()].add(mid)
        elif k == "opt_out":
            self.opted_out.add(mid)
        elif k == "unfollow":
            self.unfollowed.add(mid)
        elif k == "channel":
            self.channels[d.get("channel", "?")] += 1


def period(as_of: date, days: int, rules: Rules) -> tuple[int, int]:
    """[since, until): the ``days`` calendar days ending with ``as_of``, in the zone."""
    start = start_of_day(as_of - timedelta(days=days - 1), rules.tz)
    return ts(start), ts(start_of_day(as_of + timedelta(days=1), rules.tz))


async def compute(store: Store, rules: Rules, as_of: date, days: int = 30, *,
                  reuse_age: bool = False) -> dict[str, Any]:
    """Every figure of PRODUCT.md 7 for the ``days`` days ending with ``as_of``
    (``reuse_age``: a points-age curve of the day up to an hour old will do)."""
    if days < 1:
        raise ValueError("days must be at least 1")
    since, until = period(as_of, days, rules)
    scan = _Scan(since, until, until - ACTIVE_DAYS * 86400)
    after = 0
    while True:
        rows = await store.ledger(after_id=after, limit=PAGE)
        for r in rows:
            scan.add(r, rules)
        if len(rows) < PAGE:
            break
        after = rows[-1].id
    pushes = await _pushes(store, since, until)
    waiting = await store.tag_counts("handover")  # members whose pushes wait for an owner
    pushes["awaiting_owner"] = {"handover": waiting.get("pending", 0),
                                "owner_left": waiting.get("owner_left", 0)}
    r = _figures(scan, rules, as_of, days, pushes)
    r["card"] = await card_figures(store, rules)
    r["offers"] = [{"key": o.key, "n": o.n, "name": o.name or rules.coupons[o.coupon].name,
                    "points": o.points, "cash_fen": o.cash_fen, "exchanged": scan.offers[o.key],
                    "stock": o.stock or None,
                    "left": (await store.stock(keys.offer_stock(o.key))) if o.limited else None}
                   for o in rules.catalogue]
    r["points_age"] = await points_age.curve(store, rules, as_of, reuse=reuse_age)
    return r


async def card_figures(store: Store, rules: Rules) -> dict[str, Any]:
    """开卡数 (members holding the member card now) and 激活率 (activated ÷ holding)."""
    counts = await store.tag_counts("card")
    active = counts.get("active", 0)
    holders = active + counts.get("held", 0)
    return {"configured": rules.card is not None, "holders": holders, "activated": active,
            "activation_rate": ratio(active, holders)}


async def _pushes(store: Store, since: int, until: int) -> dict[str, Any]:
    by_status: Counter = Counter()
    by_kind: dict[str, Counter] = defaultdict(Counter)
    delivery: dict[str, Counter] = defaultdict(Counter)
    for status in PUSH_STATUSES + DELIVERY_STATUSES:
        for row in await store.outbox(status=status, limit=10**9):
            if since <= row.created_at < until:
                # a created WeCom task is sent as far as memberbot can send it
                shown = "sent" if status in DELIVERY_STATUSES else status
                by_status[shown] += 1
                by_kind[row.kind][shown] += 1
                if status in DELIVERY_STATUSES:
                    d = delivery[row.kind]
                    d["created"] += 1
                    d["awaiting" if status == "created" else status] += 1
    return {"by_status": {s: by_status[s] for s in PUSH_STATUSES},
            "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
            "delivery": {k: {c: v[c] for c in DELIVERY_COLUMNS}
                         for k, v in sorted(delivery.items())}}


def _figures(s: _Scan, rules: Rules, as_of: date, days: int,
             pushes: dict[str, Any]) -> dict[str, Any]:
    members = len(s.members)
    net = {key: paid - s.refunded[key] for key, (_, paid) in s.orders.items()}
    in_period = [(key, paid) for key, (at, paid) in s.orders.items() if s.since <= at < s.until]
    paying = Counter(mid for (mid, _), _ in in_period)
    spend = sum(paid for _, paid in in_period) - s.refunds_in_period
    active = {mid for (mid, ref), (at, _) in s.orders.items()
              if s.active_from <= at < s.until and net[(mid, ref)] > 0}
    issued = sum(s.issued.values())
    unsub = len(s.opted_out)
    invites = sum(s.inviters.values())

    def kpi(key: str, label: str, num: float, den: float, kind: str = "rate") -> dict:
        value = ratio(num, den)
        if kind == "rate":
            text = "—" if value is None else f"{value:.1%}"
        elif kind == "yuan":
            text = "—" if value is None else f"¥{value / 100:,.2f}"
        else:
            text = "—" if value is None else f"{value:,.2f}"
        return {"key": key, "label": label, "value": value, "text": text, "numerator": num,
                "denominator": den, "definition": DEFINITIONS[key]}

    days_list = [(as_of - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
    dau = [len(s.checkins.get(d, ())) for d in days_list]
    kpis = [
        kpi("card_conversion", "开卡转化率", len(s.joined), len(s.followers)),
        kpi("active_ratio", "活跃会员比", len(active), members),
        kpi("arpu", "ARPU", spend, len(paying), "yuan"),
        kpi("repurchase", "复购率", sum(1 for n in paying.values() if n >= 2), len(paying)),
        kpi("points_redeem", "积分兑换率", s.redeemed, issued),
        kpi("checkin_dau", "签到 DAU", sum(dau), days, "number"),
        kpi("unsubscribe", "退订率", unsub, members),
        kpi("unfollow", "取关率", len(s.unfollowed), members),
        kpi("invite_per_inviter", "邀请系数（每位邀请人）", invites, len(s.inviters), "number"),
        kpi("invite_per_new", "邀请系数（每位新会员）", invites, len(s.joined), "number"),
        kpi("tier_promotion", "等级晋升率", len(s.upgraded), members),
        kpi("aov", "客单价", spend, len(in_period), "yuan"),
        # the points' worth in fen: 100 points = ¥1 = 100 fen by default
        kpi("points_issue_rate", "积分发放率",
            issued * 100 / rules.points["redeem_points_per_yuan"], spend),
    ]
    tier_counts = Counter(s.tier_of.get(mid, rules.tiers[0].key) for mid in s.members)
    return {
        "period": {"as_of": as_of.isoformat(), "days": days, "first_day": days_list[0],
                   "since": s.since, "until": s.until},
        "kpis": kpis,
        "members": {"total": members, "new": len(s.joined), "new_followers": len(s.followers),
                    "active": len(active), "paying": len(paying), "orders": len(in_period),
                    "spend_fen": spend, "refunds_fen": s.refunds_in_period},
        "points": {"issued": issued, "redeemed": s.redeemed, "expired": s.expired,
                   "reversed": s.reversed, "by_reason": dict(sorted(s.issued.items())),
                   "definition": DEFINITIONS["points_redeem"]},
        "coupons": [
            {"template": key, "name": tpl.name, "issued": len(s.coupon_issued.get(key, ())),
             "redeemed": len(s.coupon_issued.get(key, set()) & s.redeemed_codes),
             "expired": s.coupon_expired[key],
             "rate": ratio(len(s.coupon_issued.get(key, set()) & s.redeemed_codes),
                           len(s.coupon_issued.get(key, ())))}
            for key, tpl in rules.coupons.items()],
        "tiers": [{"tier": t.key, "name": t.name, "members": tier_counts[t.key],
                   "upgrades": s.upgrades[t.key], "downgrades": s.downgrades[t.key]}
                  for t in rules.tiers],
        "checkin": {"days": days_list, "dau": dau, "average": ratio(sum(dau), days),
                    "last_day": dau[-1]},
        "pushes": {**pushes, "definition": DEFINITIONS["pushes"]},
        "unsubscribes": {"opted_out": unsub, "unfollowed": len(s.unfollowed)},
        "channels": {"by_state": dict(sorted(s.channels.items())),
                     "definition": DEFINITIONS["channels"]},
        "rfm": _segments(s, net, rules),
        "definitions": DEFINITIONS,
    }


def _segments(s: _Scan, net: dict, rules: Rules) -> list[dict[str, Any]]:
    """RFM as of the end of the period, scored by the same rule as the member step."""
    end = datetime.fromtimestamp(s.until - 1, rules.tz)
    orders: dict[str, dict[str, Order]] = defaultdict(dict)
    for (mid, ref), (at, paid) in s.orders.items():
        o = Order(ref, paid, paid, at, 0, refunded_fen=paid - net[(mid, ref)])
        orders[mid][ref] = o
    counts: Counter = Counter()
    for mid in s.members:
        mine = orders.get(mid, {})
        m = Member(id=mid, member_code="", orders=mine,
                   last_purchase=max((o.paid_at for o in mine.values()), default=None))
        counts[rfm.segment(m, end, rules) or NO_SEGMENT] += 1
    names = [*rfm.SEGMENTS.values(), NO_SEGMENT]
    return [{"segment": n, "members": counts[n]} for n in names]
