"""Profile bonus (PRODUCT.md 2.3): the birthday is set once and earns 50 points once."""

from __future__ import annotations

import pytest

from bot.rules import Refusal, points
from bot.rules.orders import set_birthday
from bot.rules.timeutil import local_day

from .support import RULES, SH, ledger_points, new_member, sh


def test_setting_the_birthday_earns_50_points_once():
    m = new_member()
    now = sh(2025, 4, 1)
    result, entries = set_birthday(m, "1990-05-20", now, RULES)
    assert result == {"points": 50, "balance": 50}
    assert m.birthday == "1990-05-20"
    assert ledger_points(entries) == 50
    assert [e.kind for e in entries] == ["profile", "credit"]
    assert points.balance(m, local_day(now, SH)) == 50


def test_a_second_birthday_is_refused_and_changes_nothing():
    m = new_member()
    set_birthday(m, "1990-05-20", sh(2025, 4, 1), RULES)
    before = m.to_dict()
    for day in ("1991-01-01", "1990-05-20"):
        with pytest.raises(Refusal) as exc:
            set_birthday(m, day, sh(2025, 4, 2), RULES)
        assert exc.value.code == "birthday_set"
    assert m.to_dict() == before


@pytest.mark.parametrize("text", ["1990/05/20", "1990-13-01", "1990-02-30", "May 20", "",
                                  "1899-12-31", "2025-04-02"])
def test_bad_birthdays_are_refused(text):
    m = new_member()
    with pytest.raises(Refusal) as exc:
        set_birthday(m, text, sh(2025, 4, 1), RULES)  # 2025-04-02 is in the future
    assert exc.value.code == "bad_birthday"
    assert (m.birthday, m.lots, m.profile_rewarded) == (None, [], False)
