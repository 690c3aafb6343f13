"""An A/B test of the points-expiry message, run by the job and read by the report."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from bot import experiment_report
from bot.cli import main
from bot.jobs.registry import checked
from bot.rules import experiments as ex

from ..rules.support import rules_file
from ..rules.test_experiments import EXP as RULES_EXP
from .support import run, sh
from .test_exactly_once import DAY, due_members

# the rules tests' experiment, with 30 % held out and even weights: member ids are random,
# and 40 members fill each arm but for odds of about one in a million
EXP = RULES_EXP.replace("holdout_percent = 20", "holdout_percent = 30").replace(
    "weight = 3", "weight = 1")
N = 40


@pytest.fixture
def rules(tmp_path):
    return checked(rules_file(tmp_path, EXP, "exp.toml"))


async def test_holdout_members_are_not_pushed_and_the_report_counts_each_arm(
        store, make_env, fake, rules, tmp_path, monkeypatch):
    env = await make_env(store)
    ids = await due_members(env, N)
    (exp,) = rules.experiments
    arm = {mid: ex.assign(exp, mid) for mid in ids}
    assert set(arm.values()) == {"holdout", "a", "b"}  # each arm has members
    held = [mid for mid in ids if arm[mid] == "holdout"]
    dry = await run(env, "points_expiry", DAY, dry_run=True)  # a preview says the same
    assert dry.skipped["holdout"] == len(held) and sum(dry.would_send.values()) == N - len(held)
    s = await run(env, "points_expiry", DAY)
    assert s.skipped["holdout"] == len(held) and s.enqueued == N - len(held)
    rows = await store.ledger(kinds=["push_holdout"])
    assert sorted(r.member_id for r in rows) == sorted(held)
    assert all(r.data["experiment"] == "expiry_msg" for r in rows)
    box = {r.member_id: r for r in await store.outbox(kind="points_expiry")}
    assert set(box) == set(ids) - set(held)
    for mid, r in box.items():
        assert r.data["variant"] == arm[mid]
        assert r.data["text"].endswith("快来兑换！") == (arm[mid] == "b")
    reached = fake.reached()
    m_of = {(await store.get(mid)).external_userid: mid for mid in ids}
    assert {m_of[e] for e in reached} == set(box)  # nobody of the holdout got it
    again = await run(env, "points_expiry", DAY)
    assert again.already == N and again.skipped["holdout"] == 0

    # conversions: an order 2 days after the push counts, one 10 days after does not
    pushed_at = sh(DAY.year, DAY.month, DAY.day, 10)
    by_arm: dict[str, list[str]] = {}
    for mid in ids:
        by_arm.setdefault(arm[mid], []).append(mid)
    buyers = [by_arm["holdout"][0], *by_arm["a"][:2], *by_arm["b"][:1]]
    for mid in buyers:
        at = pushed_at + timedelta(days=2)
        await env.members.record_order(mid, f"x-{mid}", 5000, at, at)
    late = by_arm["b"][-1]
    at = pushed_at + timedelta(days=10)
    await env.members.record_order(late, f"late-{late}", 5000, at, at)
    r = await experiment_report.compute(store, rules, exp)
    got = {a["arm"]: (a["members"], a["sent"], a["conversions"]) for a in r["arms"]}
    n = {k: len(v) for k, v in by_arm.items()}
    assert got == {"a": (n["a"], n["a"], 2), "b": (n["b"], n["b"], 1),
                   "holdout": (n["holdout"], 0, 1)}
    a = next(x for x in r["arms"] if x["arm"] == "a")
    d, lo, hi = experiment_report.diff_interval(2, n["a"], 1, n["holdout"])
    assert (a["diff"], a["ci_low"], a["ci_high"]) == (d, lo, hi)
    assert a["verdict"] == "too_small"  # about 12 in the holdout: too few to conclude
    text = "\n".join(experiment_report.lines(r))
    assert "holdout" in text and "(baseline)" in text and "95 % CI" in text
    assert "samples too small to conclude" in text and "Newcombe" in text

    # the command prints the same
    path = tmp_path / "m.db"
    assert store.path == str(path)
    for k, v in {"MEMBERBOT_STORE": f"sqlite:///{path}", "MEMBERBOT_DATA_DIR": str(tmp_path),
                 "MEMBERBOT_DATA_KEY": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
                 "MEMBERBOT_API_SECRET": "x", "WECHAT_TOKEN": "x",
                 "MEMBERBOT_RULES": str(tmp_path / "exp.toml")}.items():
        monkeypatch.setenv(k, v)
    res = await asyncio.to_thread(CliRunner().invoke, main,
                                  ["report", "--experiment", "expiry_msg", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["arms"] == r["arms"]
    res = await asyncio.to_thread(CliRunner().invoke, main,
                                  ["report", "--experiment", "nope"])
    assert res.exit_code == 1 and "no experiment 'nope'" in res.output


def test_one_member_against_one_is_too_few_and_keeps_a_wide_interval():
    """1/1 against 0/1 printed "+100.0% [+100.0%, +100.0%]" (the Wald interval)."""
    exp = ex.Experiment("t", "points_expiry", 10, 7, (ex.Variant("a"),))
    arms = [{"arm": "a", "members": 1, "sent": 1, "conversions": 1, "rate": 1.0},
            {"arm": "holdout", "members": 1, "sent": 0, "conversions": 0, "rate": 0.0}]
    d, lo, hi = experiment_report.diff_interval(1, 1, 0, 1)
    arms[0].update(diff=d, ci_low=lo, ci_high=hi, verdict=experiment_report.verdict(1, 1, lo, hi))
    arms[1].update(diff=None, ci_low=None, ci_high=None, verdict=None)
    r = {"experiment": exp.name, "kind": exp.kind, "holdout_percent": 10,
         "conversion_days": 7, "arms": arms, "definition": "…"}
    line = next(x for x in experiment_report.lines(r) if x.strip().startswith("a "))
    assert line.endswith("+100.0% [-12.2%, +100.0%]  samples too small to conclude (under 30 "
                         "members here or in the holdout)")
