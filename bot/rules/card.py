"""The member card in WeChat's card wallet: its definition (the ``[card]`` rules section) and
the pure step that keeps the card in sync with the member.

The card shows the balance and the tier. Every step that changes either for a member whose
card is active appends one ``card`` outbox entry carrying the new absolute state, the delta
since the previous entry and why; the member remembers what it last enqueued
(``card_bonus``, ``card_tier``, ``card_seq``), so entries are never backwards and never lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .fields import RulesError, whole
from .models import Entry, Member

FORM_FIELDS = {  # rules name -> WeChat's USER_FORM_INFO_FLAG_*
    "mobile": "USER_FORM_INFO_FLAG_MOBILE",
    "birthday": "USER_FORM_INFO_FLAG_BIRTHDAY",
    "gender": "USER_FORM_INFO_FLAG_SEX",
    "name": "USER_FORM_INFO_FLAG_NAME",
}
REQUIRED_FORM = ("mobile", "birthday")
RECORD_MAX = 14  # WeChat shows at most 14 characters of record_bonus

# why the points changed, by ledger reason (credit/spend) or entry kind (expire, reverse)
RECORDS = {
    "checkin": "签到奖励",
    "purchase": "消费积分",
    "pending": "消费积分待生效",
    "matured": "待生效积分到账",
    "order": "积分抵现",
    "exchange": "积分兑换",
    "expire": "积分过期",
    "reverse": "退款扣回积分",
    "restore": "退款退回积分",
    "invitee": "邀请奖励",
    "inviter": "邀请奖励",
    "profile": "完善资料奖励",
    "adjust": "积分调整",
}
RECORD_DEFAULT = "积分变动"
RECORD_TIER = "等级变更"

OUTBOX_KIND = "card"
OUTBOX_STATUS = "card_pending"  # its own statuses: the push sender never takes card rows

_COLOR = re.compile(r"^Color(0[1-9]0|100)$")
_URL = re.compile(r"^https?://\S+$")
_LIMITS = {"brand_name": 12, "title": 9, "notice": 16, "description": 1024,
           "custom_field_name": 5, "pending_field_name": 5, "bonus_rules": 128,
           "bonus_cleared": 128}
_KNOWN = {"brand_name", "title", "logo_url", "background_url", "color", "notice",
          "description", "service_phone", "custom_field_name", "pending_field_name",
          "bonus_rules", "bonus_cleared",
          "notify_points", "quantity", "prerogative", "form", "pay_gift"}


class CardRulesError(ValueError):
    """A ``[card]`` section that cannot be used (the rules loader names the field)."""


@dataclass(frozen=True)
class PayGift:
    """支付即会员: WeChat Pay merchants whose payers are offered the card."""

    mchids: tuple[str, ...]
    begin_time: int
    end_time: int
    min_cost_fen: int
    max_cost_fen: int


@dataclass(frozen=True)
class CardDef:
    brand_name: str
    title: str
    logo_url: str
    background_url: str
    color: str
    notice: str
    description: str
    service_phone: str
    custom_field_name: str
    bonus_rules: str
    bonus_cleared: str
    notify_points: bool
    quantity: int
    prerogative: dict[str, str]  # tier key -> text
    required_form: tuple[str, ...]
    optional_form: tuple[str, ...]
    pay_gift: PayGift | None
    # a second custom field showing pending purchase points (points.pending_days); "" = none
    pending_field_name: str = ""


def _text(d: dict, name: str, *, required: bool = True, default: str = "") -> str:
    v = d.get(name, None if required else default)
    if not isinstance(v, str) or (required and not v.strip()):
        raise CardRulesError(f"card.{name}: must be a non-empty text, got {v!r}")
    limit = _LIMITS.get(name)
    if limit and len(v) > limit:
        raise CardRulesError(f"card.{name}: at most {limit} characters, got {len(v)}")
    return v


def _int(d: dict, name: str, path: str, default: int, minimum: int = 0) -> int:
    try:
        return whole(d.get(name, default), f"{path}.{name}", minimum=minimum)
    except RulesError as e:
        raise CardRulesError(str(e)) from e


def _form(d: dict, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    v = d.get(name, list(default))
    if not isinstance(v, list) or any(f not in FORM_FIELDS for f in v) or len(set(v)) != len(v):
        raise CardRulesError(f"card.form.{name}: must list fields among {sorted(FORM_FIELDS)}"
                             f" once each, got {v!r}")
    return tuple(v)


def _pay_gift(d: Any) -> PayGift | None:
    if d is None:
        return None
    p = "card.pay_gift"
    if not isinstance(d, dict):
        raise CardRulesError(f"{p}: must be a table")
    unknown = set(d) - {"mchids", "begin_time", "end_time", "min_cost_fen", "max_cost_fen"}
    if unknown:
        raise CardRulesError(f"{p}.{sorted(unknown)[0]}: unknown setting")
    mch = d.get("mchids")
    if not isinstance(mch, list) or not mch or not all(isinstance(x, str) and x.isdigit()
                                                      for x in mch):
        raise CardRulesError(f"{p}.mchids: must list WeChat Pay merchant ids (digits)")
    g = PayGift(tuple(mch), _int(d, "begin_time", p, 0), _int(d, "end_time", p, 0),
                _int(d, "min_cost_fen", p, 0), _int(d, "max_cost_fen", p, 0))
    if g.end_time <= g.begin_time:
        raise CardRulesError(f"{p}.end_time: must be after begin_time (unix seconds)")
    if g.max_cost_fen and g.max_cost_fen < g.min_cost_fen:
        raise CardRulesError(f"{p}.max_cost_fen: must be at least min_cost_fen")
    return g


def parse(d: Any, tier_keys: list[str]) -> CardDef | None:
    """The ``[card]`` table as a :class:`CardDef`; ``None`` when there is none."""
    if d is None:
        return None
    if not isinstance(d, dict):
        raise CardRulesError("card: must be a table")
    unknown = set(d) - _KNOWN
    if unknown:
        raise CardRulesError(f"card.{sorted(unknown)[0]}: unknown setting "
                             f"(known: {', '.join(sorted(_KNOWN))})")
    for name in ("logo_url", "background_url"):
        v = d.get(name, "")
        if (name == "logo_url" or v) and not (isinstance(v, str) and _URL.match(v)):
            raise CardRulesError(f"card.{name}: must be an http(s) URL, got {v!r}")
    color = d.get("color", "Color010")
    if not isinstance(color, str) or not _COLOR.match(color):
        raise CardRulesError(f"card.color: must be one of WeChat's Color010 … Color100, "
                             f"got {color!r}")
    notify = d.get("notify_points", True)
    if not isinstance(notify, bool):
        raise CardRulesError(f"card.notify_points: must be true or false, got {notify!r}")
    pre = d.get("prerogative", {})
    if not isinstance(pre, dict):
        raise CardRulesError("card.prerogative: must be a table of tier key = text")
    for k, v in pre.items():
        if k not in tier_keys:
            raise CardRulesError(f"card.prerogative.{k}: not a tier key ({', '.join(tier_keys)})")
        if not isinstance(v, str) or not v.strip():
            raise CardRulesError(f"card.prerogative.{k}: must be a non-empty text")
    form = d.get("form", {})
    if not isinstance(form, dict) or set(form) - {"required", "optional"}:
        raise CardRulesError("card.form: must be a table with required and optional lists")
    required = _form(form, "required", REQUIRED_FORM)
    for f in REQUIRED_FORM:
        if f not in required:
            raise CardRulesError(f"card.form.required: must include {f!r} (the profile needs "
                                 "mobile and birthday)")
    optional = _form(form, "optional", ("gender",))
    both = set(required) & set(optional)
    if both:
        raise CardRulesError(f"card.form.optional: {sorted(both)[0]!r} is required already")
    return CardDef(
        _text(d, "brand_name"), _text(d, "title"), d["logo_url"], d.get("background_url", ""),
        color, _text(d, "notice"), _text(d, "description"),
        _text(d, "service_phone", required=False), _text(d, "custom_field_name",
                                                         required=False, default="等级"),
        _text(d, "bonus_rules"), _text(d, "bonus_cleared", required=False), notify,
        _int(d, "quantity", "card", 100_000_000, minimum=1), dict(pre), required, optional,
        _pay_gift(d.get("pay_gift")),
        _text(d, "pending_field_name", required=False, default=""))


def prerogative(card: CardDef, tiers: Any) -> str:
    """The card's 特权说明: one line per tier, its text or else its benefits."""
    lines = []
    for t in tiers:
        text = card.prerogative.get(t.key) or "、".join(t.benefits)
        if text:
            lines.append(f"{t.name}：{text}")
    return "\n".join(lines)


