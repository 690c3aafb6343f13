"""Customer handover (在职继承 / 离职继承) against the fake WeCom API."""

from __future__ import annotations

from click.testing import CliRunner

from bot.cli import main
from bot.jobs import handover
from bot.jobs.base import Summary
from bot.jobs.outbox import deliver
from bot.jobs.runner import run_kind
from bot.web import CTX
from tests.fakes.wecom_api import ADD, R_TRANSFER, R_TRANSFER_RESULT, TRANSFER

from .support import member, sh
from .test_cli import api, environ, seed  # noqa: F401 - the fixture
from .test_exactly_once import DAY, run
from .test_wecom_callback import app_client, contact  # noqa: F401 - the fixture

NOW = sh(2026, 11, 25, 10, 30)


async def test_a_handover_moves_the_owner_and_the_next_push_uses_it(store, make_env, fake):
    env = await make_env(store)
    ids = [await member(env, f"m{i}", sh(2025, 12, 1), staff="alice", order_fen=10_000,
                        paid_at=sh(2025, 12, 25)) for i in range(3)]
    fake.transfer_refuse = {"ext-m2"}  # this customer refuses the new owner
    started = Summary("handover", NOW)
    await handover.start(env, "alice", "bob", resigned=False, now=NOW, summary=started)
    assert started.enqueued == 3
    (call,) = fake.to(TRANSFER)
    assert (call.body["handover_userid"], call.body["takeover_userid"]) == ("alice", "bob")
    assert sorted(call.body["external_userid"]) == ["ext-m0", "ext-m1", "ext-m2"]
    assert "bob" in call.body["transfer_success_msg"]

    res = await run(env, "points_expiry", DAY)  # pushes wait for the new owner, never fail
    assert res.enqueued == 3 and res.held["no_owner"] == 3 and res.sent == 0
    assert "waiting for a new owner" in "\n".join(res.lines())
    assert not fake.to(ADD)

    res = await run_kind(env, "handover", NOW)
    assert res.waiting == 2 and res.failed["customer_refused"] == 1
    refused = await store.get(ids[2])
    assert refused.owner_userid == "alice" and not refused.handover
    fake.finish_transfers()
    res = await run_kind(env, "handover", NOW)
    assert res.moved == 2 and res.waiting == 0
    for mid in ids[:2]:
        m = await store.get(mid)
        assert m.owner_userid == "bob" and "alice" not in m.follow_users and not m.handover
    assert (await run_kind(env, "handover", NOW)).due == 0

    await deliver(env, NOW)
    senders = {e: c.body["sender"] for c in fake.to(ADD) for e in c.body["external_userid"]}
    assert senders == {"ext-m0": "bob", "ext-m1": "bob", "ext-m2": "alice"}


async def test_a_resigned_staff_members_customers_and_a_transfer_fail_event(
        app_client, fake):  # noqa: F811
    client, wc = await app_client()
    ctx = client.server.app[CTX]
    env = ctx  # jobs receive the app's context
    for i in range(2):
        fake.contacts[f"ext-{i}"] = contact(f"u-{i}", "carol")
        await wc.event("add_external_contact", f"ext-{i}", "carol")
    await handover.start(env, "carol", "dave", resigned=True, now=ctx.now(),
                         summary=Summary("handover", ctx.now()))
    (call,) = fake.to(R_TRANSFER)
    assert "transfer_success_msg" not in call.body  # WeCom sends none for a resigned owner
    # WeCom says the transfer of ext-0 failed: the handover ends, nothing waits for it
    r = await wc.event("transfer_fail", "ext-0", "dave", fail_reason="customer_limit_exceed")
    assert r.status == 200
    m0 = await ctx.store.get(await ctx.store.lookup("external_userid", "ext-0"))
    assert not m0.handover
    fake.finish_transfers()
    res = await run_kind(env, "handover", ctx.now())
    assert res.moved == 1 and fake.to(R_TRANSFER_RESULT)
    m1 = await ctx.store.get(await ctx.store.lookup("external_userid", "ext-1"))
    assert m1.owner_userid == "dave"


def test_the_handover_command(tmp_path, api, monkeypatch):  # noqa: F811
    seed(tmp_path, 2)  # two customers of alice
    for k, v in environ(tmp_path, api).items():
        monkeypatch.setenv(k, v)
    res = CliRunner().invoke(main, ["handover", "--from", "alice", "--to", "bob"])
    assert res.exit_code == 0, res.output
    assert "handed over" in res.output and "waiting" in res.output
    assert len(api.to(TRANSFER)) == 1
    bad = CliRunner().invoke(main, ["handover", "--from", "alice", "--to", "alice"])
    assert bad.exit_code == 1 and bad.output.startswith("error: ")
