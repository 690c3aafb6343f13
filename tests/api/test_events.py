"""POST /api/events: task points (任务积分) once per event_id, caps refused with stable codes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.rules.points import balance
from bot.rules.timeutil import local_day


def event(event_id, member_code, task, at, **more):
    return {"event_id": event_id, "member_code": member_code, "task": task,
            "at": at.isoformat(), **more}


async def test_a_signed_event_credits_once_and_a_resend_returns_the_same(api, ctx, register,
                                                                         clock):
    m = await register("o-ev1")
    body = event("EV-1", m["member_code"], "share", clock.now)
    s1, r1 = await api.post("/api/events", body)
    s2, r2 = await api.post("/api/events", body)  # the POS resends: one credit
    assert (s1, s2) == (200, 200) and r1 == r2
    assert (r1["points"], r1["today"], r1["daily_cap"], r1["balance"]) == (20, 1, 3, 20)
    assert r1["member_code"] == m["member_code"]
    got = await ctx.members.get(m["member_id"])
    assert balance(got, local_day(clock.now, ctx.rules.tz)) == 20
    rows = await ctx.store.ledger(member_id=m["member_id"], kinds=["credit"])
    assert [(r.points, r.ref) for r in rows] == [(20, "task:share:EV-1")]
    # concurrent copies of a new event: still one credit
    res = await asyncio.gather(*(api.post("/api/events", event("EV-2", m["member_code"],
                                                               "share", clock.now))
                                 for _ in range(4)))
    assert {s for s, _ in res} == {200} and len({r["balance"] for _, r in res}) == 1
    got = await ctx.members.get(m["member_id"])
    assert balance(got, local_day(clock.now, ctx.rules.tz)) == 40


async def test_caps_and_conflicts_are_refused_with_stable_codes(api, ctx, register, clock):
    a, b = await register("o-ev2"), await register("o-ev3")
    for i in range(3):
        s, _ = await api.post("/api/events", event(f"S-{i}", a["member_code"], "share",
                                                   clock.now))
        assert s == 200
    s, r = await api.post("/api/events", event("S-3", a["member_code"], "share", clock.now))
    assert (s, r["code"]) == (422, "task_daily_cap")
    # the refused id stays free: tomorrow it counts
    clock.advance(days=1)
    s, r = await api.post("/api/events", event("S-3", a["member_code"], "share", clock.now))
    assert (s, r["today"], r["total"]) == (200, 1, 4)
    cases = [(event("S-0", b["member_code"], "share", clock.now), 409, "event_conflict"),
             (event("S-0", a["member_code"], "survey", clock.now), 409, "event_conflict"),
             (event("N-1", a["member_code"], "nope", clock.now), 422, "task_unknown"),
             (event("N-2", a["member_code"], "profile", clock.now), 422, "task_not_reportable"),
             (event("N-3", "999999999999", "share", clock.now), 404, "member_not_found")]
    for body, status, code in cases:
        s, r = await api.post("/api/events", body)
        assert (s, r["code"]) == (status, code), body
    s, r = await api.post("/api/events", event("N-4", a["member_code"], "share",
                                               clock.now + timedelta(hours=1)))
    assert (s, r["code"], r["field"]) == (400, "bad_request", "at")
    s, r = await api.post("/api/events", {"event_id": "N-5", "member_code": a["member_code"],
                                          "task": "share"})
    assert (s, r["field"]) == (400, "at")
    s, r = await api.post("/api/events", event("N-6", a["member_code"], "share", clock.now),
                          secret="wrong")
    assert s == 401
    got = await ctx.members.get(a["member_id"])
    assert balance(got, local_day(clock.now, ctx.rules.tz)) == 80


async def test_the_openapi_document_declares_the_events_endpoint(api):
    s, doc = await api.get("/api/openapi.json")
    op = doc["paths"]["/api/events"]["post"]
    assert op["operationId"] == "reportEvent"
    props = doc["components"]["schemas"]["TaskEvent"]["properties"]
    assert {"event_id", "member_code", "task", "at"} <= set(props)
    assert {"409", "422", "401"} <= set(op["responses"])
