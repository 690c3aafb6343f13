"""A/B tests of lifecycle messages: the rules, the stable assignment, the interval."""

from __future__ import annotations

import math

import pytest

from bot.experiment_report import diff_interval
from bot.jobs.registry import checked
from bot.rules import RulesError
from bot.rules import experiments as ex

from .support import rules_file

EXP = '''
[[experiments]]
name = "expiry_msg"
kind = "points_expiry"
holdout_percent = 20
conversion_days = 7

[[experiments.variants]]
key = "a"

[[experiments.variants]]
key = "b"
weight = 3
text = "{{ points }} 积分 {{ date }} 到期，快来兑换！"
'''


def load(tmp_path, text):
    return checked(rules_file(tmp_path, text))


def test_an_experiment_is_read_from_the_rules_file(tmp_path):
    (e,) = load(tmp_path, EXP).experiments
    assert (e.name, e.kind, e.holdout_percent, e.conversion_days) == (
        "expiry_msg", "points_expiry", 20, 7)
    assert [(v.key, v.weight, bool(v.text)) for v in e.variants] == [("a", 1, False),
                                                                    ("b", 3, True)]
    assert load(tmp_path, "").experiments == ()


def test_assignment_is_stable_and_follows_the_shares(tmp_path):
    (e,) = load(tmp_path, EXP).experiments
    ids = [f"m{i:05d}" for i in range(20_000)]
    arms = [ex.assign(e, i) for i in ids]
    assert arms == [ex.assign(e, i) for i in ids]  # the same every time
    share = {a: arms.count(a) / len(ids) for a in ("holdout", "a", "b")}
    assert abs(share["holdout"] - 0.20) < 0.015
    assert abs(share["a"] - 0.20) < 0.015 and abs(share["b"] - 0.60) < 0.015
    # another experiment draws independently
    other = ex.Experiment("other", "wakeup", 20, 7, e.variants)
    same = sum(ex.assign(other, i) == a for i, a in zip(ids, arms, strict=True)) / len(ids)
    assert same < 0.6
    # a larger holdout takes members from the variants, never swaps them between variants
    wider = ex.Experiment(e.name, e.kind, 50, 7, e.variants)
    for i, a in zip(ids, arms, strict=True):
        b = ex.assign(wider, i)
        assert b == a or b == "holdout"


@pytest.mark.parametrize(("text", "field"), [
    (EXP.replace('kind = "points_expiry"', 'kind = "nope"'), "experiments[0].kind"),
    (EXP.replace("holdout_percent = 20", "holdout_percent = 95"),
     "experiments[0].holdout_percent"),
    (EXP.replace('key = "b"', 'key = "a"'), "experiments[0].variants"),
    (EXP.replace('key = "b"', 'key = "holdout"'), "experiments[0].variants[1].key"),
    (EXP.replace("{{ date }}", "{{ date "), "experiments[0].variants[1].text"),
    (EXP.replace("weight = 3", "weight = 0"), "experiments[0].variants[1].weight"),
    (EXP.replace("conversion_days = 7", "conversion_dayz = 7"),
     "experiments[0].conversion_dayz"),
    (EXP + EXP.replace('"expiry_msg"', '"again"'), "experiments[1].kind"),
    ('[[experiments]]\nname = "x"\nkind = "wakeup"\n', "experiments[0].variants"),
])
def test_a_wrong_experiment_names_the_field(tmp_path, text, field):
    with pytest.raises(RulesError) as e:
        load(tmp_path, text)
    assert field in str(e.value)


B_TEXT = 'text = "{{ points }} 积分 {{ date }} 到期，快来兑换！"'


@pytest.mark.parametrize(("variant", "field", "why"), [
    ('template = "nonexistent.j2"', "experiments[0].variants[1].template",
     "no template 'nonexistent.j2' in the built-in templates"),
    ('text = "{{ points / 0 }}"', "experiments[0].variants[1].text",
     "ZeroDivisionError: division by zero"),
    ('text = "{{ (points / 0) }} {{ nosuch.attr.x }}"', "experiments[0].variants[1].text",
     "ZeroDivisionError"),
    ('text = "{{ nosuch.attr.x }}"', "experiments[0].variants[1].text",
     "'nosuch' is undefined"),
    ('text = "{{ coupon.name }}"', "experiments[0].variants[1].text",
     "'None' has no attribute 'name'"),
    ('text = "{{ points|nofilter }}"', "experiments[0].variants[1].text", "nofilter"),
])
def test_a_variant_that_does_not_render_is_refused_when_the_rules_load(
        tmp_path, variant, field, why):
    """A missing template or a text failing at render stopped the job at the first member
    of its arm, on every run; the rules load now renders each variant once against a
    made-up push of its kind and names the field."""
    with pytest.raises(RulesError) as e:
        load(tmp_path, EXP.replace(B_TEXT, variant))
    assert str(e.value).startswith(f"{field}: does not render a sample points_expiry message")
    assert why in str(e.value)
    assert "Traceback" not in str(e.value)


def test_a_variant_template_in_the_operators_folder_is_found(tmp_path):
    from bot import templating
    from bot.jobs.registry import load_rules
    from tests.conftest import make_settings

    folder = tmp_path / "tpl"
    (folder / "ab").mkdir(parents=True)
    (folder / "ab" / "expiry_b.j2").write_text("{{ points }} 积分快到期（{{ tier_name }}）",
                                               encoding="utf-8")
    path = tmp_path / "rules.toml"
    path.write_text(EXP.replace(B_TEXT, 'template = "ab/expiry_b.j2"'), encoding="utf-8")
    try:
        rules = load_rules(make_settings(tmp_path, rules_path=str(path),
                                         templates=str(folder)))
        assert rules.experiments[0].variants[1].template == "ab/expiry_b.j2"
        with pytest.raises(RulesError, match=r"variants\[1\]\.template: .*no template "
                                             r"'ab/expiry_b.j2' in .*tpl2"):
            load_rules(make_settings(tmp_path, rules_path=str(path),
                                     templates=str(tmp_path / "tpl2")))
    finally:
        templating.use(None)


def test_each_push_kind_renders_its_own_message_with_its_sample(tmp_path):
    """The made-up push of each kind (``Job.sample``) holds every fact its template uses:
    a variant without template or text (the kind's own message) loads for every kind."""
    from bot.jobs.registry import default_priority

    for kind in default_priority():
        text = (f'[[experiments]]\nname = "t"\nkind = "{kind}"\n'
                '[[experiments.variants]]\nkey = "a"\n')
        assert load(tmp_path, text).experiments[0].kind == kind


def test_the_interval_of_the_difference_to_the_holdout():
    d, lo, hi = diff_interval(30, 100, 20, 100)
    se = math.sqrt(0.3 * 0.7 / 100 + 0.2 * 0.8 / 100)
    assert d == pytest.approx(0.10)
    assert (lo, hi) == (pytest.approx(0.10 - 1.959964 * se), pytest.approx(0.10 + 1.959964 * se))
    assert round(lo, 4) == -0.0192 and round(hi, 4) == 0.2192
    assert diff_interval(3, 10, 0, 0) is None
