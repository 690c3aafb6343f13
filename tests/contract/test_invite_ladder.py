"""The invite ladder on every backend: concurrent binds reach each rung once, the rung's
coupon takes one unit of stock; the backfill of older inviters is idempotent."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from bot.invites_cli import backfill
from bot.members import Members
from bot.rules import load_rules
from bot.rules.models import Change
from bot.rules.points import balance
from tests.rules.support import rules_file

LADDER = ('[[invite_ladder]]\ninvites = 3\ncoupon = "points_500"\n\n'
          '[[invite_ladder]]\ninvites = 5\npoints = 200\n')
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=load_rules().tz)


@pytest.fixture
def rules(tmp_path):
    return rules_file(tmp_path, LADDER)


async def test_concurrent_binds_reach_each_rung_once(store, rules):
    members = Members(store, rules)
    inviter = (await members.register("o-inv", NOW))["member_id"]
    code = (await store.get(inviter)).invite_code
    ids = [(await members.register(f"o-f{i}", NOW))["member_id"] for i in range(6)]
    # six invitees bind at once, each twice (a WeChat retry)
    await asyncio.gather(*(members.bind_invite(mid, code, NOW) for mid in ids for _ in (0, 1)))
    m = await store.get(inviter)
    assert (m.invited_rewarded_total, sorted(m.ladder_done)) == (6, [3, 5])
    assert sum(c.template == "points_500" for c in m.coupons) == 1
    assert balance(m, NOW.date()) == 6 * 50 + 200
    rows = await store.ledger(member_id=inviter, kinds=["invite_ladder"])
    assert sorted(r.data["invites"] for r in rows) == [3, 5]
    assert await store.stock("points_500") == rules.coupons["points_500"].stock - 1


async def test_backfill_counts_older_invites_once(store, rules):
    members = Members(store, load_rules())  # no ladder yet
    inviter = (await members.register("o-old", NOW))["member_id"]
    code = (await store.get(inviter)).invite_code
    for i in range(4):
        mid = (await members.register(f"o-o{i}", NOW))["member_id"]
        await members.bind_invite(mid, code, NOW)
    # as a member stored before the ladder existed: no count on it
    m = await store.get(inviter)
    assert m.invited_rewarded_total == 4
    m.invited_rewarded_total = 0
    await store.update(inviter, lambda _: Change(m, None))
    members = Members(store, rules)
    later = NOW + timedelta(days=1)
    first = await backfill(members, later)
    assert (first["backfilled"], first["invites_added"], first["inviters"]) == (1, 4, 1)
    again = await backfill(members, later)
    assert (again["backfilled"], again["invites_added"]) == (0, 0)
    assert (await store.get(inviter)).invited_rewarded_total == 4
    assert len(await store.ledger(member_id=inviter, kinds=["invite_backfill"])) == 1
    # the next invite is the 5th: its rung, and the 3rd's is not given afterwards
    mid = (await members.register("o-new", later))["member_id"]
    await members.bind_invite(mid, code, later)
    m = await store.get(inviter)
    assert (m.invited_rewarded_total, m.ladder_done) == (5, [5])


def test_the_command_reports_what_it_did(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bot.cli import main

    for k, v in {"MEMBERBOT_STORE": f"sqlite:///{tmp_path}/c.db",
                 "MEMBERBOT_DATA_DIR": str(tmp_path),
                 "MEMBERBOT_DATA_KEY": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
                 "MEMBERBOT_API_SECRET": "x", "WECHAT_TOKEN": "x"}.items():
        monkeypatch.setenv(k, v)
    res = CliRunner().invoke(main, ["invites", "backfill"])
    assert res.exit_code == 0, res.output
    assert "members looked at 0; inviters 0; backfilled 0 (+0 rewarded invites)" in res.output


async def test_a_rung_coupon_the_inviter_reaches_the_limit_of_meanwhile_takes_no_stock(store,
                                                                                      tmp_path):
    """The inviter receives the rung's coupon (one per member) between the claim of a code
    for the rung and the step: the bind still counts, the rung gives its points without the
    coupon, its code is given back and no unit of stock is taken for it."""
    base = rules_file(tmp_path, '[[invite_ladder]]\ninvites = 1\npoints = 30\n'
                                'coupon = "points_500"\n')
    one = replace(base.coupons["points_500"], per_member_limit=1)
    rules = replace(base, coupons={**base.coupons, "points_500": one})
    members = Members(store, rules)
    inviter = (await members.register("o-inv", NOW))["member_id"]
    invitee = (await members.register("o-f", NOW))["member_id"]
    claimed, gifted = [], []
    ensure, claim = members.ensure_stock, members._claim_new

    async def claim_new(kind, make, member_id):
        code = await claim(kind, make, member_id)
        claimed.append(code)
        return code

    async def ensure_stock(**kw):  # the use case runs it after the claim-less step
        await ensure(**kw)
        if kw.get("templates") == ("points_500",) and not gifted:
            gifted.append("staff:gift")  # issue_coupon runs ensure_stock too
            await members.issue_coupon(inviter, "points_500", "staff:gift", NOW)

    members.ensure_stock, members._claim_new = ensure_stock, claim_new
    stock = rules.coupons["points_500"].stock
    res = await members.bind_invite(invitee, (await store.get(inviter)).invite_code, NOW)
    assert res["bound"] and res["inviter_rewarded"]
    m = await store.get(inviter)
    assert m.ladder_done == [1] and [c.ref for c in m.coupons if c.template == "points_500"] == [
        "staff:gift"]
    assert balance(m, NOW.date()) == 50 + 30
    rows = await store.ledger(member_id=inviter, kinds=["invite_ladder_no_coupon"])
    assert [r.data["reason"] for r in rows] == ["coupon_limit"]
    assert await store.stock("points_500") == stock - 1  # the staff gift's unit only
    gift, rung = claimed  # the staff gift's code, then the one claimed for the rung
    assert await store.lookup("coupon_code", gift) == inviter
    assert await store.lookup("coupon_code", rung) is None
