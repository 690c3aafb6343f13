"""Push targets: an operator restricts a lifecycle kind to members carrying a tier or RFM
segment tag (the tags of ``wecom.tier_tag_group`` / ``wecom.rfm_tag_group``).

Rules file, per kind (each list optional; a member is in the target when its tier is one of
``tiers`` and its segment one of ``segments``, for the lists given)::

    [push.targets.wakeup]
    tiers = ["gold", "black"]            # tier keys
    segments = ["重要挽留客户"]          # RFM segment names

A kind without an entry goes to everyone due, as before.
"""

from __future__ import annotations

from typing import Any

from .config import RulesError
from .models import Member
from .rfm import SEGMENTS

FIELDS = ("tiers", "segments")


def parse(raw: Any, kinds: tuple[str, ...], tier_keys: tuple[str, ...]
          ) -> dict[str, dict[str, list[str]]]:
    """``push.targets`` checked: kind → {"tiers": [...], "segments": [...]} (lists given
    only). A wrong entry is a :class:`RulesError` naming its key."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RulesError("push.targets: must be a table of [push.targets.<kind>] tables")
    segments = tuple(dict.fromkeys(SEGMENTS.values()))
    out: dict[str, dict[str, list[str]]] = {}
    for kind, entry in raw.items():
        p = f"push.targets.{kind}"
        if kind not in kinds:
            raise RulesError(f"{p}: unknown lifecycle kind {kind!r} (known: "
                             f"{', '.join(kinds)})")
        if not isinstance(entry, dict):
            raise RulesError(f"{p}: must be a table with tiers and/or segments")
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            raise RulesError(f"{p}.{unknown[0]}: unknown setting (known: tiers, segments)")
        if not entry:
            raise RulesError(f"{p}: name tiers and/or segments (or leave the kind out)")
        t: dict[str, list[str]] = {}
        for name, known in (("tiers", tier_keys), ("segments", segments)):
            if name not in entry:
                continue
            v = entry[name]
            if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
                raise RulesError(f"{p}.{name}: must be a non-empty list of texts")
            bad = [x for x in v if x not in known]
            if bad:
                raise RulesError(f"{p}.{name}: unknown {name[:-1]} {bad[0]!r} (known: "
                                 f"{', '.join(known)})")
            t[name] = list(dict.fromkeys(v))
        out[kind] = t
    return out


def of(push: dict[str, Any], kind: str) -> dict[str, list[str]] | None:
    """The target of ``kind`` in the rules' ``push`` section, or None (everyone)."""
    return (push.get("targets") or {}).get(kind)


def in_target(push: dict[str, Any], kind: str, m: Member) -> bool:
    """Whether ``m`` (as of now: its tier, its segment) is in ``kind``'s target."""
    t = of(push, kind)
    if not t:
        return True
    if "tiers" in t and m.tier not in t["tiers"]:
        return False
    return "segments" not in t or (m.rfm or "") in t["segments"]
