"""Issue 9 on every backend: coupon stock that cannot be oversold (defect 4), ids bound only by
a recorded order or refund (defect 6), check-ins processed out of order (defect 8) and invite
cycles under concurrent binds (defect 5). Concurrency tests run 20 trials each."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

import pytest

from bot.members import Members
from bot.rules import Refusal, load_rules
from bot.rules.models import Change, Entry, Member
from storage import OutOfStock, Store, UniqueTaken

RULES = load_rules()
TZ = RULES.tz
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=TZ)
TRIALS = 20


async def _member(members: Members, openid: str) -> str:
    return (await members.register(openid, NOW))["member_id"]


async def _try(coro):
    try:
        return await coro
    except Refusal as e:
        return e.code


def _step(mid: str, *, claims=(), takes=()):
    def step(m: Member | None) -> Change:
        m = m or Member(mid, member_code=f"C-{mid}")
        m.checkin_total += 1
        return Change(m, {"n": m.checkin_total}, [Entry("credit", 1, points=1, ref=mid)],
                      claims=list(claims), stock_takes=list(takes))

    return step


# -- the store contract: preconditions of a commit ------------------------------------------------

async def test_a_commit_binds_its_claims_or_writes_nothing(store: Store):
    assert await store.update("m1", _step("m1", claims=[("order", "O1")]), key="k1") == {"n": 1}
    assert await store.lookup("order", "O1") == "m1"
    await store.update("m2", _step("m2"))
    with pytest.raises(UniqueTaken) as e:
        await store.update("m2", _step("m2", claims=[("order", "O1")]), key="k2")
    assert (e.value.kind, e.value.value, e.value.owner) == ("order", "O1", "m1")
    m2 = await store.get("m2")
    assert (m2.version, m2.checkin_total) == (1, 1)
    assert await store.seen("m2", "k2") == (False, None)
    assert len(await store.ledger(member_id="m2")) == 1
    # the owner may claim it again (a replayed order)
    await store.update("m1", _step("m1", claims=[("order", "O1")]))

    def refused(m):
        raise Refusal("no", "不行")

    with pytest.raises(Refusal):
        await store.update("m2", lambda m: refused(m) or _step("m2", claims=[
            ("order", "O2")])(m))
    assert await store.lookup("order", "O2") is None


async def test_a_commit_takes_its_stock_or_writes_nothing(store: Store):
    await store.stock_set("T", 1)
    await store.update("m1", _step("m1", takes=[("T", "k1")]), key="k1")
    assert await store.stock("T") == 0
    await store.update("m1", _step("m1", takes=[("T", "k1")]))  # the key holds its unit
    assert await store.stock("T") == 0
    with pytest.raises(OutOfStock):
        await store.update("m2", _step("m2", takes=[("T", "k2")]), key="k2")
    assert await store.get("m2") is None
    assert await store.seen("m2", "k2") == (False, None)


# -- defect 4: stock of 1 gives exactly one coupon ----------------------------------------------

async def test_a_unit_given_back_is_taken_from_stock_again(store: Store):
    await store.stock_set("T", 1)
    assert await store.stock_take("T", "k") is True
    await store.stock_return("T", "k")  # the exchange was refused
    assert await store.stock("T") == 1
    assert await store.stock_take("T", "k") is True  # its retry takes the unit again
    assert await store.stock("T") == 0
    assert await store.stock_take("T", "other") is False
    await store.stock_return("T", "k")
    await store.stock_return("T", "k")  # once per take
    assert await store.stock("T") == 1


async def test_stock_of_one_gives_exactly_one_coupon_whatever_the_retries(store: Store):
    members = Members(store, RULES)
    for trial in range(TRIALS):
        a = await _member(members, f"o-a{trial}")
        b = await _member(members, f"o-b{trial}")
        await store.stock_set("points_500", 1)
        key = f"msg-{trial}"
        # a has no points yet: refused, nothing kept
        assert await _try(members.exchange(a, 1, NOW, key=key)) == "insufficient_points"
        await members.adjust_points(a, 500, "seed", "staff", NOW, key=f"seed-a{trial}")
        await members.adjust_points(b, 1000, "seed", "staff", NOW, key=f"seed-b{trial}")
        res = await asyncio.gather(
            *(members.exchange(a, 1, NOW, key=key) for _ in range(3)),  # a's retries
            members.exchange(b, 1, NOW, key=f"b-{trial}"),
            members.exchange(b, 1, NOW, key=f"b2-{trial}"), return_exceptions=True)
        codes = set()
        for mid in (a, b):
            m = await store.get(mid)
            codes |= {c.code for c in m.coupons if c.template == "points_500"}
        assert len(codes) == 1, (trial, res)
        assert await store.stock("points_500") == 0
        for r in res:
            assert isinstance(r, dict) or (isinstance(r, Refusal)
                                           and r.code == "coupon_out_of_stock"), r


# -- defect 6: only a recorded order or refund binds its id -------------------------------------

async def test_a_refused_order_leaves_its_id_free_for_the_right_member(store: Store):
    members = Members(store, RULES)
    wrong = await _member(members, "o-wrong")
    right = await _member(members, "o-right")
    code = (await store.get(wrong)).coupons[0].code
    # sent for the wrong member, refused (below the coupon's threshold)
    assert await _try(members.record_order(wrong, "O-6", 1000, NOW, NOW,
                                           coupon_code=code)) == "coupon_threshold"
    assert await store.lookup("order", "O-6") is None
    res = await members.record_order(right, "O-6", 1000, NOW, NOW)
    assert res["points_earned"] == 10
    assert await store.lookup("order", "O-6") == right
    # now it is bound: the other member cannot take it
    assert await _try(members.record_order(wrong, "O-6", 1000, NOW, NOW)) == "order_conflict"


async def test_a_refused_refund_leaves_its_id_free_and_a_recorded_one_binds_it(store: Store):
    members = Members(store, RULES)
    a = await _member(members, "o-ra")
    b = await _member(members, "o-rb")
    await members.record_order(a, "OA", 10_000, NOW, NOW)
    await members.record_order(b, "OB", 10_000, NOW, NOW)
    assert await _try(members.refund("OA", "RF-6", 99_999, NOW)) == "refund_amount"
    assert await store.lookup("refund", "RF-6") is None
    res = await members.refund("OB", "RF-6", 1000, NOW)
    assert res["refunded_fen"] == 1000
    assert await _try(members.refund("OA", "RF-6", 1000, NOW)) == "refund_conflict"
    assert (await store.get(a)).orders["OA"].refunded_fen == 0


async def test_concurrent_orders_with_one_id_for_two_members_record_it_once(store: Store):
    members = Members(store, RULES)
    for trial in range(TRIALS):
        a = await _member(members, f"o-ca{trial}")
        b = await _member(members, f"o-cb{trial}")
        oid = f"O-C{trial}"
        res = await asyncio.gather(_try(members.record_order(a, oid, 1000, NOW, NOW)),
                                   _try(members.record_order(b, oid, 1000, NOW, NOW)))
        assert sorted(isinstance(r, dict) for r in res) == [False, True], res
        owner = await store.lookup("order", oid)
        holders = [mid for mid in (a, b) if oid in (await store.get(mid)).orders]
        assert holders == [owner]


# -- defect 8: check-ins processed out of order ---------------------------------------------------

async def test_a_late_check_in_keeps_the_streak(store: Store):
    members = Members(store, RULES)
    mid = await _member(members, "o-streak")
    day1 = NOW
    await members.check_in(mid, day1)
    day3 = NOW + timedelta(days=2)
    await members.check_in(mid, day3.replace(hour=0, minute=0, second=1))
    # day 2's retry from 23:59:58, processed after day 3's check-in
    late = await members.check_in(mid, (NOW + timedelta(days=1)).replace(hour=23, minute=59,
                                                                         second=58))
    assert (late["streak"], late["points"]) == (2, 6)
    m = await store.get(mid)
    assert (m.checkin_last, m.checkin_streak) == (day3.date().isoformat(), 3)
    nxt = await members.check_in(mid, NOW + timedelta(days=3))
    assert nxt["streak"] == 4


# -- defect 5: invite cycles under concurrent binds ----------------------------------------------

async def _points(store: Store, mid: str) -> int:
    return sum(r.points for r in await store.ledger(member_id=mid))


async def _assert_acyclic_and_paid_once(store: Store, ids: list[str]) -> None:
    pts = RULES.invite["inviter_points"]
    for mid in ids:
        seen, cur = [mid], (await store.get(mid)).inviter_id
        while cur is not None:
            assert cur not in seen, f"invite cycle through {seen}"
            seen.append(cur)
            cur = (await store.get(cur)).inviter_id
    stored = {mid: await store.get(mid) for mid in ids}
    for mid, m in stored.items():  # +50 per standing bind on each side, none for a reversed one
        invitees = sum(1 for o in stored.values() if o.inviter_id == mid)
        assert m.invited_total == invitees
        assert await _points(store, mid) == pts * (invitees + (m.inviter_id is not None))


async def _triangles(store: Store, members: Members, least_bound: int) -> None:
    for trial in range(TRIALS):
        xs = [await _member(members, f"o-x{trial}-{i}") for i in range(3)]
        codes = [(await store.get(x)).invite_code for x in xs]
        # X0 -> X1, X1 -> X2, X2 -> X0 at once (X1 binds X0's code, ...)
        res = await asyncio.gather(*(_try(members.bind_invite(xs[(i + 1) % 3], codes[i], NOW))
                                     for i in range(3)))
        bound = [r for r in res if isinstance(r, dict)]
        assert least_bound <= len(bound) <= 2, res
        assert all(r == "invite_cycle" for r in res if not isinstance(r, dict)), res
        await _assert_acyclic_and_paid_once(store, xs)


async def test_three_binds_closing_a_cycle_at_once_never_all_stick(store: Store):
    await _triangles(store, Members(store, RULES), least_bound=2)  # taking turns: one refused


async def test_two_members_binding_each_other_at_once_one_sticks(store: Store):
    members = Members(store, RULES)
    for trial in range(TRIALS):
        a = await _member(members, f"o-p{trial}")
        b = await _member(members, f"o-q{trial}")
        ca, cb = (await store.get(a)).invite_code, (await store.get(b)).invite_code
        res = await asyncio.gather(_try(members.bind_invite(a, cb, NOW)),
                                   _try(members.bind_invite(b, ca, NOW)))
        assert sorted(isinstance(r, dict) for r in res) == [False, True], res
        await _assert_acyclic_and_paid_once(store, [a, b])
        # the refused side asking again is refused again, and changes nothing
        loser = a if not isinstance(res[0], dict) else b
        code = cb if loser == a else ca
        before = await _points(store, loser)
        assert await _try(members.bind_invite(loser, code, NOW)) == "invite_cycle"
        assert await _points(store, loser) == before


class _NoLease(Members):
    """As if every lease ran out under a stalled process: the check after commit must hold."""

    @contextlib.asynccontextmanager
    async def _invite_lease(self):
        yield


async def test_without_the_lease_the_check_after_commit_reverses_a_cycle(store: Store):
    # each bind that sees its own edge in a cycle reverses it: safe, if more than needed
    await _triangles(store, _NoLease(store, RULES), least_bound=0)
