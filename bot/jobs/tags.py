"""tags (every 5 minutes): marks WeCom contacts with their tier and RFM segment as corp tags,
so staff can filter customers by them in the WeCom app.

The tag groups (``wecom.tier_tag_group``, 会员等级, one tag per tier; ``wecom.rfm_tag_group``,
one tag per segment) are looked up with ``get_corp_tag_list`` and created with
``add_corp_tag`` only when missing (under a short store lock, so two processes never create
one twice); their ids are cached in the store. Each ``wecom_tag`` outbox row (committed with
the change of tier or segment, see :mod:`bot.rules.wecom_tags`) becomes one ``mark_tag`` for
the member's owner: the member's rows are claimed (``tag_pending`` → ``tag_sending``, a
compare-and-set), the newest state is marked (its tags added, the group's other tags
removed, so a mark is absolute and a retry after a crash changes nothing), then ``tag_done``.
At most 5 calls at once (WeCom's concurrency limit for mark_tag). WeCom keeps tags per staff
relation, so a new owner (a handover taken over, a new relation) gets a mark of its own,
committed with the change of owner; while a member waits for a new owner its rows wait too.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import orjson

from storage import OutboxRow

from .. import keys
from ..channels.wecom import WeComConfigError, WeComError, WeComRateLimited
from ..context import Context
from ..rules.rfm import SEGMENTS
from ..rules.wecom_tags import OUTBOX_KIND, OUTBOX_STATUS
from .base import Job, Progress, Summary, route, waits_for_owner
from .schedule import Every, Schedule

log = logging.getLogger("memberbot.tags")

KIND = "tags"
TITLE = "会员等级与 RFM 客户标签（企业微信）"
PAGE = 10_000
CONCURRENCY = 5  # WeCom: at most 5 mark_tag calls at once per corp
SENDING, DONE, SKIPPED, FAILED = "tag_sending", "tag_done", "tag_skipped", "tag_failed"
TAG_IDS_TTL = 86400


def schedule(rules: object) -> Schedule:
    return Every(300)


def groups(env: Context) -> dict[str, list[str]]:
    """The tag groups memberbot keeps: group name → tag names."""
    return {env.rules.wecom["tier_tag_group"]: [t.name for t in env.rules.tiers],
            env.rules.wecom["rfm_tag_group"]: list(dict.fromkeys(SEGMENTS.values()))}


async def tag_ids(env: Context) -> dict[str, dict[str, str]]:
    """group name → tag name → tag id, creating what is missing (once)."""
    want = groups(env)
    raw = await env.members.cached(keys.WECOM_TAG_IDS)
    if raw:
        cached = orjson.loads(raw)
        if all(set(names) <= set(cached.get(g, {})) for g, names in want.items()):
            return cached
    lock = keys.token_lock(keys.WECOM_TAG_IDS)
    if not await env.members.cache(lock, env.sid, ttl=30, only_new=True):
        raise WeComError(-1, "another process is creating the tag groups", "add_corp_tag")
    try:
        have: dict[str, dict[str, str]] = {}
        ids: dict[str, str] = {}
        for g in await env.wecom.get_corp_tag_list():
            if g.get("deleted"):
                continue
            have[g["group_name"]] = {t["name"]: t["id"] for t in g.get("tag") or []
                                     if not t.get("deleted")}
            ids[g["group_name"]] = g.get("group_id", "")
        for name, tags in want.items():
            missing = [t for t in tags if t not in have.get(name, {})]
            if missing:
                g = await env.wecom.add_corp_tag(name, missing, ids.get(name, ""))
                have.setdefault(name, {}).update({t["name"]: t["id"] for t in g.get("tag") or []})
        await env.members.cache(keys.WECOM_TAG_IDS, orjson.dumps(have).decode(),
                                ttl=TAG_IDS_TTL)
        return have
    finally:
        await env.members.forget(lock, expect=env.sid)


def _ids(rows: list[OutboxRow], env: Context, ids: dict[str, dict[str, str]]
         ) -> tuple[list[str], list[str]]:
    """add, remove: the newest row's tags, and the other tags of the two groups."""
    last = max(rows, key=lambda r: r.period).data
    tier_g, rfm_g = env.rules.wecom["tier_tag_group"], env.rules.wecom["rfm_tag_group"]
    add = [ids[tier_g][last["tier"]]] if last.get("tier") in ids[tier_g] else []
    if last.get("rfm") in ids[rfm_g]:
        add.append(ids[rfm_g][last["rfm"]])
    everything = [*ids[tier_g].values(), *ids[rfm_g].values()]
    return add, [i for i in everything if i not in add]


async def _member(env: Context, mid: str, rows: list[OutboxRow], ids: dict,
                  summary: Summary, sem: asyncio.Semaphore) -> None:
    mine = [r for r in rows if await env.members.move_row(r.id, SENDING, {"at": int(env.wall())},
                                                          expect=r.status)]
    if not mine:
        return
    m = await env.members.get(mid)
    if m is not None and waits_for_owner(m, env):  # marked for the new owner, later
        for row in mine:
            await env.members.move_row(row.id, OUTBOX_STATUS, expect=SENDING)
        summary.held["no_owner"] += 1
        return
    r = route(m, env) if m is not None else None
    if r is None or r[0] != "wecom":  # no WeCom relation any more: nothing to mark
        for row in mine:
            await env.members.move_row(row.id, SKIPPED, expect=SENDING)
        summary.skipped["no_contact"] += 1
        return
    add, remove = _ids(mine, env, ids)
    try:
        async with sem:
            await env.wecom.mark_tag(r[1], r[2], add, remove)
    except (WeComConfigError, WeComRateLimited):
        for row in mine:  # certainly not marked: pending again
            await env.members.move_row(row.id, OUTBOX_STATUS, expect=SENDING)
        raise
    except WeComError as e:
        for row in mine:
            await env.members.move_row(row.id, FAILED, {"error": e.errcode}, expect=SENDING)
        summary.failed[e.errcode] += 1
        return
    for row in mine:
        await env.members.move_row(row.id, DONE, {"add": add}, expect=SENDING)
    summary.tagged += 1


async def run(env: Context, now: datetime, *, dry_run: bool, summary: Summary,
              progress: Progress) -> None:
    """Mark every member with pending tag rows (and rows a dead run left sending)."""
    rows = await env.members.outbox_rows(status=OUTBOX_STATUS, kind=OUTBOX_KIND, limit=PAGE)
    rows += [r for r in await env.members.outbox_rows(status=SENDING, kind=OUTBOX_KIND, limit=PAGE)
             if env.wall() - float(r.data.get("at", 0)) > env.lease]
    by_member: dict[str, list[OutboxRow]] = {}
    for r in rows:
        by_member.setdefault(r.member_id, []).append(r)
    summary.candidates = summary.due = len(by_member)
    progress.start(len(by_member))
    if dry_run or env.wecom is None or not by_member:
        return
    try:
        ids = await tag_ids(env)
        sem = asyncio.Semaphore(CONCURRENCY)
        await asyncio.gather(*(_member(env, mid, rs, ids, summary, sem)
                               for mid, rs in by_member.items()))
    except (WeComConfigError, WeComRateLimited) as e:
        summary.held_by_wecom(e)
        log.warning("tag marks stopped: %s", e)
    except WeComError as e:
        summary.failed[e.errcode] += 1
        log.warning("tag marks stopped: %s", e)
    progress.advance(len(by_member))


JOB = Job(KIND, TITLE, schedule, run=run)
