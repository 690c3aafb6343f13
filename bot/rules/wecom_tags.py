"""Tier and RFM segment as WeCom corp tags (企业客户标签): the pure step that notices a change.

A member with a WeCom relation carries the tags memberbot last asked WeCom to mark
(``wecom_tags``: tier name, segment). When either differs after a step, one ``wecom_tag``
outbox entry with the new state is committed with that step (its own status, so the push
sender never takes it), numbered by ``tag_seq``: exactly one entry per change, never lost.
"""

from __future__ import annotations

from typing import Any

from .models import Member

OUTBOX_KIND = "wecom_tag"
OUTBOX_STATUS = "tag_pending"  # its own statuses: the push sender never takes tag rows


def wanted(m: Member, tier_name: str) -> dict[str, str]:
    """The tags a member's WeCom contact should carry: its tier's name, its RFM segment."""
    return {"tier": tier_name, "rfm": m.rfm or ""}


def mark(m: Member, tier_name: str) -> dict[str, Any] | None:
    """The outbox entry that marks a linked member's new tier or segment, or None when WeCom
    already has (or was asked for) these tags or the member has no WeCom relation."""
    if not m.external_userid:
        return None
    want = wanted(m, tier_name)
    if m.wecom_tags == want:
        return None
    before = dict(m.wecom_tags)
    m.wecom_tags = want
    m.tag_seq += 1
    return {"kind": OUTBOX_KIND, "period": f"{m.tag_seq:010d}", "status": OUTBOX_STATUS,
            "data": {**want, "before": before}}


def remark(m: Member, tier_name: str, owner: str) -> dict[str, Any] | None:
    """The outbox entry that marks a linked member's tags again because its owner changed
    (a handover, a new staff relation): WeCom keeps tags per staff relation, so the new
    owner's relation carries none of them yet. None without a WeCom relation or tags."""
    if not m.external_userid or not owner:
        return None
    before = dict(m.wecom_tags)
    m.wecom_tags = wanted(m, tier_name)
    m.tag_seq += 1
    return {"kind": OUTBOX_KIND, "period": f"{m.tag_seq:010d}", "status": OUTBOX_STATUS,
            "data": {**m.wecom_tags, "before": before, "owner": owner}}
