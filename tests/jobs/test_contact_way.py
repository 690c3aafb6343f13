"""Channel QR codes (渠道活码): created from the command line, attributed on /wecom."""

from __future__ import annotations

from click.testing import CliRunner

from bot import analytics
from bot.cli import main
from bot.rules import points
from bot.rules.timeutil import local_day
from bot.web import CTX
from tests.fakes.wecom_api import ADD_WAY

from .test_cli import api, environ  # noqa: F401 - the fixture
from .test_wecom_callback import app_client, contact  # noqa: F401 - the fixture


def balance(m, ctx) -> int:
    return points.balance(m, local_day(ctx.now(), ctx.rules.tz))


async def test_a_contact_by_an_invite_qr_binds_the_invite_once_with_both_rewards(
        app_client, fake):  # noqa: F811
    client, wc = await app_client()
    ctx = client.server.app[CTX]
    inviter = await ctx.members.register("o-inviter", ctx.now(), unionid="u-inviter")
    code = inviter["invite_code"]
    fake.contacts["ext-new"] = contact("u-new", "alice")
    for _ in range(2):  # WeCom retries the event: nothing twice
        r = await wc.event("add_external_contact", "ext-new", "alice", code="WC-9",
                           state=f"inv_{code}")
        assert r.status == 200
    mid = await ctx.store.lookup("external_userid", "ext-new")
    new, old = await ctx.store.get(mid), await ctx.store.get(inviter["member_id"])
    assert new.inviter_id == inviter["member_id"] and old.invited_total == 1
    assert balance(new, ctx) == 50 and balance(old, ctx) == 50
    assert len(await ctx.store.ledger(kinds=["credit"])) == 2
    # a refusal is the OA's too: a member may not invite themself
    fake.contacts["ext-self"] = contact("u-inviter", "alice")
    await wc.event("add_external_contact", "ext-self", "alice", state=f"inv_{code}")
    assert (await ctx.store.get(inviter["member_id"])).invited_total == 1
    assert balance(await ctx.store.get(inviter["member_id"]), ctx) == 50


async def test_a_store_or_campaign_qr_is_kept_as_the_channel_and_reported(app_client, fake):  # noqa: F811
    client, wc = await app_client()
    ctx = client.server.app[CTX]
    for i, state in enumerate(("store_12", "store_12", "cmp_double11")):
        fake.contacts[f"ext-{i}"] = contact(f"u-{i}", "alice")
        await wc.event("add_external_contact", f"ext-{i}", "alice", state=state)
    await wc.event("add_external_contact", "ext-0", "bob", state="cmp_later")  # first wins
    mid = await ctx.store.lookup("external_userid", "ext-0")
    assert (await ctx.store.get(mid)).channel == "store_12"
    r = await analytics.compute(ctx.store, ctx.rules, local_day(ctx.now(), ctx.rules.tz), 7)
    assert r["channels"]["by_state"] == {"cmp_double11": 1, "store_12": 2}


def test_contact_way_create_and_list(tmp_path, api, monkeypatch):  # noqa: F811
    for k, v in environ(tmp_path, api).items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()
    res = runner.invoke(main, ["contact-way", "create", "--staff", "alice", "--state",
                               "store_12"])
    assert res.exit_code == 0, res.output
    (call,) = api.to(ADD_WAY)
    assert call.body["user"] == ["alice"] and call.body["state"] == "store_12"
    assert call.body["type"] == 1 and call.body["scene"] == 2
    assert res.stdout.startswith("https://wework.qpic.cn/")
    res = runner.invoke(main, ["contact-way", "list"])
    assert "store_12" in res.output and "alice" in res.output
    for bad in ("x" * 31, "shop_1", "inv_NOSUCH"):
        res = runner.invoke(main, ["contact-way", "create", "--staff", "alice", "--state", bad])
        assert res.exit_code == 1 and res.output.startswith("error: --state"), res.output
    assert len(api.to(ADD_WAY)) == 1
