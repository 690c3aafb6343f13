"""A/B tests of lifecycle messages: a push kind may declare template variants and a holdout
share; each member is assigned by a stable hash of (experiment, member), so every run and
every process puts a member in the same arm. Holdout members are not pushed (the push is
recorded as held out), which gives the report its baseline. Pure: no I/O, no clock."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from .fields import RulesError, _int, _str
from .sections import entries

HOLDOUT = "holdout"
BUCKETS = 10_000
NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")


@dataclass(frozen=True)
class Variant:
    key: str
    weight: int = 1
    template: str = ""  # a template name (MEMBERBOT_TEMPLATES first); "" = the kind's own
    text: str = ""  # or the message itself, a jinja template with the kind's facts


@dataclass(frozen=True)
class Experiment:
    name: str
    kind: str  # the push kind (lifecycle job) it tests
    holdout_percent: int
    conversion_days: int  # a purchase or a check-in this many days after counts
    variants: tuple[Variant, ...]
    active: bool = True


def parse(items: Any) -> tuple[Experiment, ...]:
    """The ``[[experiments]]`` tables; an error names the field."""
    out: list[Experiment] = []
    known = {"name", "kind", "holdout_percent", "conversion_days", "variants", "active"}
    for p, e in entries(items, "experiments", known, RulesError):
        e = {"holdout_percent": 10, "conversion_days": 7, "active": True, **e}
        name = _str(e, "name", p)
        if not NAME.fullmatch(name):
            raise RulesError(f"{p}.name: must be lower-case letters, digits and _, got {name!r}")
        holdout = _int(e, "holdout_percent", p)
        if holdout > 90:
            raise RulesError(f"{p}.holdout_percent: at most 90, got {holdout}")
        if not isinstance(e["active"], bool):
            raise RulesError(f"{p}.active: must be true or false")
        if not e.get("variants"):
            raise RulesError(f"{p}.variants: must be a list of [[experiments.variants]] tables")
        variants = tuple(_variant(v, vp) for vp, v in entries(
            e["variants"], f"{p}.variants", {"key", "weight", "template", "text"}, RulesError))
        if len({v.key for v in variants}) != len(variants):
            raise RulesError(f"{p}.variants: variant keys must be unique")
        exp = Experiment(name, _str(e, "kind", p), holdout,
                         _int(e, "conversion_days", p, minimum=1), variants, e["active"])
        if any(o.name == name for o in out):
            raise RulesError(f"{p}.name: duplicate experiment {name!r}")
        if exp.active and any(o.active and o.kind == exp.kind for o in out):
            raise RulesError(f"{p}.kind: another active experiment tests {exp.kind!r}")
        out.append(exp)
    return tuple(out)


def _variant(v: dict[str, Any], p: str) -> Variant:
    v = {"weight": 1, "template": "", "text": "", **v}
    key = _str(v, "key", p)
    if not NAME.fullmatch(key) or key == HOLDOUT:
        raise RulesError(f"{p}.key: lower-case letters, digits and _, not {HOLDOUT!r}; "
                         f"got {key!r}")
    for f in ("template", "text"):
        if not isinstance(v[f], str):
            raise RulesError(f"{p}.{f}: must be a text")
    if v["template"] and v["text"]:
        raise RulesError(f"{p}.text: give a template or a text, not both")
    if v["template"] and (v["template"].startswith("/") or ".." in v["template"]):
        raise RulesError(f"{p}.template: a name inside the templates folder, got "
                         f"{v['template']!r}")
    return Variant(key, _int(v, "weight", p, minimum=1), v["template"], v["text"])


def check_kinds(experiments: tuple[Experiment, ...], kinds: tuple[str, ...]) -> None:
    """Each experiment tests a push kind that exists."""
    for i, e in enumerate(experiments):
        if e.kind not in kinds:
            raise RulesError(f"experiments[{i}].kind: unknown push kind {e.kind!r} (known: "
                             f"{', '.join(kinds)})")


def for_kind(experiments: tuple[Experiment, ...], kind: str) -> Experiment | None:
    return next((e for e in experiments if e.active and e.kind == kind), None)


def find(experiments: tuple[Experiment, ...], name: str) -> Experiment | None:
    return next((e for e in experiments if e.name == name), None)


def _hash(exp: Experiment, member_id: str) -> bytes:
    return hashlib.sha256(f"{exp.name}\x00{member_id}".encode()).digest()


def assign(exp: Experiment, member_id: str) -> str:
    """The member's arm: ``holdout`` or a variant key, stable for (experiment, member).
    The holdout and the variant draw on different bits, so changing the holdout share
    moves members between holdout and treatment only, never between variants."""
    h = _hash(exp, member_id)
    if int.from_bytes(h[:4], "big") % BUCKETS < exp.holdout_percent * BUCKETS // 100:
        return HOLDOUT
    pick = int.from_bytes(h[4:8], "big") % sum(v.weight for v in exp.variants)
    for v in exp.variants:
        if pick < v.weight:
            return v.key
        pick -= v.weight
    raise AssertionError("unreachable")


def variant(exp: Experiment, key: str) -> Variant | None:
    return next((v for v in exp.variants if v.key == key), None)
