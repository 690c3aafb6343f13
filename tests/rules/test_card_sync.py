"""The pure card step (rules/card.py): one entry per change of balance or tier of an active
card, absolute bonus and delta, why in ≤ 14 characters, nothing for anyone else."""

from __future__ import annotations

from bot.rules import card
from bot.rules.models import Entry

from .support import new_member


def credit(reason: str, pts: int) -> Entry:
    return Entry("credit", 0, points=pts, data={"reason": reason})


def test_only_an_active_card_with_a_change_gets_an_entry():
    m = new_member()
    assert card.sync(m, 10, "普通会员", [credit("checkin", 10)]) is None  # no card
    m.card_code, m.card_id = "C1", "p1"
    assert card.sync(m, 10, "普通会员", [credit("checkin", 10)]) is None  # not activated
    act = card.activate(m, 10, "普通会员")
    assert act["data"]["activate"] and act["status"] == card.OUTBOX_STATUS
    assert card.sync(m, 10, "普通会员", []) is None  # nothing moved since
    e = card.sync(m, 15, "普通会员", [credit("checkin", 5)])
    assert e["data"]["bonus"] == 15 and e["data"]["add_bonus"] == 5
    assert e["data"]["record"] == "签到奖励" and not e["data"]["tier_changed"]
    assert e["period"] > act["period"]  # sequence grows: never backwards
    m.tier = "silver"
    e = card.sync(m, 15, "银卡会员", [Entry("tier_change", 0)])
    assert e["data"]["tier_changed"] and e["data"]["record"] == "等级变更"
    assert e["data"]["add_bonus"] == 0 and e["data"]["tier_name"] == "银卡会员"


def test_records_say_why_in_at_most_14_characters():
    cases = [
        ([credit("checkin", 5)], "签到奖励"),
        ([Entry("order", 0), credit("purchase", 100)], "消费积分"),
        ([Entry("spend", 0, points=-500, data={"reason": "exchange"})], "积分兑换"),
        ([Entry("expire", 0, points=-30)], "积分过期"),
        ([Entry("refund", 0), Entry("reverse", 0, points=-40)], "退款扣回积分"),
        ([Entry("refund", 0), Entry("reverse", 0, points=-40), Entry("restore", 0, points=90)],
         "退款退回积分"),
        ([credit("profile", 50)], "完善资料奖励"),
        ([credit("checkin", 5), Entry("expire", 0, points=-3)], "积分变动"),
    ]
    for entries, want in cases:
        got = card.record(entries)
        assert got == want and len(got) <= card.RECORD_MAX
