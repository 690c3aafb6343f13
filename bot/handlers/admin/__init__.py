"""``/admin``: the operators' dashboard (PRODUCT.md 7), behind MEMBERBOT_ADMIN_PASSWORD.

A signed, expiring session cookie after a password login (:mod:`.session`); without a
configured password the whole area answers with a page that says how to enable it. The
dashboard, the job table, health and audit (:mod:`.dashboard`); the member page and what
operators change there (:mod:`.member_page`).
"""

from __future__ import annotations

from aiohttp import web

from ...context import CTX
from .dashboard import _jobs, audit, dashboard, health_details, run_job
from .member_page import adjust_points, edit_tags, issue_coupon, member_lookup
from .session import (
    ADMIN,
    COOKIE,
    LOGIN_TRIES,
    SESSION_S,
    STATIC,
    csrf_token,
    guarded,
    login,
    login_form,
    logout,
    new_session,
    page,
    session,
)

__all__ = ["ADMIN", "COOKIE", "CTX", "LOGIN_TRIES", "SESSION_S", "STATIC", "_jobs", "csrf_token",
           "guarded", "new_session", "page", "session", "setup"]


def setup(app: web.Application) -> None:
    app.router.add_get("/admin", dashboard)
    app.router.add_get("/admin/login", login_form)
    app.router.add_post("/admin/login", login)
    app.router.add_post("/admin/logout", logout)
    app.router.add_get("/admin/members", member_lookup)
    app.router.add_get("/admin/health", health_details)
    app.router.add_get("/admin/audit", audit)
    app.router.add_post("/admin/members/{member_code}/tags", edit_tags)
    app.router.add_post("/admin/members/{member_code}/points", adjust_points)
    app.router.add_post("/admin/jobs/{kind}", run_job)
    app.router.add_post("/admin/members/{member_code}/coupons", issue_coupon)
    app.router.add_static("/admin/static", STATIC, append_version=False)
