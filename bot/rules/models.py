"""The member aggregate and what a rules step returns. Plain dataclasses, no I/O.

Instants are unix seconds (int); calendar days are ISO dates (``YYYY-MM-DD``) in the
configured zone; money is integer fen; points are integers.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from datetime import date
from typing import Any

PROFILE = "profile"  # the built-in task the profile (phone + birthday) earns

# the eight RFM segments by (recent, frequent, monetary): rfm.py scores members into them,
# campaigns may target them
RFM_SEGMENTS = {
    (True, True, True): "重要价值客户",
    (True, False, True): "重要发展客户",
    (False, True, True): "重要保持客户",
    (False, False, True): "重要挽留客户",
    (True, True, False): "一般价值客户",
    (True, False, False): "一般发展客户",
    (False, True, False): "一般保持客户",
    (False, False, False): "一般挽留客户",
}


@dataclass(frozen=True)
class Task:
    key: str
    name: str
    points: int
    daily_cap: int  # completions rewarded per calendar day; 0 = no cap
    lifetime_cap: int  # completions rewarded ever; 0 = no cap
    start: date | None = None  # active from this day (inclusive); None = always
    end: date | None = None  # active until this day (inclusive); None = always

    @property
    def reported(self) -> bool:
        """Reported over ``POST /api/events`` (the profile task is earned in chat)."""
        return self.key != PROFILE

    def open_on(self, day: date) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)


@dataclass
class Lot:
    """One credit of points with its own expiry; spending takes the earliest expiry first."""

    ref: str  # what earned it: "order:<id>", "checkin:<day>", "invite:<id>", ...
    earned_on: str
    expires_on: str  # valid until the end of this day
    amount: int
    remaining: int


@dataclass
class Pending:
    """Purchase points not yet usable (``points.pending_days``): a refund before
    ``matures_on`` cancels them; on that day they become a lot expiring 12 months later."""

    ref: str  # "order:<id>"
    earned_on: str  # the day the order was paid
    matures_on: str  # first day the points are available
    amount: int


@dataclass
class Coupon:
    code: str
    template: str
    issued_at: int
    valid_until: int  # last valid instant
    status: str = "issued"  # issued -> redeemed | expired
    order_id: str | None = None
    redeemed_at: int | None = None
    ref: str = ""  # the idempotency key that issued it
    redeemed_amount_fen: int | None = None  # the order amount it was redeemed on
    offer: str = ""  # the catalogue item (兑换) it was exchanged from
    cash_fen: int = 0  # 积分+现金: what the till collects when it is used


@dataclass
class Order:
    order_id: str
    amount_fen: int  # order total before coupon and points
    paid_fen: int  # what was actually paid: the base of points and tier spend
    paid_at: int
    points: int
    multiplier: int = 1
    store_id: str = ""
    coupon_code: str | None = None
    points_used: int = 0
    refunded_fen: int = 0
    refunds: dict[str, int] = field(default_factory=dict)
    points_reversed: int = 0  # earned points taken back by refunds
    body_hash: str = ""
    # earned points whose lot expired unspent (None: recorded before this was kept)
    points_expired: int | None = None
    # the points paid with, as [expires_on, amount] of the lots they came from
    points_spent_from: list[list] = field(default_factory=list)
    points_returned: int = 0  # points paid with that refunds gave back
    campaign: str = ""  # the campaign (积分翻倍) that added points to this order
    campaign_points: int = 0  # what it added, within its budget (part of ``points``)

    @property
    def net_fen(self) -> int:
        return self.paid_fen - self.refunded_fen


@dataclass
class Member:
    id: str
    member_code: str
    openid: str | None = None
    unionid: str | None = None
    external_userid: str | None = None
    owner_userid: str | None = None
    follow_users: list[str] = field(default_factory=list)
    phone: str | None = None  # encrypted at rest by the store
    birthday: str | None = None  # YYYY-MM-DD; encrypted at rest by the store
    nickname: str | None = None
    tier: str = "normal"
    grace_until: int | None = None
    joined_at: int = 0
    followed: bool = True
    unfollowed_at: int | None = None
    opted_out: bool = False
    last_activity: int = 0
    last_purchase: int | None = None
    invite_code: str = ""
    inviter_id: str | None = None
    invited_total: int = 0
    invited_rewarded: dict[str, int] = field(default_factory=dict)  # day -> rewarded invites
    invited_rewarded_total: int = 0  # rewarded invites ever: the invite ladder counts these
    ladder_done: list[int] = field(default_factory=list)  # invite-ladder rungs rewarded
    lots: list[Lot] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)  # purchase points not yet available
    debt: int = 0
    checkin_last: str | None = None
    checkin_streak: int = 0
    checkin_total: int = 0
    checkin_runs: list[list[str]] = field(default_factory=list)  # recent [first, last] days
    coupons: list[Coupon] = field(default_factory=list)
    orders: dict[str, Order] = field(default_factory=dict)
    lifetime_spend: int = 0
    profile_rewarded: bool = False
    # task key -> {"total": rewarded completions, "days": {day: completions that day}}
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    gender: str | None = None  # 男 / 女, from the card's activation form
    # the member card in WeChat's card wallet (rules/card.py)
    card_id: str | None = None
    card_code: str | None = None
    card_channel: str | None = None  # OuterStr of the QR code or scene it was taken from
    card_got_at: int | None = None
    card_active: bool = False
    card_bonus: int = 0  # the balance and tier last enqueued to the card
    card_tier: str | None = None
    card_pending: int = 0  # the pending points last enqueued to the card (when it shows them)
    card_seq: int = 0
    tags: list[str] = field(default_factory=list)
    rfm: str | None = None
    pushes: dict[str, int] = field(default_factory=dict)  # "kind:period" -> when enqueued
    push_days: dict[str, str] = field(default_factory=dict)  # day -> kind sent that day
    # news for the member's next reply (an invite they earned points for), then cleared
    notices: list[dict[str, Any]] = field(default_factory=list)
    # channel (渠道) of a WeCom contact: the State of its contact QR (store_<id>, cmp_<name>)
    channel: str | None = None
    wecom_tags: dict[str, str] = field(default_factory=dict)  # tags WeCom was asked to mark
    tag_seq: int = 0  # wecom_tag outbox entries so far
    # a customer handover in progress: {"from", "to", "resigned", "at"}; pushes wait for it
    handover: dict[str, Any] = field(default_factory=dict)
    # the owner staff left the company (address book delete_user; none other follows): {"staff",
    # "at"}; pushes wait until a new owner is known (a handover, a new add_external_contact)
    owner_left: dict[str, Any] = field(default_factory=dict)
    version: int = 0

    @property
    def awaits_owner(self) -> bool:
        """A WeCom contact whose pushes wait for a new owner (handover pending, owner left)."""
        return bool(self.external_userid and (self.handover or self.owner_left))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in _MEMBER_FIELDS}
        d["lots"] = [vars(x).copy() for x in self.lots]
        d["pending"] = [vars(x).copy() for x in self.pending]
        d["coupons"] = [vars(x).copy() for x in self.coupons]
        d["orders"] = {k: {**vars(o), "refunds": dict(o.refunds),
                           "points_spent_from": [list(x) for x in o.points_spent_from]}
                       for k, o in self.orders.items()}
        d["checkin_runs"] = [list(r) for r in self.checkin_runs]
        d["follow_users"] = list(self.follow_users)
        d["tags"] = list(self.tags)
        d["invited_rewarded"] = dict(self.invited_rewarded)
        d["ladder_done"] = list(self.ladder_done)
        d["pushes"] = dict(self.pushes)
        d["push_days"] = dict(self.push_days)
        d["notices"] = [dict(n) for n in self.notices]
        d["wecom_tags"] = dict(self.wecom_tags)
        d["handover"] = dict(self.handover)
        d["owner_left"] = dict(self.owner_left)
        d["tasks"] = {k: {**v, "days": dict(v.get("days") or {})} for k, v in self.tasks.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Member:
        """From ``to_dict``'s form (as stored; an older record may lack newer fields, which
        take their defaults, and unknown keys are dropped). Filled in place rather than
        through the generated ``__init__`` of some sixty arguments: a member is decoded on
        every update, so this is on the callback's path."""
        d = dict(d)
        d["lots"] = [Lot(**x) for x in d.get("lots", ())]
        d["pending"] = [Pending(**x) for x in d.get("pending", ())]
        d["coupons"] = [Coupon(**x) for x in d.get("coupons", ())]
        d["orders"] = {k: Order(**o) for k, o in d.get("orders", {}).items()}
        if not d.keys() <= _MEMBER_NAMES:
            d = {k: v for k, v in d.items() if k in _MEMBER_NAMES}
        for name in _MEMBER_REQUIRED:
            if name not in d:
                raise TypeError(f"a member record without its {name}")
        m = cls.__new__(cls)
        state = m.__dict__
        for name, default in _MEMBER_DEFAULTS:  # in field order, as __init__ would
            state[name] = d[name] if name in d else default()
        return m

    def fields_dict(self) -> dict[str, Any]:
        """Every field as it is (shared, not copied): for serialising at once (the codec)."""
        return dict(self.__dict__)


