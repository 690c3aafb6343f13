"""Each job fires on its day, not the day before or after: as-of runs around month ends, the
leap day and midnight in Asia/Shanghai."""

from __future__ import annotations

import re
from datetime import date

import pytest

from bot.jobs.runner import run_kind

from .support import member, run, sh


async def fired(env, kind: str, days: list[date]) -> dict[date, int]:
    """Enqueued per as-of day, running the job day by day on one store."""
    out = {}
    for d in days:
        out[d] = (await run(env, kind, d)).enqueued
    return out


@pytest.mark.parametrize("paid, warn30, warn7", [
    # paid 00:30 in Shanghai is the previous day in UTC: the lot's day is Shanghai's
    (sh(2025, 12, 1, 0, 30), date(2026, 11, 1), date(2026, 11, 24)),
    # expires 31 Jan: the first warning falls on New Year's Day
    (sh(2025, 1, 31, 23, 50), date(2026, 1, 1), date(2026, 1, 24)),
    # expires 31 Mar 2026: 30 days back crosses a 28-day February to 1 March
    (sh(2025, 3, 31, 8), date(2026, 3, 1), date(2026, 3, 24)),
    # earned on the leap day: expires 28 Feb 2025 (clamped), warnings on 29 Jan and 21 Feb
    (sh(2024, 2, 29, 12), date(2025, 1, 29), date(2025, 2, 21)),
])
async def test_points_expiry_fires_30_and_7_days_before(store, make_env, fake, paid, warn30,
                                                        warn7):
    env = await make_env(store)
    await member(env, "a", paid, order_fen=50_000, paid_at=paid)
    from datetime import timedelta

    days = [warn30 - timedelta(days=1), warn30, warn30 + timedelta(days=1),
            warn7 - timedelta(days=1), warn7, warn7 + timedelta(days=1)]
    got = await fired(env, "points_expiry", days)
    assert got == {days[0]: 0, warn30: 1, days[2]: 0, days[3]: 0, warn7: 1, days[5]: 0}
    assert sum(fake.delivered().values()) == 2


def around(d: date) -> list[date]:
    from datetime import timedelta

    return [d - timedelta(days=1), d, d + timedelta(days=1)]


async def test_dormant_fires_30_days_after_the_last_activity_in_shanghai(store, make_env, fake):
    env = await make_env(store)
    # 00:10 on 31 Jan in Shanghai is still 30 Jan in UTC; 30 days on is 2 March
    await member(env, "a", sh(2026, 1, 31, 0, 10))
    got = await fired(env, "dormant", around(date(2026, 3, 2)))
    assert list(got.values()) == [0, 1, 0]
    assert list(fake.delivered().values()) == [1]


async def test_wakeup_fires_90_days_after_the_last_purchase_and_issues_the_coupon(
        store, make_env, fake):
    env = await make_env(store)
    mid = await member(env, "a", sh(2025, 11, 1), order_fen=20_000,
                       paid_at=sh(2025, 12, 1, 0, 30))
    assert [c.template for c in (await store.get(mid)).coupons] == ["welcome"]
    got = await fired(env, "wakeup", around(date(2026, 3, 1)))
    assert list(got.values()) == [0, 1, 0]
    m = await store.get(mid)
    assert [c.template for c in m.coupons] == ["welcome", "wakeup"]
    (call,) = fake.to("/cgi-bin/externalcontact/add_msg_template")
    assert "唤醒券" in call.body["text"]["content"] and call.body["sender"] == "staff1"


async def test_wakeup_for_a_member_who_never_bought_counts_from_joining(store, make_env):
    env = await make_env(store)
    await member(env, "a", sh(2026, 2, 28, 23, 30))  # +90 days: 29 May
    got = await fired(env, "wakeup", around(date(2026, 5, 29)))
    assert list(got.values()) == [0, 1, 0]


