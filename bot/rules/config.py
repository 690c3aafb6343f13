"""The rules object: every number of the programme, built-in defaults merged with a TOML file.

A wrong file is refused with :class:`RulesError`, whose message names the field and why.
"""

from __future__ import annotations

import calendar
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .campaigns import Campaign, CampaignRulesError
from .campaigns import parse as parse_campaigns
from .card import CardDef, CardRulesError
from .card import parse as parse_card
from .experiments import Experiment
from .experiments import parse as parse_experiments
from .fields import RulesError, _int, _ints, _str, finite_numbers, whole
from .models import PROFILE, Task
from .offers import Offer
from .offers import parse as parse_offers
from .sections import day, entries

DEFAULTS: dict[str, Any] = {
    "timezone": "Asia/Shanghai",
    "points": {
        "expiry_months": 12,
        "points_per_yuan": 1,
        "redeem_points_per_yuan": 100,
        "redeem_min_points": 500,
        "refund_min_days": 30,
        "pending_days": 0,  # purchase points usable only N days after payment (0: at once)
    },
    "orders": {"earliest_paid_at": "2000-01-01"},
    "importer": {
        "test_accounts": ["(?i)(test|tester|demo)[ _-]?[0-9]*", "测试[0-9]*",
                          "测试(账号|用户|员)[0-9]*"],
    },
    "checkin": {"base": 5, "step": 1, "cap": 10, "cycle_days": 7, "cycle_bonus": 20},
    "invite": {
        "inviter_points": 50,
        "invitee_points": 50,
        "daily_cap": 20,
        "bind_window_days": 7,
    },
    # the invite ladder (阶梯式礼品): rungs of rewarded invites, each rewarded once per inviter
    # with points and/or a coupon, e.g. {invites = 3, coupon = "points_500"},
    # {invites = 5, points = 200}. Empty: no ladder.
    "invite_ladder": [],
    "grace": {"months": 6, "warning_days": [30, 7]},
    "tiers": [
        {"key": "normal", "name": "普通会员", "metric": "lifetime", "threshold_fen": 0,
         "multiplier": 1, "benefits": ["新品折扣", "生日礼包"]},
        {"key": "silver", "name": "银卡会员", "metric": "lifetime", "threshold_fen": 300_000,
         "multiplier": 2, "benefits": ["优先配送", "积分翻倍"]},
        {"key": "gold", "name": "金卡会员", "metric": "trailing12", "threshold_fen": 1_500_000,
         "multiplier": 2, "benefits": ["专属客服", "新品内测资格"]},
        {"key": "black", "name": "黑金会员", "metric": "trailing12", "threshold_fen": 5_000_000,
         "multiplier": 2, "benefits": ["VIP活动", "定制服务"]},
    ],
    "coupons": [
        {"key": "welcome", "name": "新人券", "kind": "cash", "threshold_fen": 5000,
         "value": 1000, "valid_days": 7, "stock": 1_000_000, "per_member_limit": 1},
        {"key": "wakeup", "name": "唤醒券", "kind": "cash", "threshold_fen": 10000,
         "value": 2000, "valid_days": 3, "stock": 1_000_000, "per_member_limit": 12},
        {"key": "birthday", "name": "生日礼券", "kind": "cash", "threshold_fen": 10000,
         "value": 3000, "valid_days": 30, "stock": 1_000_000, "per_member_limit": 1000},
        {"key": "memberday_silver", "name": "银卡会员日券", "kind": "discount",
         "threshold_fen": 0, "value": 85, "valid_days": 0, "stock": 1_000_000,
         "per_member_limit": 1000, "tiers": ["silver"]},
        {"key": "memberday_gold", "name": "金卡会员日券", "kind": "discount",
         "threshold_fen": 0, "value": 70, "valid_days": 0, "stock": 1_000_000,
         "per_member_limit": 1000, "tiers": ["gold", "black"]},
        {"key": "points_500", "name": "¥5无门槛券", "kind": "cash", "threshold_fen": 0,
         "value": 500, "valid_days": 30, "stock": 1_000_000, "per_member_limit": 1000},
    ],
    "catalogue": [{"coupon": "points_500", "points": 500}],
    "rfm": {"recency_days": 90, "frequency_orders": 2, "monetary_fen": 100_000},
    "push": {
        "quiet_start": "21:00",
        "quiet_end": "09:00",
        "daily_cap": 1,
        "priority": [],  # empty: the job registry's default order (bot.jobs.registry)
        "dormant_days": 30,
        "wakeup_days": 90,
        "expiry_warning_days": [30, 7],
        "member_day": 15,
        # per lifecycle kind, only members with these tier keys / RFM segments (rules/targets.py)
        "targets": {},
    },
    "rate_limit": {"commands_per_minute": 20},
    # WeCom in depth (docs/lifecycle.md): confirmation of 1v1 tasks, reminders, WeCom's own
    # per-customer limit of group messages, corp tags
    "wecom": {
        "confirm_days": 3,  # a task still unconfirmed this long after it was created is final
        "remind_after_minutes": 120,  # staff who have not confirmed by then are reminded
        "reconcile_after_minutes": 10,  # a task WeCom does not list by then was never created
        # WeCom's limit per customer: "month" (as many as the month has days), "week" (7),
        # "day" (1), as set in the WeCom admin console
        "send_limit": "month",
        "tier_tag_group": "会员等级",
        "rfm_tag_group": "RFM分群",
    },
    "staff": {
        # no single points adjustment, whoever makes it, goes beyond this
        "adjust_cap": 10_000,
        # what each role may do in the sidebar: coupon templates it may issue, the points one
        # adjustment may add or take (±), and the total (sum of |points|) per staff per day
        # (0 = no daily cap). Every staff member has ``default_role``; the userids in
        # MEMBERBOT_SIDEBAR_ADMINS have ``admin_role``; ``users`` names others one by one.
        "default_role": "staff",
        "admin_role": "admin",
        "roles": {
            "staff": {"coupons": ["wakeup", "birthday", "points_500"],
                      "adjust_per_action": 200, "adjust_per_day": 1000},
            "admin": {"coupons": ["wakeup", "birthday", "points_500"],
                      "adjust_per_action": 10_000, "adjust_per_day": 0},
        },
        "users": {},
    },
    # tasks (任务积分): points per completion, per-day and lifetime caps (0 = none), an optional
    # window [start, end] of days. "profile" (完善资料) is earned by phone + birthday, once;
    # the others are reported by store systems with POST /api/events.
    "tasks": [
        {"key": "profile", "name": "完善资料", "points": 50, "daily_cap": 0, "lifetime_cap": 1},
        {"key": "share", "name": "分享好友", "points": 20, "daily_cap": 3, "lifetime_cap": 0},
        {"key": "survey", "name": "参与问卷", "points": 20, "daily_cap": 1, "lifetime_cap": 0},
        {"key": "article", "name": "阅读文章", "points": 10, "daily_cap": 2, "lifetime_cap": 0},
    ],
    # A/B tests of lifecycle messages (rules/experiments.py): [[experiments]] tables
    "experiments": [],
    "card": None,  # the member card in WeChat's card wallet: optional (rules/card.py)
    "campaigns": [],  # 积分翻倍 campaigns with a window, targeting and a budget (campaigns.py)
}


