"""The member card shows pending purchase points apart (issue 17 item 3), when the card
defines ``pending_field_name``: the card's second custom field, kept in sync like the bonus."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

from bot.card_sync import CardSync
from bot.channels.wechat_card import card_payload
from bot.rules import card
from bot.rules.config import DEFAULTS, _merge, build_rules
from bot.rules.models import Entry
from storage.base import OutboxRow

from .support import new_member


def card_section(**over) -> dict:
    text = (Path(__file__).resolve().parents[2] / "docs" / "card.md").read_text(encoding="utf-8")
    data = tomllib.loads(re.search(r"```toml\n(.*?)```", text, re.S).group(1))
    return {**data["card"], **over}


def test_the_card_defines_the_pending_field_only_when_named():
    plain = build_rules(_merge(DEFAULTS, {"card": card_section()}))
    assert "custom_field2" not in card_payload(plain.card, plain.tiers)
    named = build_rules(_merge(DEFAULTS, {"card": card_section(pending_field_name="待生效")}))
    assert card_payload(named.card, named.tiers)["custom_field2"] == {"name": "待生效"}


def test_pending_points_moving_is_a_card_update_of_the_second_field():
    m = new_member(card_code="C1", card_id="p1")
    card.activate(m, 0, "普通会员")
    # an order whose points are pending: the balance stays, the pending field moves
    e = card.sync(m, 0, "普通会员", [Entry("order", 0), Entry("pending", 0)], 120)
    assert e["data"]["pending"] == 120 and e["data"]["add_bonus"] == 0
    assert e["data"]["record"] == "消费积分待生效"
    assert card.sync(m, 0, "普通会员", [], 120) is None  # nothing moved since
    # they mature: the bonus rises and the pending field falls to 0
    matured = Entry("credit", 0, points=120, data={"reason": "purchase", "matured": "x"})
    e2 = card.sync(m, 120, "普通会员", [matured], 0)
    assert (e2["data"]["add_bonus"], e2["data"]["pending"]) == (120, 0)
    assert e2["data"]["record"] == "待生效积分到账"
    # the sync sends the latest pending value as the second custom field
    rows = [OutboxRow(str(i), "m", "card", x["period"], "card_pending", 0, x["data"])
            for i, x in enumerate((e, e2))]
    body = CardSync._update(SimpleNamespace(notify_points=False), rows)
    assert body["custom_field_value2"] == "0分" and body["add_bonus"] == 120
    # a card that does not show them is not touched by pending points
    m2 = new_member(card_code="C2", card_id="p1")
    card.activate(m2, 0, "普通会员")
    assert card.sync(m2, 0, "普通会员", [Entry("pending", 0)], None) is None
