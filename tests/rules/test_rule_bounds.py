"""Numbers of the rules file that no setting means: ``nan``/``inf`` anywhere, and whole
numbers so large that a date, a sum or a stored counter built from them overflows (issue 17
review). Each is refused at load with an error naming the field, never a traceback later."""

from __future__ import annotations

import pytest

from bot.rules import RulesError, load_rules
from bot.rules.config import RUNG_MAX
from bot.rules.fields import MAX_DAYS, MAX_WHOLE, bound

HUGE = "99999999999999999999"  # past SQLite's INTEGER


def load(tmp_path, text: str):
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return load_rules(path)


CAMPAIGN = '[[campaigns]]\nkey = "a"\nname = "A"\n'


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
@pytest.mark.parametrize(("text", "field"), [
    (CAMPAIGN + "multiplier = {v}\n", "campaigns[0].multiplier"),
    (CAMPAIGN + "multiplier = 2\nbudget = {v}\n", "campaigns[0].budget"),
    ("[points]\npending_days = {v}\n", "points.pending_days"),
    ('[[catalogue]]\ncoupon = "points_500"\npoints = {v}\n', "catalogue[0].points"),
    ("[grace]\nwarning_days = [30, {v}]\n", "grace.warning_days[1]"),
    ("[push]\nanything = {{ deep = [{v}] }}\n", "push.anything.deep[0]"),
])
def test_nan_and_inf_are_refused_naming_the_field(tmp_path, text, field, value):
    with pytest.raises(RulesError, match=r"must be a finite number") as exc:
        load(tmp_path, text.format(v=value))
    assert f": {field}: " in str(exc.value)


@pytest.mark.parametrize(("text", "field", "top"), [
    ("[points]\npending_days = 100000000\n", "points.pending_days", MAX_DAYS),
    (f"[points]\npending_days = {HUGE}\n", "points.pending_days", MAX_DAYS),
    ("[points]\nexpiry_months = 100000\n", "points.expiry_months", 1_200),
    ("[points]\npoints_per_yuan = 100000\n", "points.points_per_yuan", 1_000),
    (f'[[catalogue]]\ncoupon = "points_500"\npoints = 500\nstock = {HUGE}\n',
     "catalogue[0].stock", MAX_WHOLE),
    (f'[[catalogue]]\ncoupon = "points_500"\npoints = {HUGE}\n', "catalogue[0].points",
     MAX_WHOLE),
    (CAMPAIGN + "multiplier = 2\nbudget = 9223372036854775807\n", "campaigns[0].budget",
     MAX_WHOLE),
    ("[grace]\nwarning_days = [30, 1000000]\n", "grace.warning_days[1]", MAX_DAYS),
    ("[push]\nexpiry_warning_days = [30, 1000000]\n", "push.expiry_warning_days[1]",
     MAX_DAYS),
    ("[push]\ndormant_days = 1000000\n", "push.dormant_days", MAX_DAYS),
    ("[checkin]\ncap = 10000000000\n", "checkin.cap", MAX_WHOLE),
    ("[rfm]\nrecency_days = 1000000\n", "rfm.recency_days", MAX_DAYS),
    ("[wecom]\nremind_after_minutes = 10000000000000\n", "wecom.remind_after_minutes",
     MAX_DAYS * 24 * 60),
    ("[invite]\nbind_window_days = 1000000\n", "invite.bind_window_days", MAX_DAYS),
    ('[[coupons]]\nkey = "x"\nname = "x"\nkind = "cash"\nthreshold_fen = 0\nvalue = 1\n'
     f"stock = {HUGE}\nper_member_limit = 1\n", "coupons[0].stock", MAX_WHOLE),
    ('[[coupons]]\nkey = "x"\nname = "x"\nkind = "cash"\nthreshold_fen = 0\nvalue = 1\n'
     "stock = 1\nper_member_limit = 1\nvalid_days = 100000\n", "coupons[0].valid_days",
     MAX_DAYS),
    ("[[invite_ladder]]\ninvites = 3\npoints = 10000000000\n", "invite_ladder[0].points",
     RUNG_MAX["points"]),
    ('[[tiers]]\nkey = "n"\nname = "n"\nmetric = "lifetime"\nthreshold_fen = 0\n'
     "multiplier = 1000\n", "tiers[0].multiplier", 10),
])
def test_whole_numbers_past_their_bound_are_refused_naming_the_field(tmp_path, text, field,
                                                                      top):
    with pytest.raises(RulesError, match=rf"must be at most {top:_}, got") as exc:
        load(tmp_path, text)
    assert f": {field}: " in str(exc.value)


@pytest.mark.parametrize("value", ["1e308", "-1e308", "99999999999999999999.0"])
def test_a_huge_multiplier_is_refused_naming_the_field(tmp_path, value):
    with pytest.raises(RulesError, match=r": campaigns\[0\]\.multiplier: must be from 1.1"):
        load(tmp_path, CAMPAIGN + f"multiplier = {value}\n")


def test_the_bounds_follow_the_unit_and_the_defaults_are_within_them(tmp_path):
    assert bound("pending_days") == bound("warning_days") == MAX_DAYS
    assert bound("months") == 1_200 and bound("valid_hours") == MAX_DAYS * 24
    assert bound("stock") == bound("budget") == MAX_WHOLE
    # the largest values still load
    r = load(tmp_path, f"[points]\npending_days = {MAX_DAYS}\n"
             f'[[catalogue]]\ncoupon = "points_500"\npoints = 500\nstock = {MAX_WHOLE}\n'
             + CAMPAIGN + f"multiplier = 10\nbudget = {MAX_WHOLE}\n")
    assert r.points["pending_days"] == MAX_DAYS and r.catalogue[0].stock == MAX_WHOLE
    assert r.campaigns[0].budget == MAX_WHOLE
