"""Tasks (任务积分): caps per day and for life, the window, the built-in profile task."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.rules import RulesError, load_rules
from bot.rules import profile as profile_rules
from bot.rules.models import Refusal
from bot.rules.points import balance
from bot.rules.tasks import complete, progress

from .support import RULES, new_member, sh


def test_the_default_tasks_are_the_playbook_numbers():
    t = RULES.tasks
    assert [(k, x.points, x.daily_cap, x.lifetime_cap) for k, x in t.items()] == [
        ("profile", 50, 0, 1), ("share", 20, 3, 0), ("survey", 20, 1, 0), ("article", 10, 2, 0)]
    assert RULES.points["profile_bonus"] == 50  # the profile task's points, one number


def test_share_is_rewarded_three_times_a_day_then_refused_until_tomorrow():
    m = new_member()
    now = sh(2026, 3, 2, 10)
    for i in range(3):
        res, entries = complete(m, RULES.tasks, "share", f"e{i}", now, now, RULES)
        assert (res["points"], res["today"]) == (20, i + 1)
        assert [e.kind for e in entries] == ["credit"] and entries[0].data["task"] == "share"
    with pytest.raises(Refusal) as e:
        complete(m, RULES.tasks, "share", "e4", now, now, RULES)
    assert e.value.code == "task_daily_cap"
    assert balance(m, now.date()) == 60
    tomorrow = now + timedelta(days=1)
    res, _ = complete(m, RULES.tasks, "share", "e5", tomorrow, tomorrow, RULES)
    assert (res["today"], res["total"], res["balance"]) == (1, 4, 80)


def test_a_past_event_counts_on_its_own_day():
    m = new_member()
    now = sh(2026, 3, 2, 10)
    yesterday = now - timedelta(days=1)
    for i in range(3):
        complete(m, RULES.tasks, "share", f"y{i}", yesterday, now, RULES)
    res, _ = complete(m, RULES.tasks, "share", "t0", now, now, RULES)
    assert res["today"] == 1 and res["day"] == "2026-03-02"


def test_lifetime_cap_window_unknown_and_profile_refusals(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('[[tasks]]\nkey = "launch"\nname = "新品问卷"\npoints = 15\n'
                    'lifetime_cap = 2\nstart = 2026-03-01\nend = 2026-03-31\n', encoding="utf-8")
    rules = load_rules(path)
    assert set(rules.tasks) == {"launch", "profile"}, "profile stays built in"
    m = new_member()
    now = sh(2026, 3, 10)
    for i in range(2):
        complete(m, rules.tasks, "launch", f"l{i}", now + timedelta(days=i), now, rules)
    codes = []
    for key, at, when in (("launch", now, sh(2026, 4, 1)), ("launch", sh(2026, 4, 1), now),
                          ("launch", sh(2026, 2, 28), now), ("share", now, now),
                          ("profile", now, now)):
        with pytest.raises(Refusal) as e:
            complete(m, rules.tasks, key, "x", at, when, rules)
        codes.append(e.value.code)
    assert codes == ["task_lifetime_cap", "task_closed", "task_closed", "task_unknown",
                     "task_not_reportable"]
    assert balance(m, now.date()) == 30


def test_refusal_leaves_the_member_unchanged():
    m = new_member()
    now = sh(2026, 3, 2)
    for i in range(3):
        complete(m, RULES.tasks, "share", f"e{i}", now, now, RULES)
    before = m.to_dict()
    with pytest.raises(Refusal):
        complete(m, RULES.tasks, "share", "e9", now, now, RULES)
    assert m.to_dict() == before


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["share", "survey", "article"]),
                          st.integers(min_value=0, max_value=5)), max_size=40))
def test_caps_are_never_exceeded_and_points_match_the_rewarded_count(events):
    m = new_member()
    base = sh(2026, 3, 1, 9)
    per_day: dict[tuple[str, int], int] = {}
    rewarded = 0
    for n, (key, day) in enumerate(events):
        at = base + timedelta(days=day)
        try:
            res, _ = complete(m, RULES.tasks, key, f"e{n}", at, base + timedelta(days=6),
                              RULES)
        except Refusal as e:
            assert e.code == "task_daily_cap"
            assert per_day[(key, day)] == RULES.tasks[key].daily_cap
            continue
        per_day[(key, day)] = per_day.get((key, day), 0) + 1
        rewarded += RULES.tasks[key].points
        assert per_day[(key, day)] <= RULES.tasks[key].daily_cap
    assert balance(m, (base + timedelta(days=6)).date()) == rewarded
    for key in ("share", "survey", "article"):
        p = progress(m, RULES.tasks[key], base.date())
        assert p["total"] == sum(v for (k, _), v in per_day.items() if k == key)


def test_the_profile_task_is_the_profile_reward(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('[[tasks]]\nkey = "profile"\nname = "完善资料"\npoints = 80\n'
                    'lifetime_cap = 1\n', encoding="utf-8")
    rules = load_rules(path)
    m = new_member()
    now = sh(2026, 3, 2)
    res, _ = profile_rules.update(m, now, rules, phone="13800138000", birthday="1990-05-20")
    assert res["points"] == 80
    assert progress(m, rules.tasks["profile"], now.date())["finished"]
    # an older file's points.profile_bonus still sets it
    old = tmp_path / "old.toml"
    old.write_text("[points]\nprofile_bonus = 70\n", encoding="utf-8")
    assert load_rules(old).tasks["profile"].points == 70


@pytest.mark.parametrize(("text", "field"), [
    ('[[tasks]]\nkey = "share"\nname = "x"\npoints = 0\n', "tasks[0].points"),
    ('[[tasks]]\nkey = "share"\nname = "x"\npoints = 5\ndaily_cap = -1\n', "tasks[0].daily_cap"),
    ('[[tasks]]\nkey = "Share!"\nname = "x"\npoints = 5\n', "tasks[0].key"),
    ('[[tasks]]\nkey = "a"\nname = "x"\npoints = 5\nstart = "soon"\n', "tasks[0].start"),
    ('[[tasks]]\nkey = "a"\nname = "x"\npoints = 5\nstart = 2026-03-02\nend = 2026-03-01\n',
     "tasks[0].end"),
    ('[[tasks]]\nkey = "a"\nname = "x"\npoints = 5\ncolour = 1\n', "tasks[0].colour"),
    ('[[tasks]]\nkey = "a"\nname = "x"\npoints = 5\n[[tasks]]\nkey = "a"\nname = "y"\n'
     'points = 5\n', "tasks[1].key"),
    ('[[tasks]]\nkey = "profile"\nname = "x"\npoints = 5\nlifetime_cap = 2\n',
     "tasks[0].lifetime_cap"),
    ('[points]\nprofile_bonus = 60\n[[tasks]]\nkey = "profile"\nname = "x"\npoints = 5\n'
     'lifetime_cap = 1\n', "points.profile_bonus"),
])
def test_a_wrong_task_names_the_field(tmp_path, text, field):
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_rules(path)


@pytest.mark.parametrize(("name", "value"), [
    ("points", 99999999999999999999), ("points", 100_001), ("daily_cap", 1_001),
    ("lifetime_cap", 1_000_001), ("daily_cap", 2**63)])
def test_a_task_number_beyond_its_bound_names_the_field(tmp_path, name, value):
    """The old defect: points = 99999999999999999999 loaded, and POST /api/events then
    answered 500 (an integer beyond 64 bits in the store)."""
    t = {"points": 5, name: value}
    path = tmp_path / "rules.toml"
    path.write_text('[[tasks]]\nkey = "a"\nname = "x"\n'
                    + "".join(f"{k} = {v}\n" for k, v in t.items()), encoding="utf-8")
    with pytest.raises(RulesError, match=rf"tasks\[0\]\.{name}: must be at most"):
        load_rules(path)
    path.write_text(f"[points]\nprofile_bonus = {value}\n", encoding="utf-8")
    if name == "points":
        with pytest.raises(RulesError, match=r"points\.profile_bonus: must be at most"):
            load_rules(path)
    # the bounds themselves load
    path.write_text('[[tasks]]\nkey = "a"\nname = "x"\npoints = 100000\ndaily_cap = 1000\n'
                    'lifetime_cap = 1000000\n', encoding="utf-8")
    assert load_rules(path).tasks["a"].points == 100_000
