"""A/B tests of lifecycle messages: the rules, the stable assignment, the interval."""

from __future__ import annotations

import pytest

from bot.experiment_report import diff_interval, verdict
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


# Newcombe RG (1998), "Interval estimation for the difference between independent
# proportions: comparison of eleven methods", Statistics in Medicine 17:873-890, Table II,
# method 10 (hybrid score, no continuity correction): the paper's examples (a)-(h) to its
# 4 decimals; the full values were computed independently with statsmodels 0.15.0,
# ``confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff")``, and
# agree with the paper's to those 4 decimals.
NEWCOMBE_1998 = [
    # x1, n1, x2, n2, difference, paper's (low, high), statsmodels' (low, high)
    (56, 70, 48, 80, 0.2, (0.0524, 0.3339), (0.05243147240236498, 0.33387265403690614)),
    (9, 10, 3, 10, 0.6, (0.1705, 0.8090), (0.1705227239345029, 0.809017973535488)),
    (6, 7, 2, 7, 4 / 7, (0.0582, 0.8062), (0.05822792748231209, 0.8062496375242278)),
    (5, 56, 0, 29, 5 / 56, (-0.0381, 0.1926), (-0.038137147903536936, 0.19256001385511165)),
    (0, 10, 0, 20, 0.0, (-0.1611, 0.2775), (-0.1611251580528194, 0.27753279986288926)),
    (0, 10, 0, 10, 0.0, (-0.2775, 0.2775), (-0.27753279986288926, 0.27753279986288926)),
    (10, 10, 0, 20, 1.0, (0.6791, 1.0), (0.6790860371419145, 1.0)),
    (10, 10, 0, 10, 1.0, (0.6075, 1.0), (0.6075093504305241, 1.0)),
]


@pytest.mark.parametrize("x1, n1, x2, n2, d, paper, reference", NEWCOMBE_1998)
def test_the_interval_is_newcombes_hybrid_score_interval(x1, n1, x2, n2, d, paper, reference):
    got = diff_interval(x1, n1, x2, n2)
    assert got[0] == pytest.approx(d)
    assert (round(got[1], 4), round(got[2], 4)) == paper
    assert got[1:] == (pytest.approx(reference[0], abs=1e-9),
                       pytest.approx(reference[1], abs=1e-9))


@pytest.mark.parametrize("x1, n1, x2, n2, reference", [
    # statsmodels 0.15.0 confint_proportions_2indep(..., method="newcomb"), as above
    (1, 1, 0, 1, (-0.12210872068194178, 1.0)),  # the plain Wald interval said [+100%, +100%]
    (0, 8, 0, 2, (-0.657619772493347, 0.32440756488388034)),  # and [+0%, +0%] here
    (3, 3, 0, 2, (0.13527884156571712, 1.0)),
    (1, 1, 1, 1, (-0.7934506856227626, 0.7934506856227626)),
    (0, 1, 0, 1, (-0.7934506856227627, 0.7934506856227627)),
    (30, 100, 20, 100, (-0.020249362153013428, 0.21673435401778593)),
])
def test_none_or_all_converted_and_tiny_samples_keep_a_width(x1, n1, x2, n2, reference):
    d, lo, hi = diff_interval(x1, n1, x2, n2)
    assert (lo, hi) == (pytest.approx(reference[0], abs=1e-9),
                        pytest.approx(reference[1], abs=1e-9))
    assert -1 <= lo < hi <= 1 and lo <= d <= hi
    assert hi - lo > 0.1


def test_the_interval_needs_both_groups():
    assert diff_interval(3, 10, 0, 0) is None
    assert diff_interval(0, 0, 3, 10) is None


@pytest.mark.parametrize("n, base_n, lo, hi, said", [
    (1, 1, -0.12, 1.0, "too_small"),  # whatever the interval: too few to conclude
    (3, 2, 0.135, 1.0, "too_small"),
    (29, 500, 0.1, 0.3, "too_small"),
    (500, 29, 0.1, 0.3, "too_small"),
    (30, 30, 0.01, 0.3, "higher"),
    (400, 90, -0.3, -0.01, "lower"),
    (400, 90, -0.02, 0.2, "no_difference"),
])
def test_the_verdict_says_when_samples_are_too_small_to_conclude(n, base_n, lo, hi, said):
    assert verdict(n, base_n, lo, hi) == said
