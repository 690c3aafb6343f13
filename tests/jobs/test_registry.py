"""One job registry: each lifecycle kind is declared once and the rest derives from it."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.handlers import admin
from bot.jobs import registry
from bot.jobs.base import Job
from bot.jobs.schedule import Daily
from bot.jobs.scheduler import calendar_jobs
from bot.members import Members
from bot.rules.config import RulesError
from tests.conftest import make_settings


async def nobody(store, now, rules):
    return []


def never(m, now, rules):
    return None


EXTRA = Job("extra_kind", "额外", lambda rules: Daily(8, 15), "day", nobody, never,
            priority=99)


def test_kinds_come_from_the_job_modules():
    import bot.jobs as package

    modules = {p.stem for p in Path(package.__file__).parent.glob("*.py")}
    assert set(registry.kinds()) == modules - {"__init__", "base", "cli", "env", "registry",
                                                 "runner", "schedule", "scheduler"}
    assert {"member_day", "birthday", "points_expiry", "dormant", "wakeup", "demotion_warning",
            "tier_upgrade", "welcome", "housekeeping", "outbox", "confirm", "reconcile",
            "tags", "handover"} <= set(registry.kinds())
    # the daily cap's default order: the kinds' own priorities, pushes only
    assert registry.default_priority()[:6] == ("demotion_warning", "points_expiry", "wakeup",
                                               "birthday", "member_day", "dormant")
    assert set(registry.default_priority()) == {k for k in registry.kinds()
                                                if registry.job(k).push}
    assert all(registry.job(k).kind == k for k in registry.kinds())
    with pytest.raises(registry.UnknownJob, match="'nope' .*known: member_day"):
        registry.job("nope")


async def test_a_new_entry_reaches_the_scheduler_the_cap_order_and_the_admin_table(
        monkeypatch, rules, store):
    monkeypatch.setitem(registry.JOBS, EXTRA.kind, EXTRA)
    assert calendar_jobs(rules)["extra_kind"] == Daily(8, 15)
    assert registry.priority(rules)[-1] == "extra_kind"
    table = await admin._jobs(SimpleNamespace(members=Members(store, rules)))
    assert [j["kind"] for j in table][-1] == "extra_kind"
    assert registry.job("extra_kind") is EXTRA


def write_rules(tmp_path, text: str):
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return make_settings(tmp_path, rules_path=str(path))


def test_a_rules_file_naming_fewer_kinds_loads_with_the_rest_last_and_a_warning(
        tmp_path, caplog):
    settings = write_rules(tmp_path, '[push]\npriority = ["birthday", "dormant"]\n')
    with caplog.at_level(logging.WARNING, "memberbot.jobs"):
        rules = registry.load_rules(settings)
    rest = [k for k in registry.default_priority() if k not in ("birthday", "dormant")]
    assert rest[:4] == ["demotion_warning", "points_expiry", "wakeup", "member_day"]
    assert rules.push["priority"] == ["birthday", "dormant", *rest]
    assert ", ".join(rest) in caplog.text


def test_a_rules_file_without_a_priority_takes_the_default_order_quietly(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, "memberbot.jobs"):
        rules = registry.load_rules(make_settings(tmp_path))
    assert tuple(rules.push["priority"]) == registry.default_priority()
    assert caplog.text == ""


def test_an_unknown_kind_in_the_priority_is_an_error_naming_it(tmp_path):
    settings = write_rules(tmp_path, '[push]\npriority = ["birthday", "brithday"]\n')
    with pytest.raises(RulesError, match="push.priority: unknown job kind 'brithday'"):
        registry.load_rules(settings)
    with pytest.raises(RulesError, match="each named once"):
        registry.load_rules(write_rules(tmp_path, '[push]\npriority = ["dormant", "dormant"]\n'))
