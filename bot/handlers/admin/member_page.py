"""The /admin member page: look a member up by member code or phone, their card, orders and
whole ledger; operators adjust points, issue coupons and edit tags within their role."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from ... import keys
from ...admins import allows
from ...context import CTX, Context
from ...masking import mask_phone
from ...rules.models import Refusal
from ...staff import StaffDesk
from .session import ADMIN, FLASH_S, csrf_token, guarded, page, posted_form


@guarded
async def member_lookup(request: web.Request, sid: str) -> web.Response:
    ctx = request.app[CTX]
    q = request.query.get("q", "").strip()
    info, error = None, None
    if q:
        kind = "member_code" if len(q) == 12 and q.isdigit() else "phone"
        mid = await ctx.members.resolve(**{kind: q})
        m = await ctx.members.get(mid) if mid else None
        if m is None:
            error = "未找到会员 / no member with this code or phone"
        else:
            info = _member_info(ctx, m)
            try:
                pg = max(1, min(int(request.query.get("page") or 1), 10_000))
            except ValueError:
                pg = 1
            info["ledger"], info["more"] = await ctx.members.ledger_page(m.id, pg)
            info["page"] = pg
            me = request[ADMIN]
            info["can_edit"] = allows(me["role"], "operator")
            if info["can_edit"]:
                role = StaffDesk(ctx.members, ctx.settings).admin_staff(me["name"], me["role"])
                info["templates"] = [{"key": k, "name": ctx.rules.coupons[k].name}
                                     for k in role.role.coupons if k in ctx.rules.coupons]
                info["cap"] = role.role.adjust_per_action
    # a notice only the server set (never text from the URL), shown once
    flash = keys.admin_flash(sid)
    message = await ctx.members.cached(flash)
    if message is not None:
        await ctx.members.forget(flash)
    return page("member.html", q=q, m=info, error=error, csrf=csrf_token(request, sid),
                message=message, me=request.get(ADMIN),
                request_id=secrets.token_urlsafe(12))


def _member_info(ctx: Context, m: Any) -> dict[str, Any]:
    card = ctx.members.card(m, ctx.now())
    tz = ctx.rules.tz
    orders = sorted(m.orders.values(), key=lambda o: o.paid_at, reverse=True)[:10]
    return {
        "card": card, "code": m.member_code, "phone": mask_phone(m.phone),
        "tier_name": card["progress"]["tier_name"], "segment": m.rfm or "未消费",
        "tags": list(m.tags), "joined": datetime.fromtimestamp(m.joined_at, tz)
        .strftime("%Y-%m-%d") if m.joined_at else "—",
        "coupons": [{**c, "valid_until": datetime.fromtimestamp(c["valid_until"], tz)
                     .strftime("%Y-%m-%d %H:%M")} for c in card["coupons"]],
        "orders": [{"id": o.order_id, "paid_at": datetime.fromtimestamp(o.paid_at, tz)
                    .strftime("%Y-%m-%d %H:%M"), "paid_fen": o.paid_fen,
                    "refunded_fen": o.refunded_fen, "points": o.points} for o in orders],
    }


async def _member_form(request: web.Request, sid: str) -> tuple[Any, str, Any]:
    """The posted form (CSRF checked), the member code and the member id."""
    ctx = request.app[CTX]
    form = await posted_form(request, sid)
    code = request.match_info["member_code"]
    mid = await ctx.members.resolve(member_code=code)
    if mid is None:
        raise web.HTTPNotFound(text="no such member")
    return form, code, mid


async def _back(request: web.Request, sid: str, code: str, msg: str) -> web.HTTPSeeOther:
    """Back to the member's page with ``msg`` as a flash: kept under the session, shown once,
    never carried in the URL (where anyone could write one into a link)."""
    from urllib.parse import urlencode

    await request.app[CTX].members.cache(keys.admin_flash(sid), msg, FLASH_S)
    return web.HTTPSeeOther(f"/admin/members?{urlencode({'q': code})}")


async def _as_staff(request: web.Request, sid: str, form: Any, code: str, action: str,
                   *args: Any, done: Callable[[dict], str]) -> web.StreamResponse:
    """Run the staff desk's ``action`` for member ``code`` (from the posted ``form``) as the
    signed-in account (the sidebar's use case, so /admin/audit shows it like any staff
    action), then back to the member's page with ``done(result)`` or the refusal."""
    ctx = request.app[CTX]
    me = request[ADMIN]
    desk = StaffDesk(ctx.members, ctx.settings)
    try:
        res = await getattr(desk, action)(desk.admin_staff(me["name"], me["role"]), *args,
                                          str(form.get("request_id", "")), ctx.now(),
                                          member_code=code)
        msg = done(res)
    except Refusal as e:
        msg = e.message
    raise await _back(request, sid, code, msg)


@guarded(role="operator")
async def adjust_points(request: web.Request, sid: str) -> web.StreamResponse:
    """Points up or down with a reason, within the role's caps."""
    form, code, _mid = await _member_form(request, sid)
    try:
        delta = int(str(form.get("delta", "")).strip())
    except ValueError:
        raise await _back(request, sid, code,
                          "积分须为整数 / points must be a whole number") from None
    return await _as_staff(request, sid, form, code, "adjust_points", delta,
                           str(form.get("reason", "")), done=lambda res:
                           f"已调整 {delta:+d} 积分，余额 {res['balance']} / adjusted")


@guarded(role="operator")
async def issue_coupon(request: web.Request, sid: str) -> web.StreamResponse:
    """A coupon of the role's templates."""
    form, code, _mid = await _member_form(request, sid)
    return await _as_staff(request, sid, form, code, "issue_coupon", str(form.get("template", "")),
                           done=lambda res: f"已发放 {res['name']} {res['code']} / issued")


@guarded(role="operator")
async def edit_tags(request: web.Request, sid: str) -> web.StreamResponse:
    ctx = request.app[CTX]
    form, code, mid = await _member_form(request, sid)
    add = tuple(t for t in str(form.get("add", "")).replace("，", ",").split(",") if t.strip())
    remove = tuple(form.getall("remove", []))
    msg = "已保存 / saved"
    try:
        await ctx.members.tag(mid, ctx.now(), add=add, remove=tuple(map(str, remove)),
                              by=f"admin:{request[ADMIN]['name']}")
    except Refusal as e:
        msg = e.message
    raise await _back(request, sid, code, msg)
