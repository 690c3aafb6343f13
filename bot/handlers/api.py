"""The store API (PRODUCT.md 6): signed JSON over HTTP for POS, e-commerce and CRM systems.

Bodies are validated against the declarations in :mod:`bot.schema`, which also produce
``/api/openapi.json``; every change goes through the member use cases in one atomic step.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from storage import ConflictError

from .. import schema
from ..context import CTX, Context
from ..jsonout import iso, json_response
from ..rules import tasks
from ..rules.models import Refusal

log = logging.getLogger("memberbot.api")

WINDOW_S = 300
TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits: str.isdigit() also takes '²'

# code -> (HTTP status, English message); the Chinese message comes from the rule itself
ERRORS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "malformed request"),
    "not_found": (404, "no such API path"),
    "method_not_allowed": (405, "this path does not take that method"),
    "body_too_large": (413, "the body is larger than 64 KiB"),
    "api_disabled": (401, "the store API has no secret configured (MEMBERBOT_API_SECRET)"),
    "signature_missing": (401, "X-Memberbot-Timestamp and X-Memberbot-Signature are required"),
    "timestamp_invalid": (401, "the timestamp is not unix seconds within 300 s of now"),
    "bad_signature": (401, "the signature does not match"),
    "member_not_found": (404, "member not found"),
    "order_not_found": (404, "order not found"),
    "coupon_not_found": (404, "coupon not found"),
    "order_conflict": (409, "this order_id was recorded before with a different body"),
    "refund_conflict": (409, "this refund_id was used before with a different body"),
    "coupon_used": (409, "the coupon was already used on another order"),
    "coupon_conflict": (409, "the coupon was redeemed on this order with another amount"),
    "coupon_expired": (422, "the coupon has expired"),
    "coupon_threshold": (422, "the order amount is below the coupon's threshold"),
    "coupon_owner": (422, "the coupon belongs to another member"),
    "coupon_unknown_template": (422, "the coupon's template was withdrawn"),
    "insufficient_points": (422, "not enough points"),
    "points_below_min": (422, "points paid with are below the minimum"),
    "points_exceed_amount": (422, "points paid with are worth more than the order"),
    "refund_amount": (422, "the refund amount exceeds what is refundable"),
    "bad_amount": (422, "invalid amount"),
    "event_conflict": (409, "this event_id was reported before with a different body"),
    "task_unknown": (422, "no such task in the rules file"),
    "task_not_reportable": (422, "this task is earned by the member's profile, not reported"),
    "task_closed": (422, "the task is outside its active window"),
    "task_daily_cap": (422, "the task's daily cap is reached for this member"),
    "task_lifetime_cap": (422, "the task's lifetime cap is reached for this member"),
    "task_before_join": (422, "the event is dated before the member joined"),
    "task_too_old": (422, "the event's day is older than events are reported"),
    "store_unavailable": (503, "service busy, retry later"),
}
ZH_DEFAULTS = {"api_disabled": "接口未启用", "not_found": "接口不存在",
               "method_not_allowed": "请求方法不支持", "body_too_large": "请求体过大",
               "signature_missing": "缺少签名",
               "timestamp_invalid": "时间戳无效或已过期", "bad_signature": "签名错误",
               "member_not_found": "未找到会员", "refund_conflict": "退款单号已存在且内容不同",
               "coupon_owner": "该优惠券不属于此会员", "store_unavailable": "系统繁忙，请稍后再试"}


def error(code: str, zh: str | None = None, *, field: str | None = None,
          detail: dict[str, Any] | None = None) -> web.Response:
    status, en = ERRORS.get(code, (422, "refused by the programme rules"))
    body: dict[str, Any] = {"code": code, "message": f"{zh or ZH_DEFAULTS.get(code, en)} / {en}"}
    if field is not None:
        body["field"] = field
    if detail:
        body["detail"] = detail
    return json_response(body, status=status)


def bad(e: schema.BadField) -> web.Response:
    return json_response({"code": "bad_request", "message": f"{e.zh} / {e.en}",
                              "field": e.field}, status=400)


def signature_ok(secret: str, timestamp: str, method: str, path: str, body: bytes,
                 signature: str) -> bool:
    msg = b"\n".join((timestamp.encode(), method.encode(), path.encode(), body))
    want = hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()
    # bytes, not str: compare_digest refuses non-ASCII text, and a forged header is no 500
    return hmac.compare_digest(want.encode(), signature.strip().lower().encode(
        "utf-8", "replace"))


async def authenticate(request: web.Request, ctx: Context) -> tuple[bytes, web.Response | None]:
    """The raw body, or the 401 answer: no secret, no headers, stale time, wrong signature."""
    secret = ctx.settings.api_secret
    if not secret:
        return b"", error("api_disabled")
    ts = request.headers.get("X-Memberbot-Timestamp", "")
    sig = request.headers.get("X-Memberbot-Signature", "")
    if not ts or not sig:
        return b"", error("signature_missing")
    if not TIMESTAMP.fullmatch(ts) or abs(int(ts) - ctx.now().timestamp()) > WINDOW_S:
        return b"", error("timestamp_invalid")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return b"", error("body_too_large")
    if not signature_ok(secret, ts, request.method, request.rel_url.raw_path_qs, body, sig):
        return b"", error("bad_signature")
    return body, None


Handler = Callable[[web.Request, Context, bytes], Awaitable[web.Response]]


def signed(fn: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Authenticate, then map rule refusals and malformed input to their JSON errors."""

    async def handler(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        body, refused = await authenticate(request, ctx)
        if refused is not None:
            return refused
        try:
            return await fn(request, ctx, body)
        except schema.BadField as e:
            return bad(e)
        except Refusal as e:
            return error(e.code, e.message, detail=e.data or None)
        except ConflictError:
            return error("store_unavailable")

    return handler


def _param(request: web.Request, f: schema.Field, ctx: Context) -> str:
    return f.check(request.match_info[f.name], ctx.rules.tz)


async def _member_id(ctx: Context, body: dict[str, Any]) -> str:
    kind, value = schema.member_field(body)
    mid = await ctx.members.resolve(**{kind: value})
    if mid is None:
        raise Refusal("member_not_found", "未找到会员", **{kind: value} if kind != "phone" else {})
    return mid


@signed
async def record_order(request: web.Request, ctx: Context, raw: bytes) -> web.Response:
    body = schema.ORDER.parse(raw, ctx.rules.tz)
    now = ctx.now()
    schema.check_paid_at(body["paid_at"], now, ctx.rules.orders["earliest_paid_at"],
                         ctx.rules.tz)
    mid = await _member_id(ctx, body)
    res = await ctx.members.record_order(
        mid, body["order_id"], body["amount_fen"], body["paid_at"], now,
        store_id=body["store_id"], coupon_code=(body.get("coupon_code") or "").upper() or None,
        points_used=body.get("points_used", 0), body_hash=schema.order_hash(body))
    res = {k: v for k, v in res.items() if k != "body_hash"}
    return json_response(res)


@signed
async def refund_order(request: web.Request, ctx: Context, raw: bytes) -> web.Response:
    order_id = _param(request, schema.ORDER_ID, ctx)
    body = schema.REFUND.parse(raw, ctx.rules.tz)
    # refund ids are unique across members too: the use case binds one when it is recorded
    res = await ctx.members.refund(order_id, body["refund_id"], body.get("amount_fen"),
                                   ctx.now())
    # a refund id is once per member: the same id on another order or amount is a conflict
    if res["order_id"] != order_id or (
            "amount_fen" in body and res["refunded_fen"] != body["amount_fen"]):
        return error("refund_conflict", detail={"refund_id": body["refund_id"]})
    return json_response({**res, "grace_until": iso(res.get("grace_until"), ctx.rules.tz)})


@signed
async def redeem_coupon(request: web.Request, ctx: Context, raw: bytes) -> web.Response:
    body = schema.REDEEM.parse(raw, ctx.rules.tz)
    code = body["code"].upper()
    if schema.member_field(body) is not None:
        mid = await _member_id(ctx, body)
        if await ctx.members.coupon_holder(code) not in (mid, None):
            return error("coupon_owner")
    res = await ctx.members.redeem_coupon(code, body["order_id"], body["amount_fen"],
                                          ctx.now())
    return json_response(res)


@signed
async def report_event(request: web.Request, ctx: Context, raw: bytes) -> web.Response:
    body = schema.EVENT.parse(raw, ctx.rules.tz)
    now = ctx.now()
    schema.check_at("at", body["at"], now, tasks.earliest_day(now, ctx.rules.tz), ctx.rules.tz)
    mid = await _member_id(ctx, body)
    res = await ctx.members.report_task(mid, body["event_id"], body["task"], body["at"], now)
    return json_response({k: v for k, v in res.items() if k != "at"})


@signed
async def get_member(request: web.Request, ctx: Context, raw: bytes) -> web.Response:
    code = _param(request, schema.MEMBER_CODE, ctx)
    mid = await ctx.members.resolve(member_code=code)
    m = await ctx.members.get(mid) if mid else None
    if m is None:
        return error("member_not_found", detail={"member_code": code})
    return json_response(member_view(ctx, m))


@signed
async def list_changes(request: web.Request, ctx: Context, raw: bytes) -> web.Response:
    q = request.query
    cursor_s, limit_s = q.get("cursor", "") or "0", q.get("limit", "") or "100"
    if not schema.CURSOR.fullmatch(cursor_s):
        raise schema.BadField("cursor", "参数 cursor 无效", "cursor must be the cursor of an "
                              "earlier answer (digits), or empty to start")
    if not limit_s.isascii() or not limit_s.isdigit() or not 1 <= int(limit_s) <= 1000:
        raise schema.BadField("limit", "参数 limit 必须在 1 到 1000 之间",
                              "limit must be a whole number from 1 to 1000")
    limit = int(limit_s)
    events, after = await ctx.members.changes(int(cursor_s), limit)
    return json_response({"events": events, "cursor": str(after),
                          "more": len(events) >= limit})


def member_view(ctx: Context, m: Any) -> dict[str, Any]:
    """What store systems may see: no internal id, no phone, no birthday."""
    card = ctx.members.card(m, ctx.now())
    prog = card["progress"]
    return {
        "member_code": card["member_code"], "tier": prog["tier"], "tier_name": prog["tier_name"],
        "balance": card["balance"], "debt": card["debt"],
        "pending_points": card["pending_points"], "pending_until": card["pending_until"],
        "expiring_points": card["expiring_points"], "expiring_on": card["expiring_on"],
        "coupons": [{**c, "valid_until": iso(c["valid_until"], ctx.rules.tz)}
                    for c in card["coupons"]],
        "segment": card["rfm"], "tags": card["tags"],
        "opted_out": card["opted_out"], "followed": card["followed"],
        "progress": {k: v for k, v in prog.items() if k != "benefits"},
    }


OPENAPI = web.AppKey("openapi", dict)


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    """Under /api/ even an unknown path or a wrong method answers the documented JSON."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed, web.HTTPRequestEntityTooLarge) as e:
        if not request.path.startswith("/api/"):
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "body_too_large")
        return error(code)


def setup(app: web.Application) -> None:
    app.middlewares.append(json_errors)
    app[OPENAPI] = schema.openapi()
    app.router.add_post("/api/orders", record_order)
    app.router.add_post("/api/orders/{order_id}/refund", refund_order)
    app.router.add_post("/api/coupons/redeem", redeem_coupon)
    app.router.add_post("/api/events", report_event)
    app.router.add_get("/api/members/{member_code}", get_member)
    app.router.add_get("/api/changes", list_changes)
    app.router.add_get("/api/openapi.json", openapi_json)
