"""The job registry: every lifecycle kind, declared once by its module's ``JOB``.

The list of kinds, the scheduler's triggers, the daily cap's default order (checked against
the rules file's ``push.priority``), the admin job table and ``jobs list`` all derive from
:data:`JOBS`. A new kind is a module with a ``JOB``, one line below, and its template.
"""

from __future__ import annotations

import dataclasses
import logging

from ..rules import targets
from ..rules.config import Rules, RulesError, push_priority
from ..rules.experiments import check_kinds
from ..rules.models import Member
from ..settings import Settings, rules_for
from ..templating import check_source, describe_failure, use
from . import (
    birthday,
    confirm,
    coupon_expiry,
    demotion_warning,
    dormant,
    handover,
    housekeeping,
    member_day,
    outbox,
    points_expiry,
    reconcile,
    tags,
    tier_upgrade,
    wakeup,
    welcome,
)
from .base import Job, render_push

log = logging.getLogger("memberbot.jobs")

JOBS: dict[str, Job] = {j.kind: j for j in (
    member_day.JOB, birthday.JOB, points_expiry.JOB, dormant.JOB, wakeup.JOB,
    demotion_warning.JOB, coupon_expiry.JOB, tier_upgrade.JOB, welcome.JOB, housekeeping.JOB,
    outbox.JOB, confirm.JOB, reconcile.JOB, tags.JOB, handover.JOB,
)}


def kinds() -> tuple[str, ...]:
    return tuple(JOBS)


def default_priority() -> tuple[str, ...]:
    """The push kinds in the daily cap's default order (each job's ``priority``)."""
    push = [j for j in JOBS.values() if j.push]
    return tuple(j.kind for j in sorted(push, key=lambda j: j.priority or len(JOBS) + 1))


class UnknownJob(KeyError):
    def __str__(self) -> str:
        return f"unknown job kind {self.args[0]!r} (known: {', '.join(JOBS)})"


def job(kind: str) -> Job:
    """The declaration of job ``kind``."""
    try:
        return JOBS[kind]
    except KeyError:
        raise UnknownJob(kind) from None


def lifecycle() -> tuple[str, ...]:
    """The kinds that push lifecycle messages: what ``push.targets`` may name."""
    return tuple(j.kind for j in JOBS.values() if j.lifecycle)


def priority(rules: Rules) -> tuple[str, ...]:
    """The daily cap's order for ``rules``: its ``push.priority``, then the rest."""
    return push_priority(rules.push["priority"], default_priority())[0]


def checked(rules: Rules) -> Rules:
    """``rules`` with ``push.priority`` checked against the registry and completed: an
    unknown kind is a :class:`RulesError` naming it; kinds it leaves out go last, with a
    warning (none when the file sets no priority at all). ``push.targets`` is checked
    against the lifecycle kinds, the tiers and the segments."""
    given = rules.push["priority"]
    order, missing = push_priority(given, default_priority())
    check_variants(rules)
    if given and missing:
        log.warning("push.priority does not name %s: placed last, in that order",
                    ", ".join(missing))
    aimed = targets.parse(rules.push.get("targets"), lifecycle(),
                          tuple(t.key for t in rules.tiers))
    return dataclasses.replace(rules, push={**rules.push, "priority": list(order),
                                            "targets": aimed})


def check_variants(rules: Rules) -> None:
    """Each A/B test's kind is a push kind, and each variant renders: its text is a
    template, its template exists, and either renders a made-up push of the kind (the job's
    ``sample``) for a member of the first tier. A :class:`RulesError` names the field."""
    check_kinds(rules.experiments, default_priority())
    member = Member(id="sample", member_code="100000000000", tier=rules.tiers[0].key)
    for i, e in enumerate(rules.experiments):
        for j, v in enumerate(e.variants):
            where = f"experiments[{i}].variants[{j}].{'text' if v.text else 'template'}"
            why = check_source(v.text) if v.text else None
            if why:
                raise RulesError(f"{where}: not a template ({why})")
            try:
                render_push(e.kind, dict(JOBS[e.kind].sample), member, rules, v)
            except Exception as err:  # whatever the template raises: the operator's to fix
                raise RulesError(f"{where}: does not render a sample {e.kind} message: "
                                 f"{describe_failure(err)}") from None


def load_rules(settings: Settings) -> Rules:
    """The rules of ``settings`` (file and ``MEMBERBOT_TZ``), checked against the jobs and
    the templates (``MEMBERBOT_TEMPLATES`` first)."""
    use(settings.templates)
    return checked(rules_for(settings))