# points per yuan × a tier's multiplier × a campaign's (at most 10) stays far from overflow
MAX_POINTS_PER_YUAN = 1_000
MAX_TIER_MULTIPLIER = 10


@dataclass(frozen=True)
class StaffRole:
    key: str
    coupons: tuple[str, ...]
    adjust_per_action: int  # 0 = may not adjust points
    adjust_per_day: int  # 0 = no daily cap


@dataclass(frozen=True)
class StaffPolicy:
    adjust_cap: int
    default_role: str
    admin_role: str
    roles: dict[str, StaffRole]
    users: dict[str, str]  # userid -> role key

    def __getitem__(self, name: str) -> int:  # rules.staff["adjust_cap"], as before
        if name != "adjust_cap":
            raise KeyError(name)
        return self.adjust_cap

    def role_of(self, userid: str, *, admins: tuple[str, ...] = ()) -> StaffRole:
        """A named user's role, else the admin role for sidebar admins, else the default."""
        key = self.users.get(userid) or (self.admin_role if userid in admins
                                         else self.default_role)
        return self.roles[key]


@dataclass(frozen=True)
class Tier:
    key: str
    name: str
    metric: str  # "lifetime" or "trailing12"
    threshold_fen: int
    multiplier: int
    benefits: tuple[str, ...]
    rank: int = 0


