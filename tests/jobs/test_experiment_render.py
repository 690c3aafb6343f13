"""An A/B variant whose message does not render for a member fails that member's push, with
the reason counted in the summary; the run goes on with everyone else (it used to stop at the
first member of the arm, on every run, so the rest of the kind was never pushed)."""

from __future__ import annotations

import logging

import pytest

from bot.rules import experiments as ex

from ..rules.support import rules_file
from ..rules.test_experiments import B_TEXT
from .support import run
from .test_exactly_once import DAY, due_members
from .test_experiments import EXP, N

BROKEN = {
    "template": ('template = "nonexistent.j2"',
                 "no template 'nonexistent.j2' in the built-in templates"),
    "text": ('text = "{{ (points / 0) }} {{ nosuch.attr.x }}"',
             "ZeroDivisionError: division by zero"),
}


@pytest.fixture(params=sorted(BROKEN))
def broken(request):
    return BROKEN[request.param]


@pytest.fixture
def rules(tmp_path, broken):
    # parsed but not checked (the load check refuses these): what a variant that passed it
    # meets later, a template gone from MEMBERBOT_TEMPLATES or facts its sample lacked
    return rules_file(tmp_path, EXP.replace(B_TEXT, broken[0]), "exp.toml")


async def test_a_variant_that_fails_to_render_fails_its_members_and_the_run_goes_on(
        store, make_env, fake, rules, broken, caplog):
    env = await make_env(store)
    ids = await due_members(env, N)
    (exp,) = rules.experiments
    arm = {mid: ex.assign(exp, mid) for mid in ids}
    by_arm = {k: {mid for mid in ids if arm[mid] == k} for k in ("a", "b", "holdout")}
    assert all(by_arm.values())  # each arm has members
    reason = f"message not rendered (expiry_msg/b): {broken[1]}"
    for dry_run in (True, False):
        with caplog.at_level(logging.WARNING, "memberbot.jobs"):
            caplog.clear()
            s = await run(env, "points_expiry", DAY, dry_run=dry_run)
        assert s.not_rendered() == [reason]
        assert s.failed[reason] == len(by_arm["b"])
        assert s.skipped["holdout"] == len(by_arm["holdout"])
        sent = sum(s.would_send.values()) if dry_run else s.enqueued
        assert sent == len(by_arm["a"])
        text = "\n".join(s.lines())
        assert "failed" in text and f"  {reason}  {len(by_arm['b'])}" in text
        assert [r.getMessage() for r in caplog.records] == [f"points_expiry: {reason}"]
        assert not any(r.exc_info for r in caplog.records)  # no traceback
    box = {r.member_id for r in await store.outbox(kind="points_expiry")}
    assert box == by_arm["a"]
    assert not [r for r in await store.ledger(kinds=["push"]) if r.member_id in by_arm["b"]]
    # every run: arm b fails again (nothing marked), the rest are done
    again = await run(env, "points_expiry", DAY)
    assert again.failed[reason] == len(by_arm["b"])
    assert again.already == len(by_arm["a"]) + len(by_arm["holdout"])