_MEMBER_FIELDS = fields(Member)
_MEMBER_NAMES = {f.name for f in _MEMBER_FIELDS}


def _default_of(f: Any) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory
    if f.default is not MISSING:
        return lambda v=f.default: v
    return lambda: None  # required (id, member_code): checked by from_dict


_MEMBER_DEFAULTS = [(f.name, _default_of(f)) for f in _MEMBER_FIELDS]
_MEMBER_REQUIRED = [f.name for f in _MEMBER_FIELDS
                    if f.default is MISSING and f.default_factory is MISSING]


@dataclass
class Entry:
    """One ledger line: every change of points, spend, coupons, tier or pushes leaves one."""

    kind: str  # credit, spend, expire, reverse, adjust, order, refund, coupon_issue, ...
    at: int
    points: int = 0
    amount_fen: int = 0
    ref: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Change:
    """What one atomic step produces: the new aggregate and everything committed with it."""

    member: Member | None
    result: Any = None
    entries: list[Entry] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    indexes: dict[str, Any] | None = None  # filled by the use-case layer (rules.indexes)
    stock_returns: list[tuple[str, str]] = field(default_factory=list)  # (template, code)
    # preconditions of the commit, applied with it or not at all:
    claims: list[tuple[str, str]] = field(default_factory=list)  # (kind, value) bound to it
    stock_takes: list[tuple[str, str]] = field(default_factory=list)  # (template, key)


class Refusal(Exception):
    """A rule says no (not enough points, coupon expired, ...). Nothing is changed.

    ``code`` is stable for API clients; ``message`` is short Chinese for members.
    """

    def __init__(self, code: str, message: str, /, **data: Any) -> None:
        # positional-only, so that ``data`` may carry a coupon ``code=...``
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
