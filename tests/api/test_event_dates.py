"""POST /api/events and POST /api/orders: the dates a store system may send. Out of range is
400 naming the field, never a 500, and changes nothing; an event of a closed window or of
before the member joined earns nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from bot.rules.tasks import MAX_AGE_DAYS
from bot.web import CTX, create_app
from tests.conftest import make_settings

from .support import Api


def event(event_id, member_code, at, task="share"):
    return {"event_id": event_id, "member_code": member_code, "task": task,
            "at": at if isinstance(at, str) else at.isoformat()}


async def balance(api, code):
    s, v = await api.get(f"/api/members/{code}")
    assert s == 200
    return v["balance"]


async def test_an_event_older_than_the_kept_days_is_400_and_the_daily_cap_holds(api, register,
                                                                                 clock):
    m = await register("o-old")
    code = m["member_code"]
    clock.advance(days=100)  # an old member: joining is not what refuses here
    for d in range(1, 41):
        s, r = await api.post("/api/events", event(f"D{d}", code, clock.now - timedelta(days=d)))
        assert s == (200 if d <= MAX_AGE_DAYS else 400), (d, r)
    # the attack: 10 shares dated 60 days back were all rewarded, every time
    for i in range(10):
        s, r = await api.post("/api/events", event(f"OLD{i}", code,
                                                   clock.now - timedelta(days=60)))
        assert (s, r["code"], r["field"]) == (400, "bad_request", "at"), r
    oldest = (clock.now - timedelta(days=MAX_AGE_DAYS)).date().isoformat()
    assert oldest in r["message"] and f"{MAX_AGE_DAYS}" in r["message"]
    got = [await api.post("/api/events", event(f"E{i}", code,
                                               clock.now - timedelta(days=MAX_AGE_DAYS)))
           for i in range(10)]
    assert [s for s, _ in got] == [200, 200] + [422] * 8  # one that day already: cap 3
    assert {r["code"] for s, r in got if s == 422} == {"task_daily_cap"}
    assert await balance(api, code) == (MAX_AGE_DAYS + 2) * 20


async def test_an_event_ahead_of_the_clock_skew_is_400(api, register, clock):
    m = await register("o-ahead")
    s, r = await api.post("/api/events", event("A1", m["member_code"],
                                               clock.now + timedelta(minutes=11)))
    assert (s, r["field"]) == (400, "at")
    s, r = await api.post("/api/events", event("A2", m["member_code"],
                                               clock.now + timedelta(minutes=9)))
    assert s == 200, r


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00",
                                "0001-01-01T00:00:00-14:00", "9999-12-31T23:59:59-14:00",
                                "9999-12-31T23:59:59+14:00", "1970-01-01T00:00:00Z"])
async def test_an_at_at_the_ends_of_the_calendar_is_400_naming_at(api, ctx, register, at):
    """``0001-01-01T00:00:00+14:00`` was a 500 (OverflowError moving it to Shanghai)."""
    m = await register("o-edge")
    s, r = await api.post("/api/events", event("X1", m["member_code"], at))
    assert (s, r["code"], r["field"]) == (400, "bad_request", "at"), r
    assert await ctx.store.ledger(member_id=m["member_id"], kinds=["credit"]) == []


@pytest.mark.parametrize("paid_at", ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00-14:00",
                                     "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59+14:00"])
async def test_a_paid_at_at_the_ends_of_the_calendar_is_400_naming_paid_at(api, ctx, register,
                                                                           paid_at):
    m = await register("o-edge-order")
    s, r = await api.order(order_id="Y1", member_code=m["member_code"], amount_fen=1000,
                           paid_at=paid_at, store_id="S1")
    assert (s, r["code"], r["field"]) == (400, "bad_request", "paid_at"), r
    s, r = await api.post("/api/orders/Y1/refund", {"refund_id": "R1"})
    assert (s, r["code"]) == (404, "order_not_found")


@pytest.fixture
async def october(aiohttp_client, tmp_path, clock, rules):
    """An app whose survey task ran through October 2026 only."""
    survey = replace(rules.tasks["survey"], start=date(2026, 10, 1), end=date(2026, 10, 31))
    windowed = replace(rules, tasks={**rules.tasks, "survey": survey})
    client = await aiohttp_client(create_app(make_settings(tmp_path), rules=windowed,
                                             clock=clock))
    return Api(client, clock), client.app[CTX]


async def test_backdated_events_of_a_closed_window_earn_nothing(october, clock):
    """The attack: a member who joined on 25 Nov reported 31 surveys dated in October's window
    and got 620 points."""
    api, ctx = october
    m = await ctx.members.register("o-w", clock.now)  # joined 2026-11-25
    codes = set()
    for d in range(1, 32):
        s, r = await api.post("/api/events", event(f"W{d}", m["member_code"],
                                                   f"2026-10-{d:02d}T10:00:00+08:00", "survey"))
        codes.add((s, r["code"]))
    # up to 25 Oct older than events are reported; from 26 Oct before the member joined
    assert codes == {(400, "bad_request"), (422, "task_before_join")}
    assert await balance(api, m["member_code"]) == 0


async def test_a_window_takes_reports_until_the_day_after_it_ends(october, clock, tz):
    api, ctx = october
    clock.now = clock.now.replace(year=2026, month=9, day=1)
    m = await ctx.members.register("o-w2", clock.now)
    clock.now = clock.now.replace(month=11, day=1, hour=23)
    s, r = await api.post("/api/events", event("L1", m["member_code"],
                                               "2026-10-31T21:00:00+08:00", "survey"))
    assert (s, r["day"]) == (200, "2026-10-31"), r
    clock.advance(hours=2)  # 2 November: the window is closed for every day of it
    s, r = await api.post("/api/events", event("L2", m["member_code"],
                                               "2026-10-30T21:00:00+08:00", "survey"))
    assert (s, r["code"]) == (422, "task_closed"), r
    assert await balance(api, m["member_code"]) == 20
