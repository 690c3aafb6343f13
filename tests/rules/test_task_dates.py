"""Tasks (任务积分): which days an event may be dated on. The daily cap holds for every day an
event can name; an event of before the member joined, or of a window that has closed, earns
nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bot.rules.models import Refusal
from bot.rules.points import balance
from bot.rules.tasks import CLOCK_SKEW, MAX_AGE_DAYS, REPORT_GRACE_DAYS, complete, earliest_day

from .support import RULES, SH, new_member, sh


def refused(m, key, event_id, at, now, rules=RULES):
    before = m.to_dict()
    with pytest.raises(Refusal) as e:
        complete(m, rules.tasks, key, event_id, at, now, rules)
    assert m.to_dict() == before, "a refusal changes nothing"
    return e.value


def test_the_daily_cap_holds_on_the_oldest_day_after_many_other_days():
    """The old defect: counts were kept for the newest 40 days with events, and any day was
    taken, so a day pushed out of the counts took the cap again (10 of 10 rewarded)."""
    m = new_member()
    now = sh(2026, 11, 30, 10)

    def rewarded(event_id, at):
        try:
            complete(m, RULES.tasks, "share", event_id, at, now, RULES)
            return 1
        except Refusal as e:
            assert e.code in ("task_daily_cap", "task_too_old"), e.code
            return 0

    # a share on each of the 40 days before today: the 30 still reportable count
    assert sum(rewarded(f"D{d}", now - timedelta(days=d)) for d in range(1, 41)) == 30
    assert sum(rewarded(f"OLD{i}", now - timedelta(days=60)) for i in range(10)) == 0
    oldest = now - timedelta(days=MAX_AGE_DAYS)
    assert sum(rewarded(f"OLDEST{i}", oldest) for i in range(10)) == 2  # 1 + 2 = daily cap
    # every day still reportable keeps its count; older days are dropped
    days = m.tasks["share"]["days"]
    assert min(days) == earliest_day(now, SH).isoformat() and len(days) == MAX_AGE_DAYS
    assert balance(m, now.date()) == 32 * 20


def test_an_event_older_than_the_kept_days_is_refused():
    m = new_member()
    now = sh(2026, 11, 30, 10)
    e = refused(m, "share", "OLD", now - timedelta(days=MAX_AGE_DAYS + 1), now)
    assert e.code == "task_too_old" and e.data["earliest"] == "2026-10-31"
    e = refused(m, "share", "OLD", now - timedelta(days=60), now)
    assert e.code == "task_too_old"
    # the first minute of the oldest day is still taken
    start = sh(2026, 10, 31, 0, 0)
    res, _ = complete(m, RULES.tasks, "share", "EDGE", start, now, RULES)
    assert res["day"] == "2026-10-31"
    assert refused(m, "share", "EDGE2", start - timedelta(seconds=1), now).code == "task_too_old"


def test_an_event_of_before_the_member_joined_is_refused():
    joined = sh(2026, 11, 25, 10)
    m = new_member(joined=joined)
    now = sh(2026, 11, 30, 10)
    e = refused(m, "share", "B1", sh(2026, 11, 24, 12), now)
    assert e.code == "task_before_join"
    assert refused(m, "share", "B2", joined - CLOCK_SKEW - timedelta(seconds=1),
                   now).code == "task_before_join"
    # a reporting system's clock a little behind: still counted
    res, _ = complete(m, RULES.tasks, "share", "B3", joined - CLOCK_SKEW, now, RULES)
    assert res["points"] == 20


def with_window(start, end):
    tasks = {**RULES.tasks, "survey": replace(RULES.tasks["survey"], start=start, end=end)}
    return replace(RULES, tasks=tasks)


def test_a_closed_window_takes_no_backdated_events():
    """The old defect: a member who joined on 25 Nov reported 31 surveys dated in October's
    window, on 30 Nov, and got 620 points."""
    rules = with_window(sh(2026, 10, 1).date(), sh(2026, 10, 31).date())
    m = new_member(joined=sh(2026, 11, 25, 10))
    now = sh(2026, 11, 30, 10)
    codes = set()
    for d in range(1, 32):
        codes.add(refused(m, "survey", f"W{d}", sh(2026, 10, d, 10), now, rules).code)
    assert codes <= {"task_closed", "task_before_join", "task_too_old"}
    assert balance(m, now.date()) == 0
    # an old member too: the window closed on 31 Oct, reports stop after the grace day
    old = new_member(joined=sh(2025, 1, 1))
    assert REPORT_GRACE_DAYS == 1
    for d in (20, 31):
        e = refused(old, "survey", f"O{d}", sh(2026, 10, d, 10), sh(2026, 11, 2, 0, 0), rules)
        assert e.code == "task_closed"
    assert balance(old, now.date()) == 0


def test_the_last_day_of_a_window_may_be_reported_the_next_day():
    rules = with_window(sh(2026, 10, 1).date(), sh(2026, 10, 31).date())
    m = new_member(joined=sh(2025, 1, 1))
    res, _ = complete(m, rules.tasks, "survey", "L1", sh(2026, 10, 31, 22), sh(2026, 11, 1, 23),
                      rules)
    assert res["day"] == "2026-10-31"
    # and a window that has not opened yet takes nothing
    later = with_window(sh(2026, 12, 1).date(), None)
    assert refused(m, "survey", "L2", sh(2026, 11, 30, 10), sh(2026, 11, 30, 10),
                   later).code == "task_closed"