# -- sync -----------------------------------------------------------------------------------
def record(entries: list[Entry]) -> str:
    """Why the points changed, in at most 14 characters."""
    if any(e.kind == "refund" for e in entries):  # points taken back and paid-with returned
        return "退款退回积分" if sum(e.points for e in entries) > 0 else "退款扣回积分"
    if any(e.kind == "order" for e in entries):  # points earned, and maybe some paid with
        return RECORDS["purchase"]
    texts = []
    for e in entries:
        if not e.points:
            continue
        why = e.data.get("reason") if e.kind in ("credit", "spend") else e.kind
        why = "matured" if e.data.get("matured") else why
        texts.append(RECORDS.get(why or "", RECORD_DEFAULT))
    if not texts:
        return RECORD_TIER if any(e.kind == "tier_change" for e in entries) else RECORD_DEFAULT
    text = texts[0] if len(set(texts)) == 1 else RECORD_DEFAULT
    return text[:RECORD_MAX]


def sync(m: Member, balance: int, tier_name: str, entries: list[Entry],
         pending: int | None = None) -> dict | None:
    """The card outbox entry for a member whose balance or tier moved since the last one, or
    ``None``. Call it once at the end of every step (the use-case layer does). ``pending``:
    the pending purchase points, when the card shows them (``card.pending_field_name``)."""
    if not (m.card_active and m.card_code):
        return None
    moved = pending is not None and pending != m.card_pending
    if balance == m.card_bonus and m.tier == m.card_tier and not moved:
        return None
    m.card_seq += 1
    data = {"seq": m.card_seq, "code": m.card_code, "card_id": m.card_id,
            "bonus": balance, "add_bonus": balance - m.card_bonus,
            "record": record(entries) if balance != m.card_bonus else
            RECORDS["pending"] if moved and m.tier == m.card_tier else RECORD_TIER,
            "tier": m.tier, "tier_name": tier_name, "tier_changed": m.tier != m.card_tier}
    if moved:
        data.update(pending=pending, pending_changed=True)
        m.card_pending = pending or 0
    m.card_bonus, m.card_tier = balance, m.tier
    return {"kind": OUTBOX_KIND, "period": f"{m.card_seq:010d}", "status": OUTBOX_STATUS,
            "data": data}