@dataclass(frozen=True)
class CouponTemplate:
    key: str
    name: str
    kind: str  # "cash" (满X减Y, value in fen) or "discount" (value = percent paid, 85 = 85折)
    threshold_fen: int
    value: int
    valid_days: int  # 0 = valid until the end of the day it was issued
    valid_hours: int
    stock: int
    per_member_limit: int
    tiers: tuple[str, ...]

    def label(self) -> str:
        if self.kind == "cash":
            v = _yuan(self.value)
            return f"满{_yuan(self.threshold_fen)}减{v}" if self.threshold_fen else f"减{v}"
        tenths = self.value / 10
        return f"{tenths:g}折"


def _yuan(fen: int) -> str:
    return f"{fen // 100}" if fen % 100 == 0 else f"{fen / 100:.2f}"


@dataclass(frozen=True)
class Rung:
    invites: int  # rewarded invites that reach it
    points: int
    coupon: str  # a coupon template key, or "" for none


@dataclass(frozen=True)
class Rules:
    tz: ZoneInfo
    points: dict[str, int]
    checkin: dict[str, int]
    invite: dict[str, int]
    grace_months: int
    grace_warning_days: tuple[int, ...]
    tiers: tuple[Tier, ...]
    coupons: dict[str, CouponTemplate]
    catalogue: tuple[Offer, ...]
    rfm: dict[str, int]
    push: dict[str, Any]
    rate_limit: dict[str, int]
    staff: StaffPolicy
    orders: dict[str, Any] = field(default_factory=dict)
    test_accounts: tuple[str, ...] = ()
    wecom: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS["wecom"]))
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    card: CardDef | None = None
    tasks: dict[str, Task] = field(default_factory=dict)
    invite_ladder: tuple[Rung, ...] = ()
    campaigns: tuple[Campaign, ...] = ()
    experiments: tuple[Experiment, ...] = ()

    def tier(self, key: str) -> Tier:
        for t in self.tiers:
            if t.key == key:
                return t
        return self.tiers[0]

    def next_tier(self, key: str) -> Tier | None:
        rank = self.tier(key).rank
        return self.tiers[rank + 1] if rank + 1 < len(self.tiers) else None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            out[k] = _merge(base[k], v)
        else:
            out[k] = v
    return out


def _tiers(items: Any) -> tuple[Tier, ...]:
    if not isinstance(items, list) or not items:
        raise RulesError("tiers: must be a non-empty list of [[tiers]] tables")
    out: list[Tier] = []
    for i, t in enumerate(items):
        p = f"tiers[{i}]"
        if not isinstance(t, dict):
            raise RulesError(f"{p}: must be a table")
        metric = _str(t, "metric", p)
        if metric not in ("lifetime", "trailing12"):
            raise RulesError(f"{p}.metric: must be 'lifetime' or 'trailing12', got {metric!r}")
        benefits = t.get("benefits", [])
        if not isinstance(benefits, list) or not all(isinstance(b, str) for b in benefits):
            raise RulesError(f"{p}.benefits: must be a list of texts")
        tier = Tier(_str(t, "key", p), _str(t, "name", p), metric,
                    _int(t, "threshold_fen", p),
                    _int(t, "multiplier", p, minimum=1, maximum=MAX_TIER_MULTIPLIER),
                    tuple(benefits), rank=i)
        if out and tier.threshold_fen < out[-1].threshold_fen and tier.metric == out[-1].metric:
            raise RulesError(f"{p}.threshold_fen: tiers must be listed from lowest to highest")
        out.append(tier)
    if out[0].threshold_fen != 0:
        raise RulesError("tiers[0].threshold_fen: the first tier is the entry tier and must be 0")
    keys = [t.key for t in out]
    if len(set(keys)) != len(keys):
        raise RulesError("tiers: tier keys must be unique")
    return tuple(out)


