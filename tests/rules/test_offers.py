"""Limited offers (限时爆款兑换): catalogue windows, limits and prices from the rules file."""

from __future__ import annotations

from datetime import datetime

import pytest

from bot.rules import Refusal, RulesError, load_rules
from bot.rules import offers as off
from bot.rules.models import Coupon, Member

from .support import rules_file

SH = load_rules().tz
OFFERS = '''
[[catalogue]]
coupon = "points_500"
points = 500

[[catalogue]]
key = "flash"
name = "限时爆款 ¥5券"
coupon = "points_500"
points = 500
cash_fen = 990
start = 2026-12-05T10:00:00
end = 2026-12-07
stock = 100
per_member_limit = 1
'''


@pytest.fixture
def rules(tmp_path):
    return rules_file(tmp_path, OFFERS)


def test_items_read_with_window_stock_limit_and_cash(rules):
    plain, flash = rules.catalogue
    assert (plain.n, plain.key, plain.limited, plain.cash_fen) == (1, "points_500", False, 0)
    assert (flash.n, flash.key, flash.stock, flash.per_member_limit, flash.cash_fen) == (
        2, "flash", 100, 1, 990)
    assert flash.start == datetime(2026, 12, 5, 10, 0, tzinfo=SH)
    assert flash.end == datetime(2026, 12, 7, 23, 59, 59, tzinfo=SH)  # a date: its last second


def test_only_open_items_are_listed_and_a_closed_one_is_refused_clearly(rules):
    flash = rules.catalogue[1]
    before, inside = datetime(2026, 12, 5, 9, 59, tzinfo=SH), datetime(2026, 12, 6, tzinfo=SH)
    after = datetime(2026, 12, 8, tzinfo=SH)
    assert [o.n for o in off.open_now(rules.catalogue, before)] == [1]
    assert [o.n for o in off.open_now(rules.catalogue, inside)] == [1, 2]
    assert [o.n for o in off.open_now(rules.catalogue, after)] == [1]
    m = Member("m1", "1")
    for when, word in ((before, "尚未开始"), (after, "已结束")):
        with pytest.raises(Refusal) as e:
            off.check(m, flash, when)
        assert e.value.code == "exchange_closed" and word in e.value.message
    off.check(m, flash, inside)


def test_the_per_member_limit_counts_the_items_coupons(rules):
    flash = rules.catalogue[1]
    inside = datetime(2026, 12, 6, tzinfo=SH)
    m = Member("m1", "1", coupons=[Coupon("C1", "points_500", 0, 1, offer="points_500")])
    off.check(m, flash, inside)  # another item's coupon does not count
    m.coupons.append(Coupon("C2", "points_500", 0, 1, offer="flash"))
    with pytest.raises(Refusal) as e:
        off.check(m, flash, inside)
    assert e.value.code == "exchange_limit" and "每人限兑 1 次" in e.value.message


@pytest.mark.parametrize(("text", "field"), [
    ('[[catalogue]]\ncoupon = "points_500"\npoints = 500\nstock = -1\n', "catalogue[0].stock"),
    ('[[catalogue]]\ncoupon = "points_500"\npoints = 500\ncash_fen = "9.9"\n',
     "catalogue[0].cash_fen"),
    ('[[catalogue]]\ncoupon = "points_500"\npoints = 500\nstart = "soon"\n',
     "catalogue[0].start"),
    ('[[catalogue]]\ncoupon = "points_500"\npoints = 500\nstart = 2026-12-05\n'
     'end = 2026-12-01\n', "catalogue[0].end"),
    ('[[catalogue]]\ncoupon = "points_500"\npoints = 500\nper_member_limt = 1\n',
     "catalogue[0].per_member_limt"),
    ('[[catalogue]]\ncoupon = "points_500"\npoints = 500\n\n'
     '[[catalogue]]\ncoupon = "points_500"\npoints = 600\n', "catalogue[1].key"),
    ('[[catalogue]]\nkey = "Flash Sale"\ncoupon = "points_500"\npoints = 500\n',
     "catalogue[0].key"),
])
def test_a_wrong_item_names_the_field(tmp_path, text, field):
    with pytest.raises(RulesError) as e:
        rules_file(tmp_path, text)
    assert field in str(e.value)


def test_an_unknown_item_number_is_refused(rules):
    with pytest.raises(Refusal) as e:
        off.find(rules.catalogue, 3)
    assert e.value.code == "exchange_unknown_item"
    assert off.find(rules.catalogue, 2).key == "flash"
