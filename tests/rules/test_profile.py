"""Profile bonus (PRODUCT.md 2.3): a complete profile (phone and birthday, however they were
set) earns 50 points once; the birthday is set once."""

from __future__ import annotations

import pytest

from bot.rules import Refusal, points, profile
from bot.rules.orders import set_birthday
from bot.rules.timeutil import local_day

from .support import RULES, SH, ledger_points, new_member, sh


def test_the_birthday_alone_earns_nothing_phone_and_birthday_earn_50_once():
    m = new_member()
    now = sh(2025, 4, 1)
    result, entries = set_birthday(m, "1990-05-20", now, RULES)
    assert result == {"points": 0, "balance": 0, "complete": False}
    assert m.birthday == "1990-05-20" and [e.kind for e in entries] == ["profile"]
    result, entries = profile.update(m, now, RULES, phone="+86 138 0013 8000")
    assert m.phone == "13800138000"
    assert result["points"] == 50 and result["changed"] == ["phone"] and result["complete"]
    assert ledger_points(entries) == 50
    assert [e.kind for e in entries] == ["profile", "credit"]
    assert points.balance(m, local_day(now, SH)) == 50
    # another phone later, a gender: nothing more
    result, entries = profile.update(m, now, RULES, phone="13900139000", gender="女")
    assert result["points"] == 0 and ledger_points(entries) == 0 and m.gender == "女"


def test_phone_first_then_birthday_earns_50():
    m = new_member()
    now = sh(2025, 4, 1)
    assert profile.update(m, now, RULES, phone="13800138000")[0]["points"] == 0
    result, entries = set_birthday(m, "1990-05-20", now, RULES)
    assert result == {"points": 50, "balance": 50, "complete": True}
    assert ledger_points(entries) == 50


def test_the_card_form_gives_both_at_once_and_a_second_form_nothing():
    m = new_member()
    now = sh(2025, 4, 1)
    res, entries = profile.update(m, now, RULES, phone="13800138000", birthday="1990-5-20",
                                  gender="男", source="card")
    assert res["points"] == 50 and (m.birthday, m.gender) == ("1990-05-20", "男")
    res, entries = profile.update(m, now, RULES, phone="13800138000", birthday="1991-01-01",
                                  source="card")
    assert res["points"] == 0 and m.birthday == "1990-05-20" and entries == []
    with pytest.raises(Refusal) as exc:
        profile.update(m, now, RULES, birthday="1991-01-01")  # chat: refused, not ignored
    assert exc.value.code == "birthday_set"


@pytest.mark.parametrize("text", ["12345", "phone", "138 0013 8000 12345 678", ""])
def test_bad_phones_are_refused(text):
    m = new_member()
    with pytest.raises(Refusal) as exc:
        profile.update(m, sh(2025, 4, 1), RULES, phone=text)
    assert exc.value.code == "bad_phone" and m.phone is None


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
