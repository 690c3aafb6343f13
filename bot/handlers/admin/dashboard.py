"""The /admin dashboard (PRODUCT.md 7): the figures of :mod:`bot.analytics` for a period,
drawn with the ECharts copy served from ``bot/static``; coupon stock, the job table (a job
previewed or run from it), webhooks and the member card; the health details and the audit."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlparse

from aiohttp import web
from markupsafe import Markup

from ... import keys
from ...admins import allows
from ...channels.wechat_card import CardAPI
from ...context import CTX, Context
from ...jobs.base import last_run
from ...jobs.registry import JOBS
from ...jobs.runner import run_kind
from ...staff import StaffDesk
from ..guard import health
from .session import ADMIN, EARLIEST, csrf_token, guarded, page, posted_form


def _json_for_script(data: Any) -> Markup:
    """JSON safe to embed in a <script type="application/json"> element."""
    text = json.dumps(data, ensure_ascii=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _period(request: web.Request, ctx: Context) -> tuple[date, int, str | None]:
    today = ctx.now().astimezone(ctx.rules.tz).date()
    error = None
    latest = today + timedelta(days=366)
    try:
        as_of = date.fromisoformat(request.query.get("as_of") or today.isoformat())
    except ValueError:
        as_of, error = today, "日期格式应为 YYYY-MM-DD / as_of must be YYYY-MM-DD"
    if not EARLIEST <= as_of <= latest:
        as_of, error = today, (f"日期应在 {EARLIEST} 至 {latest} 之间 / as_of must be between "
                               f"{EARLIEST} and {latest}")
    try:
        days = max(1, min(int(request.query.get("days") or 30), 3660))
    except ValueError:
        days, error = 30, "天数应为整数 / days must be a whole number"
    return as_of, days, error


async def _jobs(ctx: Context) -> list[dict[str, Any]]:
    out = []
    for kind in JOBS:
        when, info = last_run(await ctx.members.cached(keys.job_last(kind)))
        out.append({"kind": kind, "when": when or "never", "ran": bool(when), "info": info})
    return out


async def _webhooks(ctx: Context) -> list[dict[str, Any]]:
    delivery = ctx.webhooks
    if delivery is None:
        return []
    out = []
    for ep in delivery.endpoints:
        st = await delivery.state(ep)
        u = urlparse(ep.url)
        # a webhook that delivered nothing yet (or only failed) has no last event
        out.append({"name": ep.name, "url": f"{u.scheme}://{u.netloc}{u.path}",
                    "events": ep.events, "last_event": None, "last_error": "", **st})
    return out


async def _stock(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    for tpl in ctx.rules.coupons.values():
        remaining = await ctx.members.stock_left(tpl.key)
        rows.append({"key": tpl.key, "name": tpl.name, "label": tpl.label(), "total": tpl.stock,
                     "remaining": remaining,
                     "taken": None if remaining is None else tpl.stock - remaining})
    return rows


async def _card(ctx: Context) -> dict[str, Any] | None:
    """The member card: its QR code, holders, sync backlog and failures."""
    if ctx.rules.card is None:
        return None
    return await ctx.members.card_overview(CardAPI(ctx.oa) if ctx.oa is not None else None)


@guarded
async def dashboard(request: web.Request, sid: str) -> web.Response:
    ctx = request.app[CTX]
    as_of, days, error = _period(request, ctx)
    report = await ctx.members.report(as_of, days)
    return page("dashboard.html", r=report, data=_json_for_script(report), error=error,
                stock=await _stock(ctx), jobs=await _jobs(ctx), card=await _card(ctx),
                webhooks=await _webhooks(ctx), csrf=csrf_token(request, sid),
                can_run=allows(request[ADMIN]["role"], "operator"))


@guarded(role="admin")
async def health_details(request: web.Request, sid: str) -> web.Response:
    """/healthz with what the public does not see: store status and paths, problems."""
    h = await health(request.app[CTX])
    resp = web.json_response(h, status=200 if h["ok"] else 503)
    resp.headers.update({"Cache-Control": "no-store"})
    return resp


@guarded(role="operator")
async def run_job(request: web.Request, sid: str) -> web.Response:
    """Preview a job (a dry run showing 3 rendered messages, members masked) or run it now,
    as ``memberbot jobs run KIND [--dry-run --show 3]`` would; a real run is audited."""
    ctx = request.app[CTX]
    form = await posted_form(request, sid)
    kind = request.match_info["kind"]
    if kind not in JOBS or kind == "welcome":
        raise web.HTTPNotFound(text="no such job to run")
    preview = str(form.get("mode", "preview")) != "run"
    now = ctx.now()
    if not preview:
        await ctx.members.ensure_stock()
    summary = await run_kind(ctx, kind, now, dry_run=preview, show=3 if preview else 0)
    me = request[ADMIN]
    if not preview:
        info = ", ".join(f"{k}={v}" for k, v in summary.result().items())
        await ctx.accounts.log(now, "run job", kind, "—", info, by=f"admin:{me['name']}")
    return page("job_result.html", kind=kind, preview=preview,
                lines=summary.lines() + summary.previews())


@guarded(role="admin")
async def audit(request: web.Request, sid: str) -> web.Response:
    """Staff actions from the sidebar (points adjustments, coupons), newest first."""
    ctx = request.app[CTX]
    try:
        days = max(1, min(int(request.query.get("days") or 30), 3660))
    except ValueError:
        days = 30
    staff = request.query.get("staff", "").strip()
    rows = await StaffDesk(ctx.members, ctx.settings).audit(ctx.now(), days=days, staff=staff)
    return page("audit.html", rows=rows, days=days, staff=staff,
                accounts=await ctx.accounts.history())