def activate(m: Member, balance: int, tier_name: str) -> dict:
    """Mark the card active and enqueue its activation with the state it starts from."""
    m.card_active = True
    m.card_seq += 1
    m.card_bonus, m.card_tier = balance, m.tier
    return {"kind": OUTBOX_KIND, "period": f"{m.card_seq:010d}", "status": OUTBOX_STATUS,
            "data": {"seq": m.card_seq, "code": m.card_code, "card_id": m.card_id,
                     "activate": True, "membership_number": m.member_code, "bonus": balance,
                     "add_bonus": 0, "record": "", "tier": m.tier, "tier_name": tier_name,
                     "tier_changed": True}}


def restore(m: Member, balance: int, tier_name: str) -> dict:
    """A card taken back from the wallet's history (``IsRestoreMemberCard``): it is active as
    before; send the whole state again, without a delta (nothing changed for the member)."""
    m.card_active = True
    m.card_seq += 1
    m.card_bonus, m.card_tier = balance, m.tier
    return {"kind": OUTBOX_KIND, "period": f"{m.card_seq:010d}", "status": OUTBOX_STATUS,
            "data": {"seq": m.card_seq, "code": m.card_code, "card_id": m.card_id,
                     "bonus": balance, "add_bonus": 0, "record": RECORD_DEFAULT,
                     "tier": m.tier, "tier_name": tier_name, "tier_changed": True}}
