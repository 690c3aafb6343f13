"""The rules file (PRODUCT.md 2, 8): defaults, TOML overrides, errors that name the field."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from bot.rules import DEFAULTS, RulesError, load_rules
from bot.rules.checkin import streak_points


def write(tmp_path, text):
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_defaults_are_the_product_numbers():
    rules = load_rules()
    assert rules.tz == ZoneInfo("Asia/Shanghai")
    assert rules.points["expiry_months"] == 12
    assert (rules.points["redeem_points_per_yuan"], rules.points["redeem_min_points"]) == (
        100, 500)
    assert rules.points["profile_bonus"] == 50
    assert [(t.key, t.metric, t.threshold_fen, t.multiplier) for t in rules.tiers] == [
        ("normal", "lifetime", 0, 1), ("silver", "lifetime", 300_000, 2),
        ("gold", "trailing12", 1_500_000, 2), ("black", "trailing12", 5_000_000, 2)]
    assert (rules.grace_months, rules.grace_warning_days) == (6, (30, 7))
    assert rules.invite == {"inviter_points": 50, "invitee_points": 50, "daily_cap": 20,
                            "bind_window_days": 7}
    assert sorted(rules.coupons) == sorted(["welcome", "wakeup", "birthday",
                                            "memberday_silver", "memberday_gold",
                                            "points_500"])
    assert rules.next_tier("black") is None
    assert rules.next_tier("normal").key == "silver"


def test_a_file_overrides_one_number_and_keeps_the_rest(tmp_path):
    rules = load_rules(write(tmp_path, "[points]\nexpiry_months = 24\n\n"
                                       "[checkin]\ncycle_bonus = 30\n"))
    assert rules.points["expiry_months"] == 24
    assert rules.points["redeem_min_points"] == 500
    assert streak_points(7, rules) == (10, 30)
    assert len(rules.tiers) == 4
    assert DEFAULTS["points"]["expiry_months"] == 12, "the defaults are not modified"


def test_a_file_can_change_the_time_zone(tmp_path):
    rules = load_rules(write(tmp_path, 'timezone = "Europe/Berlin"\n'))
    assert rules.tz == ZoneInfo("Europe/Berlin")


TIER = ('[[tiers]]\nkey = "normal"\nname = "n"\nmetric = "lifetime"\nthreshold_fen = 0\n'
        'multiplier = 1\n\n')


@pytest.mark.parametrize(("text", "names"), [
    ('[points]\nexpiry_months = "twelve"\n', "points.expiry_months"),
    ("[points]\nexpiry_months = -1\n", "points.expiry_months"),
    ("[points]\nexpiry_month = 12\n", "points.expiry_month"),
    ("[invite]\ndaily_cap = 2.5\n", "invite.daily_cap"),
    ("colour = 1\n", "colour"),
    (TIER + '[[tiers]]\nkey = "w"\nname = "w"\nmetric = "weekly"\nthreshold_fen = 10\n'
     "multiplier = 1\n", "tiers[1].metric"),
    ('timezone = "Mars/Olympus"\n', "timezone"),
    ('[[coupons]]\nkey = "x"\nname = "x"\nkind = "gift"\nthreshold_fen = 0\nvalue = 1\n'
     "stock = 1\nper_member_limit = 1\n", "coupons[0].kind"),
    ("[push]\nquiet_start = \"25:00\"\n", "push.quiet_start"),
    ("[grace]\nwarning_days = [30, -7]\n", "grace.warning_days"),
    ('[[catalogue]]\ncoupon = "nope"\npoints = 500\n', "catalogue[0].coupon"),
    ('[[catalogue]]\ncoupon = "points_500"\npoints = 100\n', "catalogue[0].points"),
])
def test_a_wrong_file_is_refused_naming_the_field(tmp_path, text, names):
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as exc:
        load_rules(path)
    message = str(exc.value)
    assert names in message
    assert str(path) in message


def test_invalid_toml_is_refused_naming_the_file(tmp_path):
    path = write(tmp_path, "[points\nexpiry_months = 12\n")
    with pytest.raises(RulesError, match="not valid TOML") as exc:
        load_rules(path)
    assert str(path) in str(exc.value)


def test_a_missing_file_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(RulesError, match="cannot read") as exc:
        load_rules(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("text", ["points = 5\n", "grace = 3\n", "push = 1\n", "catalogue = [1]\n",
                                  "catalogue = 1\n"])
def test_a_section_of_the_wrong_shape_is_a_rules_error(tmp_path, text):
    with pytest.raises(RulesError, match=text.split(" ")[0]):
        load_rules(write(tmp_path, text))


def test_documented_example_file_is_exactly_the_defaults():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "docs" / "rules.example.toml"
    assert load_rules(example) == load_rules()