def _coupons(items: Any, tier_keys: set[str]) -> dict[str, CouponTemplate]:
    if not isinstance(items, list):
        raise RulesError("coupons: must be a list of [[coupons]] tables")
    out: dict[str, CouponTemplate] = {}
    for i, c in enumerate(items):
        p = f"coupons[{i}]"
        if not isinstance(c, dict):
            raise RulesError(f"{p}: must be a table")
        kind = _str(c, "kind", p)
        if kind not in ("cash", "discount"):
            raise RulesError(f"{p}.kind: must be 'cash' or 'discount', got {kind!r}")
        value = _int(c, "value", p, minimum=1)
        if kind == "discount" and value >= 100:
            raise RulesError(f"{p}.value: a discount is the percent paid (85 = 85折), below 100")
        tiers = c.get("tiers", [])
        if not isinstance(tiers, list) or any(t not in tier_keys for t in tiers):
            raise RulesError(f"{p}.tiers: must list known tier keys {sorted(tier_keys)}")
        c = {"valid_days": 0, "valid_hours": 0, **c}
        tpl = CouponTemplate(
            _str(c, "key", p), _str(c, "name", p), kind, _int(c, "threshold_fen", p), value,
            _int(c, "valid_days", p), _int(c, "valid_hours", p), _int(c, "stock", p),
            _int(c, "per_member_limit", p, minimum=1), tuple(tiers))
        if tpl.key in out:
            raise RulesError(f"{p}.key: duplicate coupon key {tpl.key!r}")
        out[tpl.key] = tpl
    return out


def _orders(section: Any) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise RulesError("orders: must be a table")
    unknown = set(section) - set(DEFAULTS["orders"])
    if unknown:
        raise RulesError(f"orders.{sorted(unknown)[0]}: unknown setting")
    v = section.get("earliest_paid_at")
    if isinstance(v, datetime):
        v = v.date()
    if isinstance(v, str):
        try:
            v = date.fromisoformat(v)
        except ValueError:
            pass
    if not isinstance(v, date) or v.year < 1900:
        raise RulesError("orders.earliest_paid_at: must be a date YYYY-MM-DD from 1900 on, "
                         f"got {section.get('earliest_paid_at')!r}")
    return {"earliest_paid_at": v}


def _test_accounts(section: Any) -> tuple[str, ...]:
    if not isinstance(section, dict):
        raise RulesError("importer: must be a table")
    unknown = set(section) - set(DEFAULTS["importer"])
    if unknown:
        raise RulesError(f"importer.{sorted(unknown)[0]}: unknown setting")
    pats = section.get("test_accounts")
    if not isinstance(pats, list) or not all(isinstance(p, str) and p for p in pats):
        raise RulesError("importer.test_accounts: must be a list of regular expressions")
    for i, p in enumerate(pats):
        try:
            re.compile(p)
        except re.error as e:
            raise RulesError(f"importer.test_accounts[{i}]: not a regular expression "
                             f"({e})") from e
    return tuple(pats)


