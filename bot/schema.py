"""The store API's request bodies, declared once.

Validation (:meth:`Body.parse`), the OpenAPI document (:func:`openapi`) and the CSV importer
all read the same :class:`Field` declarations, so what is documented is what is accepted.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

MEMBER_FIELDS = ("member_code", "openid", "unionid", "phone")
# how far in the future a paid_at may lie (POS clocks drift a little; orders are not planned)
FUTURE_SLACK = timedelta(minutes=10)


class BadField(ValueError):
    """A request body that does not match its declaration; names the field when there is one."""

    def __init__(self, field: str | None, zh: str, en: str) -> None:
        super().__init__(en)
        self.field = field
        self.zh = zh
        self.en = en


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "string", "integer" or "date-time"
    description: str
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    example: Any = None

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {"description": self.description}
        base = "integer" if self.kind == "integer" else "string"
        s["type"] = base if self.required else [base, "null"]  # optional: absent or null
        if self.kind == "integer":
            if self.minimum is not None:
                s["minimum"] = self.minimum
            if self.maximum is not None:
                s["maximum"] = self.maximum
        else:
            s["minLength"] = 1
            if self.kind == "date-time":
                s["format"] = "date-time"
            if self.max_length is not None:
                s["maxLength"] = self.max_length
            if self.pattern is not None:
                s["pattern"] = self.pattern
        if self.example is not None:
            s["example"] = self.example
        return s

    def check(self, value: Any, tz: ZoneInfo) -> Any:
        """The value, parsed (a date-time becomes an aware datetime); else :class:`BadField`."""
        n = self.name
        if self.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadField(n, f"字段 {n} 必须是整数", f"field {n} must be an integer")
            if self.minimum is not None and value < self.minimum:
                raise BadField(n, f"字段 {n} 不能小于 {self.minimum}",
                               f"field {n} must be at least {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise BadField(n, f"字段 {n} 不能大于 {self.maximum}",
                               f"field {n} must be at most {self.maximum}")
            return value
        if not isinstance(value, str) or not value:
            raise BadField(n, f"字段 {n} 必须是非空字符串",
                           f"field {n} must be a non-empty string")
        if self.max_length is not None and len(value) > self.max_length:
            raise BadField(n, f"字段 {n} 过长（最多 {self.max_length} 个字符）",
                           f"field {n} is longer than {self.max_length} characters")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise BadField(n, f"字段 {n} 格式无效", f"field {n} does not match {self.pattern}")
        if self.kind == "date-time":
            return parse_time(n, value, tz)
        return value


def parse_time(name: str, value: str, tz: ZoneInfo) -> datetime:
    """ISO 8601; a time without an offset is read in the configured zone. Every date-time
    field is then bounded both ways (:func:`check_paid_at`, :func:`check_at`) by comparisons,
    which hold for any instant, before anything moves it into a zone."""
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError as e:
        raise BadField(name, f"字段 {name} 不是 ISO 8601 时间",
                       f"field {name} is not an ISO 8601 date-time") from e
    return t.replace(tzinfo=tz) if t.tzinfo is None else t


def check_paid_at(paid_at: datetime, now: datetime, earliest: date, tz: ZoneInfo) -> None:
    """A payment time within [``earliest`` (rules ``orders.earliest_paid_at``), now + 10 min]."""
    if paid_at > now + FUTURE_SLACK:
        raise BadField("paid_at", "字段 paid_at 是将来的时间", "field paid_at lies in the future")
    if paid_at < datetime.combine(earliest, time(0), tzinfo=tz):
        raise BadField("paid_at", f"字段 paid_at 不能早于 {earliest.isoformat()}",
                       f"field paid_at lies before {earliest.isoformat()} "
                       "(orders.earliest_paid_at)")


@dataclass(frozen=True)
class Body:
    name: str
    description: str
    fields: tuple[Field, ...]
    one_of: tuple[str, ...] = ()  # exactly one of these fields must be given

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "type": "object", "description": self.description,
            "properties": {f.name: f.schema() for f in self.fields},
            "required": [f.name for f in self.fields if f.required],
            "additionalProperties": False,
        }
        if self.one_of:
            s["oneOf"] = [{"required": [n]} for n in self.one_of]
        return s

    def parse(self, raw: bytes, tz: ZoneInfo) -> dict[str, Any]:
        """Parse a JSON body: unknown fields, wrong types and missing ones are refused."""
        try:
            data = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError as e:
            raise BadField(None, "请求体不是有效的 JSON", "the body is not valid JSON") from e
        if not isinstance(data, dict):
            raise BadField(None, "请求体必须是 JSON 对象", "the body must be a JSON object")
        return self.check(data, tz)

    def check(self, data: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
        known = {f.name for f in self.fields}
        for k in data:
            if k not in known:
                raise BadField(k, f"未知字段 {k}", f"unknown field {k}")
        out: dict[str, Any] = {}
        for f in self.fields:
            if data.get(f.name) is None:
                if f.required:
                    raise BadField(f.name, f"缺少字段 {f.name}", f"field {f.name} is required")
                continue
            out[f.name] = f.check(data[f.name], tz)
        if self.one_of:
            given = [n for n in self.one_of if n in out]
            if len(given) != 1:
                names = " / ".join(self.one_of)
                raise BadField(self.one_of[0] if not given else given[1],
                               f"必须且只能提供一个会员字段：{names}",
                               f"exactly one member field is required: {names}")
        return out


ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
_member = (
    Field("member_code", "string", "会员码 / the 12-digit member code", pattern=r"^[0-9]{12}$",
          example="123456789012"),
    Field("openid", "string", "Official Account openid", max_length=128,
          pattern=r"^[A-Za-z0-9_-]+$"),
    Field("unionid", "string", "WeChat unionid", max_length=128, pattern=r"^[A-Za-z0-9_-]+$"),
    Field("phone", "string", "手机号 / mobile number, digits with an optional leading +",
          pattern=r"^\+?[0-9]{5,20}$"),
)

ORDER = Body("Order", "An order paid in a store or online; recorded once per order_id.", (
    Field("order_id", "string", "the store system's order id; unique", required=True,
          max_length=64, pattern=ID, example="POS-20261125-0001"),
    *_member,
    Field("amount_fen", "integer", "order total in fen, before coupon and points",
          required=True, minimum=0, maximum=10**10, example=12800),
    Field("paid_at", "date-time", "when it was paid, ISO 8601; without an offset the "
          "configured time zone (Asia/Shanghai) is meant; not before the rules' "
          "orders.earliest_paid_at (default 2000-01-01), at most 10 minutes ahead",
          required=True,
          example="2026-11-25T10:00:00+08:00"),
    Field("store_id", "string", "the store or channel", required=True, max_length=64,
          pattern=ID, example="SH-001"),
    Field("coupon_code", "string", "a coupon of this member to redeem on the order",
          pattern=r"^[0-9A-Za-z]{12}$"),
    Field("points_used", "integer", "points paid with (积分+现金): 100 points = ¥1, at least "
          "500; 0 or absent for none", minimum=0, maximum=10**9),
), one_of=MEMBER_FIELDS)

REFUND = Body("Refund", "A full or partial refund of a recorded order; once per refund_id.", (
    Field("refund_id", "string", "the store system's refund id; unique", required=True,
          max_length=64, pattern=ID, example="RF-0001"),
    Field("amount_fen", "integer", "refunded amount in fen; absent: the rest of the order",
          minimum=1, maximum=10**10),
))

REDEEM = Body("CouponRedeem", "Redeem a coupon on an order; once per (code, order_id).", (
    Field("code", "string", "the 12-character coupon code", required=True,
          pattern=r"^[0-9A-Za-z]{12}$"),
    Field("order_id", "string", "the order it is used on", required=True, max_length=64,
          pattern=ID),
    Field("amount_fen", "integer", "order amount in fen (checked against the threshold)",
          required=True, minimum=0, maximum=10**10),
    *(Field(f.name, f.kind, f.description + "; optional: when given, the coupon must be "
            "this member's", max_length=f.max_length, pattern=f.pattern) for f in _member),
))

EVENT = Body("TaskEvent", "A task a member completed (分享好友, 问卷, 阅读文章): rewarded with "
             "the task's points once per event_id, within the task's caps and window.", (
    Field("event_id", "string", "the reporting system's event id; unique", required=True,
          max_length=64, pattern=ID, example="EVT-20261125-0001"),
    *_member,
    Field("task", "string", "the task key from the rules file ([[tasks]] key)", required=True,
          max_length=32, pattern=r"^[a-z][a-z0-9_]*$", example="share"),
    Field("at", "date-time", "when the member completed it, ISO 8601; the day of it counts "
          "for the daily cap; at most 10 minutes ahead and at most 30 days back (the day 30 "
          "days before today is the oldest taken)", required=True,
          example="2026-11-25T10:00:00+08:00"),
), one_of=MEMBER_FIELDS)


def check_at(name: str, at: datetime, now: datetime, earliest: date, tz: ZoneInfo) -> None:
    """An event time not ahead of now (+ 10 minutes of clock drift), nor before the day
    ``earliest`` (how long ago an event may still be reported)."""
    if at > now + FUTURE_SLACK:
        raise BadField(name, f"字段 {name} 是将来的时间", f"field {name} lies in the future")
    if at < datetime.combine(earliest, time(0), tzinfo=tz):
        days = (now.astimezone(tz).date() - earliest).days
        raise BadField(name, f"字段 {name} 早于 {earliest.isoformat()}：任务事件须在 {days} "
                       "天内上报", f"field {name} lies before {earliest.isoformat()}: a task "
                       f"event is reported within {days} days of its day")


def order_hash(order: dict[str, Any]) -> str:
    """A hash of the canonical order fields: the same order sent twice hashes the same,
    whatever the JSON key order, time-zone notation or coupon-code case."""
    canon = {
        "order_id": order["order_id"], "amount_fen": int(order["amount_fen"]),
        "paid_at": int(order["paid_at"].timestamp()), "store_id": order.get("store_id") or "",
        "coupon_code": (order.get("coupon_code") or "").upper() or None,
        "points_used": int(order.get("points_used") or 0),
    }
    return hashlib.sha256(orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def member_field(body: dict[str, Any]) -> tuple[str, str] | None:
    for n in MEMBER_FIELDS:
        if body.get(n):
            return n, body[n]
    return None


ORDER_ID = Field("order_id", "string", "the order id given when it was recorded", required=True,
                 max_length=64, pattern=ID)
CURSOR = re.compile(r"[0-9]{1,19}")
MEMBER_CODE = Field("member_code", "string", "会员码 / the 12-digit member code", required=True,
                    pattern=r"^[0-9]{12}$")

_ERROR_STATUSES = {
    "400": "malformed body or parameter; `field` names it",
    "401": "missing, stale or wrong signature, or the API has no secret configured",
    "404": "unknown member, order or coupon",
    "413": "the body is larger than 64 KiB",
    "409": "the id was used before with a different body, or the coupon was used elsewhere "
           "or on this order with another amount",
    "422": "refused by the programme rules (threshold not met, coupon expired, not enough "
           "points, ...)",
    "503": "the store is unavailable; nothing was changed, retry later",
}

_RESULTS: dict[str, dict[str, Any]] = {
    "OrderResult": {"order_id": "string", "member_code": "string", "paid_fen": "integer",
                    "points_earned": "integer", "points_used": "integer",
                    "coupon_code": ["string", "null"], "balance": "integer", "tier": "string",
                    "points_pending": "integer",
                    "pending_until": {"type": ["string", "null"], "format": "date",
                                      "description": "first day pending points become "
                                                     "available (points.pending_days)"},
                    "campaign": ["string", "null"], "campaign_points": "integer"},
    "RefundResult": {"order_id": "string", "refund_id": "string", "refunded_fen": "integer",
                     "order_refunded_fen": "integer", "points_reversed": "integer",
                     "balance": "integer", "debt": "integer", "tier": "string",
                     "grace_until": {"type": ["string", "null"], "format": "date-time",
                                     "description": "end of the tier's grace period, ISO 8601"}},
    "RedeemResult": {"code": "string", "order_id": "string", "discount_fen": "integer",
                     "cash_fen": {"type": "integer", "description": "积分+现金: cash the till "
                                  "collects for this coupon (0: none)"},
                     "member_code": "string", "template": "string", "amount_fen": "integer"},
    "MemberCard": {"member_code": "string", "tier": "string", "tier_name": "string",
                   "balance": "integer", "debt": "integer", "expiring_points": "integer",
                   "pending_points": "integer",
                   "pending_until": {"type": ["string", "null"], "format": "date",
                                     "description": "first day pending points become "
                                                    "available"},
                   "expiring_on": {"type": ["string", "null"], "format": "date",
                                   "description": "the day the soonest points expire"},
                   "coupons": {"type": "array", "items": {"type": "object", "properties": {
                       "code": {"type": "string"}, "template": {"type": "string"},
                       "name": {"type": "string"},
                       "valid_until": {"type": "string", "format": "date-time",
                                       "description": "last valid instant, ISO 8601"},
                       "cash_fen": {"type": "integer", "description": "积分+现金: cash the "
                                    "till collects when it is used (0: none)"}}}},
                   "segment": ["string", "null"], "tags": "array", "opted_out": "boolean",
                   "followed": "boolean", "progress": "object"},
    "EventResult": {"event_id": "string", "member_code": "string", "task": "string",
                    "task_name": "string", "points": "integer",
                    "day": {"type": "string", "format": "date",
                            "description": "the calendar day the daily cap counts on"},
                    "today": "integer", "daily_cap": "integer", "total": "integer",
                    "lifetime_cap": "integer", "balance": "integer"},
    "Error": {"code": "string", "message": "string", "field": ["string", "null"],
              "detail": "object"},
}

SIGNING = (
    "Every call is signed. Headers: `X-Memberbot-Timestamp` (unix seconds, at most 300 s "
    "off) and `X-Memberbot-Signature`: hex HMAC-SHA256 with the shared secret "
    "(MEMBERBOT_API_SECRET) over `timestamp + \"\\n\" + METHOD + \"\\n\" + path + \"\\n\" + "
    "body`, where path is the request path as sent with its query string when it has one "
    "(`/api/changes?cursor=12&limit=100`), and body the "
    "raw request body (empty for GET). Without a configured secret every call is refused. "
    "Every time in a request or a response is ISO 8601 (`2026-11-25T10:00:00+08:00`; a day "
    "is `2026-11-25`); JSON is UTF-8 with Chinese as itself.")

# (method, path, operation id, summary, body, path parameter, result schema)
OPERATIONS: tuple[tuple[str, str, str, str, Body | None, Field | None, str], ...] = (
    ("post", "/api/orders", "recordOrder", "Record an order: coupon, points spend, points "
     "credit, spend and tier in one step, once per order_id", ORDER, None, "OrderResult"),
    ("post", "/api/orders/{order_id}/refund", "refundOrder", "Refund an order in full or in "
     "part, once per refund_id; points reversed (debt when already spent)", REFUND, ORDER_ID,
     "RefundResult"),
    ("post", "/api/coupons/redeem", "redeemCoupon", "Redeem a coupon once per (code, order)",
     REDEEM, None, "RedeemResult"),
    ("post", "/api/events", "reportEvent", "Report a completed task (任务积分): its points once "
     "per event_id; 422 task_unknown / task_closed / task_daily_cap / task_lifetime_cap, "
     "409 event_conflict", EVENT, None, "EventResult"),
    ("get", "/api/members/{member_code}", "getMember", "A member's tier, balance, valid "
     "coupons, RFM segment and tags", None, MEMBER_CODE, "MemberCard"),
)


def openapi(version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the store API, built from the declarations above."""
    schemas: dict[str, Any] = {b.name: b.schema() for b in (ORDER, REFUND, REDEEM, EVENT)}
    for name, props in _RESULTS.items():
        schemas[name] = {"type": "object", "properties": {
            k: v if isinstance(v, dict) else {"type": v} for k, v in props.items()}}
    schemas["Error"]["required"] = ["code", "message"]
    paths: dict[str, Any] = {}
    for method, path, op_id, summary, body, param, result in OPERATIONS:
        responses: dict[str, Any] = {"200": {"description": "done", "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{result}"}}}}}
        for status, text in _ERROR_STATUSES.items():
            if body is None and (status in ("409", "413", "422")
                                 or status == "400" and not param):
                continue
            responses[status] = {"description": text, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}
        op: dict[str, Any] = {"operationId": op_id, "summary": summary,
                              "security": [{"timestamp": [], "signature": []}],
                              "responses": responses}
        if param is not None:
            op["parameters"] = [{"name": param.name, "in": "path", "required": True,
                                 "description": param.description,
                                 "schema": {"type": "string", "pattern": param.pattern}}]
        if body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{body.name}"}}}}
        paths.setdefault(path, {})[method] = op
    _changes(paths, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "memberbot store API", "version": version, "description": SIGNING},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "timestamp": {"type": "apiKey", "in": "header", "name": "X-Memberbot-Timestamp"},
            "signature": {"type": "apiKey", "in": "header", "name": "X-Memberbot-Signature",
                          "description": SIGNING}}},
    }


