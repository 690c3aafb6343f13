"""The profile (完善资料): phone, birthday and gender, however they were set (chat commands,
the member card's activation form). A complete profile (phone and birthday) earns the profile
bonus once; the birthday cannot be changed once set."""

from __future__ import annotations

import re
from datetime import date, datetime

from . import points
from .config import Rules
from .models import Entry, Member, Refusal
from .timeutil import local_day, ts

PHONE = re.compile(r"^\+?\d{6,15}$")
GENDERS = {"男": "男", "女": "女", "male": "男", "female": "女", "1": "男", "2": "女",
           "MALE": "男", "FEMALE": "女", "SEX_MALE": "男", "SEX_FEMALE": "女"}


def normal_phone(text: str) -> str:
    """Digits with an optional leading +; a Chinese mobile written +86… keeps its 11 digits."""
    p = re.sub(r"[\s-]", "", text or "")
    if p.startswith("+86") and len(p) == 14:
        p = p[3:]
    if not PHONE.match(p):
        raise Refusal("bad_phone", "手机号格式不正确，例如 手机 13800138000")
    return p


def normal_birthday(text: str, now: datetime, rules: Rules) -> str:
    """``YYYY-MM-DD`` (also ``YYYYMMDD``, ``YYYY-M-D``, ``YYYY/MM/DD``) of a day not ahead."""
    found = re.fullmatch(r"\s*(\d{4})[-/.年]?(\d{1,2})[-/.月]?(\d{1,2})日?\s*", text or "")
    try:
        if not found:
            raise ValueError(text)
        y, mo, d = (int(x) for x in found.groups())
        day = date(y, mo, d)
    except ValueError as e:
        raise Refusal("bad_birthday", "生日格式应为 YYYY-MM-DD，例如 生日 1990-05-20") from e
    if not (day.year >= 1900 and day <= local_day(now, rules.tz)):
        raise Refusal("bad_birthday", "生日日期无效")
    return day.isoformat()


def reward(m: Member, now: datetime, rules: Rules) -> tuple[int, list[Entry]]:
    """The profile bonus, once, when phone and birthday are both set."""
    if m.profile_rewarded or not (m.phone and m.birthday):
        return 0, []
    m.profile_rewarded = True
    pts = rules.points["profile_bonus"]
    return pts, points.credit(m, pts, f"profile:{m.id}", now, now, rules, reason="profile")


def update(m: Member, now: datetime, rules: Rules, *, phone: str | None = None,
           birthday: str | None = None, gender: str | None = None,
           source: str = "chat") -> tuple[dict, list[Entry]]:
    """Set what is given; a birthday once set stays. Returns what changed and the reward."""
    changed: list[str] = []
    if phone is not None:
        phone = normal_phone(phone)
        if phone != m.phone:
            m.phone = phone
            changed.append("phone")
    if birthday is not None:
        birthday = normal_birthday(birthday, now, rules)
        if m.birthday is None:
            m.birthday = birthday
            changed.append("birthday")
        elif m.birthday != birthday and source == "chat":
            raise Refusal("birthday_set", "生日已设置，不能修改")
    if gender is not None and GENDERS.get(gender.strip()) not in (None, m.gender):
        m.gender = GENDERS[gender.strip()]
        changed.append("gender")
    entries = [Entry("profile", ts(now), data={"field": f, "source": source}) for f in changed]
    pts, more = reward(m, now, rules)
    return ({"changed": changed, "points": pts, "complete": bool(m.phone and m.birthday),
             "balance": points.balance(m, local_day(now, rules.tz))}, entries + more)