def _staff(section: Any, coupons: dict[str, CouponTemplate]) -> StaffPolicy:
    p = "staff"
    if not isinstance(section, dict):
        raise RulesError(f"{p}: must be a table")
    known = {"adjust_cap", "default_role", "admin_role", "roles", "users"}
    unknown = set(section) - known
    if unknown:
        raise RulesError(f"{p}.{sorted(unknown)[0]}: unknown setting")
    cap = _int(section, "adjust_cap", p, minimum=1)
    raw_roles = section.get("roles")
    if not isinstance(raw_roles, dict) or not raw_roles:
        raise RulesError(f"{p}.roles: must be a table of [staff.roles.<name>] tables")
    roles: dict[str, StaffRole] = {}
    for key, r in raw_roles.items():
        rp = f"{p}.roles.{key}"
        if not isinstance(r, dict):
            raise RulesError(f"{rp}: must be a table")
        unknown = set(r) - {"coupons", "adjust_per_action", "adjust_per_day"}
        if unknown:
            raise RulesError(f"{rp}.{sorted(unknown)[0]}: unknown setting")
        r = {"coupons": [], "adjust_per_action": 0, "adjust_per_day": 0, **r}
        allowed = r["coupons"]
        if not isinstance(allowed, list) or any(c not in coupons for c in allowed):
            raise RulesError(f"{rp}.coupons: must list coupon template keys "
                             f"{sorted(coupons)}")
        per_action = _int(r, "adjust_per_action", rp)
        if per_action > cap:
            raise RulesError(f"{rp}.adjust_per_action: above staff.adjust_cap ({cap})")
        roles[key] = StaffRole(key, tuple(allowed), per_action,
                               _int(r, "adjust_per_day", rp))
    for name in ("default_role", "admin_role"):
        if _str(section, name, p) not in roles:
            raise RulesError(f"{p}.{name}: no role {section[name]!r} in staff.roles")
    users = section.get("users", {})
    if not isinstance(users, dict) or any(v not in roles for v in users.values()):
        raise RulesError(f"{p}.users: must map staff userids to roles {sorted(roles)}")
    return StaffPolicy(cap, section["default_role"], section["admin_role"], roles,
                       {str(k): str(v) for k, v in users.items()})


# the largest a [[tasks]] entry may say: a completion earns at most ¥1000 of points
TASK_MAX = {"points": 100_000, "daily_cap": 1_000, "lifetime_cap": 1_000_000}


def _tasks(items: Any, legacy_profile: int | None) -> dict[str, Task]:
    out: dict[str, Task] = {}
    known = {"key", "name", "points", "daily_cap", "lifetime_cap", "start", "end"}
    for p, t in entries(items, "tasks", known, RulesError):
        t = {"daily_cap": 0, "lifetime_cap": 0, **t}
        key = _str(t, "key", p)
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", key):
            raise RulesError(f"{p}.key: must be lower-case letters, digits and _, got {key!r}")
        window = []
        for name in ("start", "end"):
            d = day(t.get(name))
            if d is None and t.get(name) not in (None, ""):
                raise RulesError(f"{p}.{name}: must be a date YYYY-MM-DD, got {t[name]!r}")
            window.append(d)
        if window[0] and window[1] and window[1] < window[0]:
            raise RulesError(f"{p}.end: before {p}.start")
        task = Task(key, _str(t, "name", p),
                    _int(t, "points", p, minimum=1, maximum=TASK_MAX["points"]),
                    _int(t, "daily_cap", p, maximum=TASK_MAX["daily_cap"]),
                    _int(t, "lifetime_cap", p, maximum=TASK_MAX["lifetime_cap"]), *window)
        if key == PROFILE and task.lifetime_cap != 1:
            raise RulesError(f"{p}.lifetime_cap: the profile task is earned once (1)")
        if key in out:
            raise RulesError(f"{p}.key: duplicate task key {key!r}")
        out[key] = task
    if PROFILE not in out:  # built in: a file listing only its own tasks keeps it
        d = DEFAULTS["tasks"][0]
        out[PROFILE] = Task(PROFILE, d["name"], d["points"], 0, 1)
    if legacy_profile is not None:  # points.profile_bonus of older rules files
        declared = items is not DEFAULTS["tasks"] and any(
            t.get("key") == PROFILE for t in items)
        prof = out[PROFILE]
        if declared and prof.points != legacy_profile:
            raise RulesError("points.profile_bonus: the profile bonus is now the points of "
                             'the [[tasks]] entry key = "profile"; set it there only')
        out[PROFILE] = Task(PROFILE, prof.name, legacy_profile, 0, 1, prof.start, prof.end)
    return out


RUNG_MAX = {"invites": 100_000, "points": 1_000_000}


