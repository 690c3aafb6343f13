"""Lifecycle pushes aimed at a tier or RFM segment tag (``push.targets`` of the rules file)."""

from __future__ import annotations

import pytest

from bot.jobs import registry
from bot.jobs.runner import run_kind
from bot.rules.config import DEFAULTS, RulesError, _merge, build_rules
from tests.fakes.wecom_api import ADD

from .support import member, sh, statuses
from .test_exactly_once import DAY, run


def rules_with(targets: dict):
    return registry.checked(build_rules(_merge(DEFAULTS, {"push": {"targets": targets}})))


def aim(env, targets: dict) -> None:
    env.rules = rules_with(targets)
    env.members.rules = env.rules


@pytest.mark.parametrize("targets, error", [
    ({"nope": {"tiers": ["gold"]}}, "push.targets.nope: unknown lifecycle kind 'nope'"),
    ({"outbox": {"tiers": ["gold"]}}, "push.targets.outbox: unknown lifecycle kind"),
    ({"wakeup": {"tiers": ["platinum"]}},
     "push.targets.wakeup.tiers: unknown tier 'platinum' (known: normal, silver"),
    ({"wakeup": {"segments": ["at_risk"]}},
     "push.targets.wakeup.segments: unknown segment 'at_risk' (known: 重要价值客户"),
    ({"wakeup": {"tier": ["gold"]}}, "push.targets.wakeup.tier: unknown setting"),
    ({"wakeup": {"tiers": "gold"}}, "push.targets.wakeup.tiers: must be a non-empty list"),
    ({"wakeup": {"tiers": []}}, "push.targets.wakeup.tiers: must be a non-empty list"),
    ({"wakeup": {}}, "push.targets.wakeup: name tiers and/or segments"),
    ({"wakeup": ["gold"]}, "push.targets.wakeup: must be a table"),
])
def test_a_wrong_target_is_an_error_naming_its_key(targets, error):
    with pytest.raises(RulesError) as e:
        rules_with(targets)
    assert str(e.value).startswith(error)


def test_targets_load_from_the_rules_file(tmp_path):
    from tests.conftest import make_settings

    path = tmp_path / "rules.toml"
    path.write_text('[push.targets.wakeup]\ntiers = ["gold", "black"]\n'
                    'segments = ["重要挽留客户"]\n[push.targets.tier_upgrade]\n'
                    'tiers = ["gold"]\n', encoding="utf-8")
    rules = registry.load_rules(make_settings(tmp_path, rules_path=str(path)))
    assert rules.push["targets"] == {"wakeup": {"tiers": ["gold", "black"],
                                                "segments": ["重要挽留客户"]},
                                     "tier_upgrade": {"tiers": ["gold"]}}
    assert registry.checked(build_rules(DEFAULTS)).push["targets"] == {}


async def test_a_kind_aimed_at_a_tier_pushes_only_members_of_it(store, make_env, fake):
    env = await make_env(store)
    normal = await member(env, "n", sh(2025, 12, 1), order_fen=10_000, paid_at=sh(2025, 12, 25))
    silver = await member(env, "s", sh(2025, 12, 1), order_fen=300_000,
                          paid_at=sh(2025, 12, 25))
    assert [(await store.get(i)).tier for i in (normal, silver)] == ["normal", "silver"]
    aim(env, {"points_expiry": {"tiers": ["silver"]}})
    dry = await run(env, "points_expiry", DAY, dry_run=True)
    assert dry.skipped["out_of_target"] == 1 and dry.would_send == {"wecom": 1}
    res = await run(env, "points_expiry", DAY)
    assert res.due == 2 and res.enqueued == 1 and res.sent == 1
    assert res.skipped["out_of_target"] == 1
    assert "skipped: not in the kind's target (push.targets)" in "\n".join(res.lines())
    assert fake.delivered() == {"ext-s": 1}
    assert "points_expiry" not in ",".join((await store.get(normal)).pushes)  # not marked

    aim(env, {})  # untargeted again: the member who was out of target is due as before
    res = await run(env, "points_expiry", DAY)
    assert res.enqueued == 1 and res.already == 1 and fake.delivered() == {"ext-s": 1,
                                                                             "ext-n": 1}


async def test_out_of_target_issues_no_coupon_and_takes_no_daily_slot(store, make_env, fake):
    env = await make_env(store)
    # points expiring in 30 days (points_expiry) and no purchase for 116 days (wakeup)
    mid = await member(env, "w", sh(2025, 12, 1), order_fen=10_000, paid_at=sh(2025, 12, 25))
    await env.members.record_order(mid, "o-2", 10_000, sh(2026, 8, 1), sh(2026, 8, 1))
    capped = await run(env, "wakeup", DAY, dry_run=True)  # points_expiry has the day's slot
    assert capped.skipped["cap"] == 1
    aim(env, {"wakeup": {"segments": ["重要价值客户"]}})  # the member is 一般保持客户
    res = await run(env, "wakeup", DAY)
    assert res.skipped["out_of_target"] == 1 and res.coupons == 0 and res.enqueued == 0
    assert [c.template for c in (await store.get(mid)).coupons] == ["welcome"]
    # the daily cap keeps no slot for a higher-priority push the member is not aimed at
    aim(env, {"points_expiry": {"tiers": ["black"]}, "wakeup": {"tiers": ["normal"]}})
    res = await run(env, "wakeup", DAY)
    assert res.enqueued == 1 and res.coupons == 1 and not res.skipped["cap"]


async def test_a_tier_upgrade_aimed_at_gold_is_not_sent_to_a_new_silver(store, make_env, fake):
    env = await make_env(store)
    aim(env, {"tier_upgrade": {"tiers": ["gold"]}})
    a = await member(env, "a", sh(2026, 11, 1))
    b = await member(env, "b", sh(2026, 11, 1))
    at = sh(2026, 11, 25, 10)
    await env.members.record_order(a, "o-a", 300_000, at, at)  # → silver
    await env.members.record_order(b, "o-b", 1_500_000, at, at)  # → gold
    res = await run_kind(env, "tier_upgrade", sh(2026, 11, 25, 10, 1))
    assert res.sent == 1 and res.skipped["out_of_target"] == 1
    assert fake.delivered() == {"ext-b": 1} and len(fake.to(ADD)) == 1
    assert await statuses(store, "tier_upgrade") == {"created": 1, "skipped": 1}
    assert (await run_kind(env, "tier_upgrade", sh(2026, 11, 25, 10, 2))).sent == 0
