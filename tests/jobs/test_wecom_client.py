"""The WeCom client against the fake API: tokens, error classes, transport failures."""

from __future__ import annotations

import pytest

from bot.channels.wecom import WeComConfigError, WeComError, WeComRateLimited
from bot.jobs.outbox import deliver

from .support import sh, statuses
from .test_exactly_once import DAY, due_members, run


async def test_a_refused_secret_is_not_asked_again(store, make_env, fake):
    env = await make_env(store, wecom_secret="wrong")
    for _ in range(3):
        with pytest.raises(WeComConfigError):
            await env.wecom.get_external_contact("x")
    assert fake.token_fetches == 1 and "WECOM_SECRET" in env.problems["wecom"]


async def test_not_configured_is_a_configuration_error(store, make_env, fake):
    env = await make_env(store, wecom_secret="")
    with pytest.raises(WeComConfigError):
        await env.wecom.access_token()
    assert fake.calls == []


async def test_the_welcome_code_is_retried_briefly_on_a_rate_limit(store, make_env, fake):
    env = await make_env(store)
    fake.fail_next(45009, 5, "/cgi-bin/externalcontact/send_welcome_msg")
    with pytest.raises(WeComRateLimited):
        await env.wecom.send_welcome_msg("code", "hi")
    assert env.sleeps == [0.5, 1.0, 2.0]  # about 3.5 s of the code's 20 s, then give up


async def test_an_unknown_contact_is_an_errcode(store, make_env, fake):
    env = await make_env(store)
    with pytest.raises(WeComError) as e:
        await env.wecom.get_external_contact("nobody")
    assert e.value.errcode == 84061 and not e.value.maybe_sent


async def test_too_many_recipients_are_refused_before_any_call(store, make_env, fake):
    env = await make_env(store)
    with pytest.raises(ValueError):
        await env.wecom.add_msg_template("alice", [f"e{i}" for i in range(10_001)], "hi")
    assert fake.calls == []


async def test_no_answer_in_time_means_uncertain_never_resent(store, make_env, fake):
    import aiohttp

    env = await make_env(store)
    await due_members(env, 4, staffs=1, texts=4)
    env.wecom.timeout = aiohttp.ClientTimeout(total=0.2)
    fake.hang_on = 2  # the second call is received and never answered
    res = await run(env, "points_expiry", DAY)
    assert res.uncertain == 1 and res.sent == 3
    await deliver(env, sh(2026, 11, 25, 10, 5))  # a later run leaves it alone
    assert set(fake.reached().values()) == {1} and len(fake.reached()) == 4
    assert (await statuses(store)) == {"created": 3, "uncertain": 1}


async def test_an_unreachable_api_keeps_rows_pending(store, make_env, fake):
    env = await make_env(store)
    await due_members(env, 3)
    env.wecom.base = "http://127.0.0.1:9"  # nothing listens: certainly not sent
    res = await run(env, "points_expiry", DAY)
    assert res.held["unavailable"] == 3 and (await statuses(store)) == {"pending": 3}
    env.wecom.base = fake.base
    assert (await deliver(env, sh(2026, 11, 25, 10, 5))).sent == 3
