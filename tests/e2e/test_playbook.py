"""The issue's "done when": the playbook's programme runs from docs/playbook.toml alone and
`memberbot report` shows each feature's figures."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from bot.cli import main
from bot.context import Context, system_clock
from bot.jobs.registry import checked
from bot.jobs.runner import run_kind
from bot.members import Members
from bot.rules import load_rules
from storage import open_store
from tests.conftest import make_settings

PLAYBOOK = Path(__file__).resolve().parents[2] / "docs" / "playbook.toml"
KEY = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="


async def test_the_playbook_runs_from_the_rules_file_and_the_report_shows_it(
        tmp_path, monkeypatch):
    rules = checked(load_rules(PLAYBOOK))
    tz = rules.tz
    sat = datetime(2026, 11, 28, 12, tzinfo=tz)  # a Saturday inside the campaign and offer
    store = open_store(f"sqlite:///{tmp_path}/p.db", KEY)
    await store.open()
    members = Members(store, rules)
    await members.ensure_stock()
    inviter = (await members.register("o-inv", sat))["member_id"]
    code = (await store.get(inviter)).invite_code
    for i in range(3):
        mid = (await members.register(f"o-f{i}", sat))["member_id"]
        await members.bind_invite(mid, code, sat)
    await members.report_task(inviter, "EV-1", "share", sat, sat)
    order = await members.record_order(inviter, "W-1", 30_000, sat, sat)  # 300 × 2 (weekend)
    assert order["points_earned"] == 600
    got = await members.exchange(inviter, 2, sat, key="flash-1")
    assert got["offer"] == "flash_500"
    # points bought 11 months ago expire within 30 days: the points-expiry A/B test is due
    old = sat - timedelta(days=340)
    due = []
    for i in range(20):
        mid = (await members.register(f"o-x{i}", old))["member_id"]
        await members.record_order(mid, f"X-{i}", 10_000, old, old)
        due.append(mid)
    env = Context(make_settings(tmp_path), rules, store, members, system_clock(tz))
    summary = await run_kind(env, "points_expiry", sat.replace(hour=10))
    assert summary.skipped["holdout"] + summary.enqueued == len(due)
    await store.close()

    for k, v in {"MEMBERBOT_STORE": f"sqlite:///{tmp_path}/p.db",
                 "MEMBERBOT_DATA_DIR": str(tmp_path), "MEMBERBOT_DATA_KEY": KEY,
                 "MEMBERBOT_API_SECRET": "x", "WECHAT_TOKEN": "x",
                 "MEMBERBOT_RULES": str(PLAYBOOK)}.items():
        monkeypatch.setenv(k, v)
    res = await asyncio.to_thread(CliRunner().invoke, main, [
        "report", "--as-of", "2026-11-29", "--days", "7", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["points"]["by_reason"]["task"] == 20  # tasks
    # the ladder's 3rd rung gave a ¥5 coupon, the limited offer another
    assert next(c for c in r["coupons"] if c["template"] == "points_500")["issued"] == 2
    k = {x["key"]: x for x in r["kpis"]}
    assert (k["invite_per_inviter"]["numerator"], k["invite_per_inviter"]["denominator"]) == (3, 1)
    (camp,) = r["campaigns"]  # the weekend 积分翻倍 and its budget
    assert (camp["key"], camp["budget"], camp["used"]) == ("weekend_double", 100_000, 300)
    flash = next(o for o in r["offers"] if o["key"] == "flash_500")  # the limited offer
    assert (flash["exchanged"], flash["stock"], flash["left"]) == (1, 100, 99)
    res = await asyncio.to_thread(CliRunner().invoke, main, [
        "report", "--experiment", "expiry_msg", "--json"])
    assert res.exit_code == 0, res.output
    arms = {a["arm"]: a["members"] for a in json.loads(res.output)["arms"]}
    assert set(arms) == {"a", "b", "holdout"} and sum(arms.values()) == len(due)
