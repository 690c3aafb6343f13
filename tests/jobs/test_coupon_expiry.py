"""coupon_expiry: an issued coupon that ends within 3 days gets one reminder, once per coupon,
every coupon of the member considered (not only the earliest); daily 10:00. On SQLite and on
a real Redis."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from bot.jobs.registry import job, priority
from bot.jobs.schedule import Daily

from .conftest import sqlite_or_redis
from .support import member, run, sh

ADD = "/cgi-bin/externalcontact/add_msg_template"


@pytest.fixture(params=["sqlite", "redis"])
async def store(request, tmp_path):
    async with sqlite_or_redis(request.param, tmp_path) as s:
        yield s


async def daily(env, first: date, last: date, skip=()) -> dict[date, int]:
    out, d = {}, first
    while d <= last:
        if d not in skip:
            out[d] = (await run(env, "coupon_expiry", d)).enqueued
        d += timedelta(days=1)
    return out


def test_declared_once_daily_at_ten_and_last_in_the_daily_cap(rules):
    j = job("coupon_expiry")
    assert j.schedule(rules) == Daily(10, 0) and j.push
    assert priority(rules)[-1] == "coupon_expiry"


async def test_one_reminder_per_coupon_for_every_coupon_of_the_member(store, make_env, fake):
    env = await make_env(store)
    mid = await member(env, "a", sh(2026, 11, 1))  # welcome coupon: 7 days, to 2026-11-08
    await env.members.issue_coupon(mid, "points_500", "gift-1", sh(2026, 10, 11))  # to 11-10
    await env.members.issue_coupon(mid, "points_500", "gift-2", sh(2026, 10, 1))  # to 10-31
    coupons = (await store.get(mid)).coupons
    welcome = next(c.code for c in coupons if c.template == "welcome")
    gift = next(c.code for c in coupons if c.ref == "gift-1")
    got = await daily(env, date(2026, 11, 3), date(2026, 11, 12), skip={date(2026, 11, 6)})
    # 5 Nov: the welcome coupon (ends 8 Nov) is 3 days away; 7 Nov: the gift ending 10 Nov
    assert [d for d, n in got.items() if n] == [date(2026, 11, 5), date(2026, 11, 7)]
    rows = await store.outbox(kind="coupon_expiry")
    assert sorted(r.period for r in rows) == sorted([welcome, gift])  # gift-2 ended 31 Oct
    texts = [c.body["text"]["content"] for c in fake.to(ADD)]
    assert len(texts) == 2 and "2026-11-08" in texts[0] and "2026-11-10" in texts[1]
    assert all("到期" in t for t in texts)


async def test_a_coupon_used_or_ended_gets_no_reminder(store, make_env, fake):
    env = await make_env(store)
    mid = await member(env, "a", sh(2026, 11, 1))  # welcome coupon to 2026-11-08
    res = await run(env, "coupon_expiry", date(2026, 11, 9))
    assert res.due == 0
    m = await store.get(mid)
    await env.members.record_order(mid, "o-1", 6_000, sh(2026, 11, 5), sh(2026, 11, 5),
                                   coupon_code=m.coupons[0].code)
    assert (await run(env, "coupon_expiry", date(2026, 11, 6))).due == 0
    assert await store.outbox(kind="coupon_expiry") == []