def _ladder(items: Any, coupons: dict[str, CouponTemplate]) -> tuple[Rung, ...]:
    out: list[Rung] = []
    for p, r in entries(items, "invite_ladder", {"invites", "points", "coupon"}, RulesError):
        r = {"points": 0, "coupon": "", **r}
        rung = Rung(_int(r, "invites", p, minimum=1, maximum=RUNG_MAX["invites"]),
                    _int(r, "points", p, maximum=RUNG_MAX["points"]), r["coupon"])
        if not isinstance(rung.coupon, str) or (rung.coupon and rung.coupon not in coupons):
            raise RulesError(f"{p}.coupon: no coupon template {r['coupon']!r}")
        if rung.coupon and coupons[rung.coupon].tiers:
            raise RulesError(f"{p}.coupon: {rung.coupon!r} is only for the tiers "
                             f"{list(coupons[rung.coupon].tiers)}; a rung's coupon must be one "
                             "every inviter may receive")
        if not rung.points and not rung.coupon:
            raise RulesError(f"{p}.points: a rung rewards points, a coupon or both")
        if out and rung.invites <= out[-1].invites:
            raise RulesError(f"{p}.invites: rungs must be listed from fewest to most invites")
        out.append(rung)
    return tuple(out)


def build_rules(data: dict[str, Any]) -> Rules:
    """Validate a merged rules mapping into :class:`Rules`."""
    known = set(DEFAULTS)
    finite_numbers(data)
    for k in data:
        if k not in known:
            raise RulesError(f"{k}: unknown setting (known: {', '.join(sorted(known))})")
    try:
        tz = ZoneInfo(_str(data, "timezone", "rules"))
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise RulesError(f"timezone: unknown time zone {data.get('timezone')!r}") from e
    raw_points = data["points"]
    legacy_profile = None
    if isinstance(raw_points, dict) and "profile_bonus" in raw_points:
        # older files: the profile bonus is now the points of the "profile" task
        legacy_profile = _int(raw_points, "profile_bonus", "points", minimum=1,
                              maximum=TASK_MAX["points"])
        raw_points = {k: v for k, v in raw_points.items() if k != "profile_bonus"}
    points = _ints(raw_points, "points", list(DEFAULTS["points"]),
                   maxima={"points_per_yuan": MAX_POINTS_PER_YUAN})
    if points["redeem_points_per_yuan"] < 1:
        raise RulesError("points.redeem_points_per_yuan: must be at least 1")
    checkin = _ints(data["checkin"], "checkin", list(DEFAULTS["checkin"]))
    if checkin["cycle_days"] < 1:
        raise RulesError("checkin.cycle_days: must be at least 1")
    invite = _ints(data["invite"], "invite", list(DEFAULTS["invite"]))
    grace = data["grace"]
    if not isinstance(grace, dict):
        raise RulesError("grace: must be a table")
    g_months = _int(grace, "months", "grace")
    warn = grace.get("warning_days")
    if not isinstance(warn, list):
        raise RulesError("grace.warning_days: must be a list of positive whole numbers")
    for i, w in enumerate(warn):
        whole(w, f"grace.warning_days[{i}]", minimum=1)
    tiers = _tiers(data["tiers"])
    coupons = _coupons(data["coupons"], {t.key for t in tiers})
    cat = parse_offers(data["catalogue"], coupons, points["redeem_min_points"], tz)
    rfm = _ints(data["rfm"], "rfm", list(DEFAULTS["rfm"]), minimum=1)
    if not isinstance(data["push"], dict):
        raise RulesError("push: must be a table")
    push = dict(data["push"])
    for k in ("quiet_start", "quiet_end"):
        v = push.get(k)
        if not (isinstance(v, str) and len(v) == 5 and v[2] == ":" and v.replace(":", "")
                .isdigit() and int(v[:2]) < 24 and int(v[3:]) < 60):
            raise RulesError(f"push.{k}: must be a time HH:MM, got {v!r}")
    for k in ("daily_cap", "dormant_days", "wakeup_days", "member_day"):
        _int(push, k, "push", minimum=1)
    ewd = push.get("expiry_warning_days")
    if not isinstance(ewd, list) or not ewd:
        raise RulesError("push.expiry_warning_days: must be a non-empty list of days")
    for i, w in enumerate(ewd):
        whole(w, f"push.expiry_warning_days[{i}]", minimum=1)
    if push["member_day"] > 28:
        raise RulesError("push.member_day: must be a day 1..28 so that it exists every month")
    prio = push.get("priority")
    if not (isinstance(prio, list) and all(isinstance(k, str) for k in prio)
            and len(set(prio)) == len(prio)):
        raise RulesError("push.priority: must be a list of job kinds, each named once")
    rate = _ints(data["rate_limit"], "rate_limit", ["commands_per_minute"], minimum=1)
    staff = _staff(data["staff"], coupons)
    try:
        card = parse_card(data.get("card"), [t.key for t in tiers])
        campaigns = parse_campaigns(data["campaigns"], [t.key for t in tiers],
                                    push["member_day"], tz)
    except (CardRulesError, CampaignRulesError) as e:
        raise RulesError(str(e)) from e
    tasks = _tasks(data["tasks"], legacy_profile)
    points["profile_bonus"] = tasks[PROFILE].points
    return Rules(tz, points, checkin, invite, g_months, tuple(warn), tiers, coupons, cat,
                 rfm, push, rate, staff, orders=_orders(data["orders"]),
                 test_accounts=_test_accounts(data["importer"]), wecom=_wecom(data["wecom"]),
                 raw=data, card=card, tasks=tasks,
                 invite_ladder=_ladder(data["invite_ladder"], coupons), campaigns=campaigns,
                 experiments=parse_experiments(data["experiments"]))


