"""``memberbot jobs list`` · ``memberbot jobs run KIND [--dry-run] [--as-of YYYY-MM-DD]``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, time

import click
from jinja2 import TemplateError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from storage import Store, StoreError, open_store

from .. import keys, templating
from ..context import Context, open_clients, system_clock
from ..members import Members
from ..operator import fail, load_settings
from ..rules.config import Rules, RulesError
from ..settings import Settings, SettingsError
from .base import Progress, Summary, last_run
from .registry import JOBS, UnknownJob, job, load_rules
from .runner import run_kind
from .schedule import next_run, run_at
from .welcome import NothingToRun

DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class Bar(Progress):
    """A rich progress bar on stderr (invisible when stderr is not a terminal)."""

    def __init__(self, label: str) -> None:
        console = Console(stderr=True)
        self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                                transient=True, disable=not console.is_terminal)
        self.task = self.bar.add_task(label, total=None)

    def start(self, total: int) -> None:
        self.bar.update(self.task, total=total)

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.task, n)

    def __enter__(self) -> Bar:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def as_of_time(env: Context, kind: str, day: date) -> datetime:
    """``--as-of DAY``: the job's scheduled instant on that day (interval and event jobs: when
    quiet hours end), so quiet hours never block an as-of run of a job scheduled by day."""
    end = env.rules.push["quiet_end"]
    return run_at(job(kind).schedule(env.rules), day, env.rules.tz,
                  time(int(end[:2]), int(end[3:])))


@asynccontextmanager
async def open_context(settings: Settings, *, store: Store | None = None,
                       rules: Rules | None = None) -> AsyncIterator[Context]:
    """The app context of ``settings`` for one command: its store and API clients open."""
    rules = rules or load_rules(settings)
    templating.use(settings.templates)
    own = store is None
    store = store or open_store(settings.store_url, settings.data_key)
    if own:
        await store.open()
    try:
        ctx = Context(settings, rules, store, Members(store, rules), system_clock(rules.tz))
        async with open_clients(ctx):
            yield ctx
    finally:
        if own:
            await store.close()


async def run(settings, kind: str, day: date | None, dry_run: bool,
              show: int = 0) -> tuple[Summary, dict]:
    async with open_context(settings) as env:
        now = as_of_time(env, kind, day) if day else datetime.now(env.rules.tz)
        if not dry_run:
            await env.members.ensure_stock()
        with Bar(f"{kind}{' (dry run)' if dry_run else ''}") as bar:
            summary = await run_kind(env, kind, now, dry_run=dry_run, progress=bar, show=show)
        return summary, dict(env.problems)


async def listing(settings) -> Table:
    table = Table(title="memberbot jobs")
    for col in ("kind", "schedule", "next run", "due now", "last run"):
        table.add_column(col)
    async with open_context(settings) as env:
        tz = env.rules.tz
        now = datetime.now(tz)
        for kind in JOBS:
            j = job(kind)
            s = j.schedule(env.rules)
            nxt = next_run(s, now, tz)
            due = "—"
            if kind != "welcome":
                summary = await run_kind(env, kind, now, dry_run=True)
                due = str(summary.due - summary.already)
            at, info = last_run(await env.members.cached(keys.job_last(kind)))
            result = ", ".join(f"{k}={v}" for k, v in info.items())
            table.add_row(kind, s.describe(), nxt.strftime("%Y-%m-%d %H:%M") if nxt else "—",
                          due, f"{at}\n{result}".strip() if at else "never")
    return table


def _template_error(e: TemplateError) -> str:
    return templating.describe_error(e)


def register(main: click.Group) -> None:

    @main.group()
    def jobs() -> None:
        """Lifecycle jobs: list them; run one now or as of a day."""

    @jobs.command("list")
    def list_cmd() -> None:
        """Each job: its schedule, next run, members due now, last run."""
        settings = load_settings()
        try:
            table = asyncio.run(listing(settings))
        except (StoreError, RulesError, SettingsError) as e:
            fail(str(e))
        except TemplateError as e:
            fail(_template_error(e))
        Console().print(table)

    @jobs.command("run")
    @click.argument("kind")
    @click.option("--dry-run", is_flag=True, help="render and count; send and change nothing")
    @click.option("--as-of", "as_of", metavar="YYYY-MM-DD",
                  help="run as at the job's scheduled time on that day")
    @click.option("--show", type=click.IntRange(0, 1000), default=0, metavar="N",
                  help="with --dry-run: print N rendered messages and whom they are for "
                       "(member code and phone masked)")
    def run_cmd(kind: str, dry_run: bool, as_of: str | None, show: int) -> None:
        """Run job KIND now (or --as-of a day) and deliver what it enqueued."""
        if kind not in JOBS:
            fail(str(UnknownJob(kind)))
        if kind == "welcome":
            fail(str(NothingToRun()))
        if show and not dry_run:
            fail("--show previews messages: use it with --dry-run")
        day = None
        if as_of is not None:
            try:
                if not DAY.fullmatch(as_of):
                    raise ValueError(as_of)
                day = date.fromisoformat(as_of)
            except ValueError:
                fail(f"--as-of {as_of!r} is not a date YYYY-MM-DD")
        settings = load_settings()
        try:
            today = datetime.now(load_rules(settings).tz).date()
        except RulesError as e:
            fail(str(e))
        if day is not None and not dry_run and day > today:
            fail(f"--as-of {as_of} is in the future: a real run would send and issue coupons "
                 "ahead of time; add --dry-run to preview it")
        try:
            summary, problems = asyncio.run(run(settings, kind, day, dry_run, show))
        except (StoreError, RulesError, SettingsError, NothingToRun) as e:
            fail(str(e))
        except TemplateError as e:
            fail(_template_error(e))
        for line in summary.lines() + summary.previews():
            click.echo(line)
        if problems or summary.not_rendered():
            fail("; ".join([*problems.values(), *summary.not_rendered()]))