async def test_demotion_warning_30_and_7_days_before_grace_ends(store, make_env, fake):
    env = await make_env(store)
    mid = await member(env, "a", sh(2025, 1, 1), order_fen=1_500_000,
                       paid_at=sh(2025, 1, 10, 12))
    assert (await store.get(mid)).tier == "gold"
    # the order leaves the 12-month window on 11 Jan: housekeeping starts the grace period
    for d in (date(2026, 1, 10), date(2026, 1, 11)):
        await run(env, "housekeeping", d)
    m = await store.get(mid)
    assert m.tier == "gold" and m.grace_until is not None  # until 2026-07-11 03:00
    got = await fired(env, "demotion_warning",
                      around(date(2026, 6, 11)) + around(date(2026, 7, 4)))
    assert list(got.values()) == [0, 1, 0, 0, 1, 0]
    texts = [c.body["text"]["content"] for c in fake.to(
        "/cgi-bin/externalcontact/add_msg_template")]
    assert all("再消费 ¥15000 即可保级" in t and "2026-07-11" in t for t in texts)


@pytest.mark.parametrize("year, day", [(2027, date(2027, 2, 28)), (2028, date(2028, 2, 29))])
async def test_birthday_on_29_february_is_kept_on_the_28th_in_other_years(
        store, make_env, year, day):
    env = await make_env(store)
    mid = await member(env, "a", sh(2026, 1, 5), birthday="1992-02-29")
    got = await fired(env, "birthday", [date(year, 2, 27), date(year, 2, 28),
                                        date(year, 2, 29) if year == 2028 else date(year, 3, 1),
                                        date(year, 3, 1)])
    assert [d for d, n in got.items() if n] == [day]
    assert [c.template for c in (await store.get(mid)).coupons].count("birthday") == 1


async def test_member_day_on_the_15th_by_tier(store, make_env, fake):
    env = await make_env(store)
    silver = await member(env, "s", sh(2026, 10, 1), order_fen=300_000)
    gold = await member(env, "g", sh(2026, 10, 1), staff="staff2", order_fen=1_500_000)
    await member(env, "n", sh(2026, 10, 1))
    got = await fired(env, "member_day", around(date(2026, 11, 15)) + [date(2026, 12, 15)])
    assert list(got.values()) == [0, 2, 0, 2]
    assert [c.template for c in (await store.get(silver)).coupons][1:] == \
        ["memberday_silver"] * 2
    assert [c.template for c in (await store.get(gold)).coupons][1:] == ["memberday_gold"] * 2
    assert set(fake.delivered()) == {"ext-s", "ext-g"}


async def test_a_job_run_late_in_the_day_without_as_of_still_finds_the_day(store, make_env):
    env = await make_env(store)
    await member(env, "a", sh(2026, 1, 31, 0, 10))
    res = await run_kind(env, "dormant", sh(2026, 3, 2, 23, 59))
    assert res.enqueued == 1 and res.held["quiet"] == 1 and res.sent == 0


async def test_housekeeping_settles_expired_coupons_and_lots_through_the_indexes(
        store, make_env):
    env = await make_env(store)
    mid = await member(env, "a", sh(2025, 3, 1), order_fen=10_000)
    stock = await store.stock("welcome")
    res = await run(env, "housekeeping", date(2025, 3, 9))  # welcome coupon ended 8 Mar
    assert res.refreshed == 1
    assert await store.stock("welcome") == stock + 1  # 回流
    # what `memberbot jobs run housekeeping` prints: what it cleaned, not a push summary
    text = "\n".join(res.lines())
    assert re.search(r"coupons expired +1\n", text) and "held: quiet" not in text
    assert re.search(r"coupon stock returned \(回流\) +1\n", text) and "enqueued" not in text
    assert (await store.get(mid)).coupons[0].status == "expired"
    assert (await run(env, "housekeeping", date(2025, 3, 10))).refreshed == 0
    res = await run(env, "housekeeping", date(2026, 3, 2))  # the lot ended 1 Mar 2026
    assert res.refreshed == 1 and (await store.get(mid)).lots == []
    assert re.search(r"points expired +100\n", "\n".join(res.lines()))
    assert await store.range("expiry", 0, 99999999) == []


@pytest.mark.parametrize("kind", ["points_expiry", "dormant", "wakeup", "demotion_warning",
                                  "birthday", "member_day"])
async def test_candidates_come_from_the_indexes_not_a_scan(store, make_env, kind,
                                                           monkeypatch):
    env = await make_env(store)
    await member(env, "a", sh(2026, 1, 1), order_fen=300_000, birthday="1990-01-01")

    async def no_scan(*a, **k):
        raise AssertionError("a job must not scan all members")

    monkeypatch.setattr(store, "member_ids", no_scan)
    await run(env, kind, date(2026, 11, 15), dry_run=True)