SEND_LIMITS = ("month", "week", "day")


def send_limit(rules: Rules, day: date) -> tuple[str, int]:
    """WeCom's per-customer limit of group messages as of ``day``: the period it counts in
    and how many it allows (a month: as many as the month has days; a week: 7; a day: 1)."""
    kind = rules.wecom["send_limit"]
    if kind == "day":
        return day.isoformat(), 1
    if kind == "week":
        y, w, _ = day.isocalendar()
        return f"{y}-W{w:02d}", 7
    return f"{day:%Y-%m}", calendar.monthrange(day.year, day.month)[1]


def _wecom(section: Any) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise RulesError("wecom: must be a table")
    unknown = sorted(set(section) - set(DEFAULTS["wecom"]))
    if unknown:
        raise RulesError(f"wecom.{unknown[0]}: unknown setting (known: "
                         f"{', '.join(sorted(DEFAULTS['wecom']))})")
    out = {**DEFAULTS["wecom"], **section}
    _int(out, "confirm_days", "wecom", minimum=1)
    _int(out, "remind_after_minutes", "wecom")
    _int(out, "reconcile_after_minutes", "wecom")
    if out["send_limit"] not in SEND_LIMITS:
        raise RulesError(f"wecom.send_limit: must be one of {', '.join(SEND_LIMITS)}, got "
                         f"{out['send_limit']!r}")
    for k in ("tier_tag_group", "rfm_tag_group"):
        v = out[k]
        if not isinstance(v, str) or not v.strip() or len(v) > 30:
            raise RulesError(f"wecom.{k}: must be a name of 1 to 30 characters")
    return out


def push_priority(given: list[str] | tuple[str, ...], kinds: tuple[str, ...]
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The daily cap's order of the push kinds ``kinds`` (their default order): the rules
    file's ``push.priority`` first, then the kinds it does not name, in default order.
    Returns ``(order, missing)``; a kind that does not exist is an error naming it."""
    unknown = [k for k in given if k not in kinds]
    if unknown:
        raise RulesError(f"push.priority: unknown job kind {unknown[0]!r} (known: "
                         f"{', '.join(kinds)})")
    missing = tuple(k for k in kinds if k not in given)
    return (*given, *missing), missing


def load_rules(path: str | Path | None = None) -> Rules:
    """Built-in defaults, overridden by the TOML file at ``path`` when given."""
    data = DEFAULTS
    if path:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise RulesError(f"{p}: cannot read the rules file ({e.strerror})") from e
        try:
            over = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise RulesError(f"{p}: not valid TOML ({e})") from e
        data = _merge(DEFAULTS, over)
        try:
            return build_rules(data)
        except RulesError as e:
            raise RulesError(f"{p}: {e}") from e
        except (TypeError, AttributeError, KeyError) as e:
            raise RulesError(f"{p}: a section has the wrong shape ({e})") from e
    return build_rules(data)