def _changes(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    """``GET /api/changes``: the events feed (query parameters, so declared here)."""
    from .changes import EVENTS

    schemas["Event"] = {"type": "object", "properties": {
        "id": {"type": "string", "description": "evt_<n>: the same change always has the "
               "same id; webhooks carry the same ids", "example": "evt_1024"},
        "type": {"type": "string", "enum": list(EVENTS)},
        "at": {"type": "string", "format": "date-time", "description": "when it happened, "
               "ISO 8601"},
        "member_code": {"type": "string"},
        "data": {"type": "object", "description": "per type: points.changed delta, reason, "
                 "ref; tier.changed from, to, up; coupon.issued code, template; "
                 "coupon.redeemed code, order_id, discount_fen; order.recorded order_id, "
                 "paid_fen, amount_fen, store_id, paid_at (ISO 8601); order.refunded "
                 "order_id, refund_id, refunded_fen"}}}
    schemas["Changes"] = {"type": "object", "properties": {
        "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
        "cursor": {"type": "string", "description": "pass it as ?cursor= for what follows"},
        "more": {"type": "boolean", "description": "true: ask again at once"}}}
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    paths["/api/changes"] = {"get": {
        "operationId": "listChanges",
        "summary": "Member, points, tier, coupon and order changes in commit order, from a "
                   "cursor (for systems that pull increments)",
        "security": [{"timestamp": [], "signature": []}],
        "parameters": [
            {"name": "cursor", "in": "query", "required": False,
             "description": "the cursor of the previous answer; empty: from the beginning",
             "schema": {"type": "string", "pattern": "^[0-9]{0,19}$"}},
            {"name": "limit", "in": "query", "required": False,
             "description": "events per answer", "schema": {
                 "type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
        "responses": {
            "200": {"description": "done", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Changes"}}}},
            "400": {"description": _ERROR_STATUSES["400"], **err},
            "401": {"description": _ERROR_STATUSES["401"], **err},
            "503": {"description": _ERROR_STATUSES["503"], **err}}}}
