"""``memberbot import-orders FILE.csv``: historical orders through the store API's use case.

数据清洗: test accounts are skipped, malformed rows are rejected, and both are written to a
report (CSV: row, order_id, status, reason, detail). A test account is a row whose member
field or name matches one of the rules file's ``importer.test_accounts`` patterns as a whole
field (never a substring: a real openid may contain "test"). Rows are validated against the same
declaration as ``POST /api/orders`` and recorded with the same body hash, so importing twice,
or importing what a POS already sent, changes nothing. Columns: see docs/operators.md.
"""

from __future__ import annotations

import asyncio
import csv
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from . import keys, schema
from .members import Members
from .offline import run_with_members
from .operator import OperatorError, load_settings
from .rules.config import Rules
from .rules.models import Refusal

MEMBER_COLUMNS = schema.MEMBER_FIELDS
COLUMNS = ("order_id", *MEMBER_COLUMNS, "name", "amount_fen", "paid_at", "store_id",
           "coupon_code", "points_used")
REQUIRED = ("order_id", "amount_fen", "paid_at", "store_id")
SKIP_FIELDS = (*MEMBER_COLUMNS, "name")
REPORT_HEADER = ("row", "order_id", "status", "reason", "detail")
# a malformed field's rejection reason
FIELD_REASONS = {"amount_fen": "bad_amount", "paid_at": "bad_date", "points_used": "bad_points",
                 "order_id": "bad_order_id", "store_id": "bad_store_id",
                 "coupon_code": "bad_coupon", **{c: "bad_member" for c in MEMBER_COLUMNS}}


class ImportFailed(OperatorError):
    """The file as a whole cannot be imported (unreadable, wrong columns)."""


@dataclass
class Problem:
    row: int
    order_id: str
    status: str  # skipped | rejected
    reason: str
    detail: str


@dataclass
class Row:
    row: int
    order: dict[str, Any]  # validated by schema.ORDER
    ident: tuple[str, str]


@dataclass
class Summary:
    rows: int = 0
    imported: int = 0
    already: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for p in self.problems if p.status == status)

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def rejected(self) -> int:
        return self.count("rejected")


def read_rows(path: Path, encoding: str = "auto") -> tuple[list[str], list[tuple[int, list]]]:
    """The header and ``(line number, cells)`` of every non-blank row.

    ``auto`` reads UTF-8 (with or without a BOM) and falls back to GB18030, which is what
    Excel on a Chinese system saves."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ImportFailed(f"{path}: cannot read ({e.strerror})") from e
    encodings = ("utf-8-sig", "gb18030") if encoding == "auto" else (encoding,)
    for enc in encodings:
        try:
            text = raw.decode(enc)
            break
        except (UnicodeDecodeError, LookupError):
            continue
    else:
        raise ImportFailed(f"{path}: not readable as {' or '.join(encodings)}; "
                           "save it as UTF-8 or pass --encoding")
    reader = csv.reader(text.splitlines())
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ImportFailed(f"{path}: the file is empty") from None
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise ImportFailed(f"{path}:1: unknown column {unknown[0]!r}; the columns are "
                           f"{', '.join(COLUMNS)}")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportFailed(f"{path}:1: missing column {missing[0]!r}")
    if not any(c in header for c in MEMBER_COLUMNS):
        raise ImportFailed(f"{path}:1: needs a member column ({', '.join(MEMBER_COLUMNS)})")
    rows = [(reader.line_num, cells) for cells in reader if any(c.strip() for c in cells)]
    return header, rows


class Cleaner:
    """Row by row: test accounts, malformed values and duplicates within the file."""

    def __init__(self, header: list[str], patterns: Iterable[str], now: datetime,
                 rules: Rules) -> None:
        self.header = header
        self.patterns = [(p, re.compile(p)) for p in patterns]
        self.now = now
        self.tz = rules.tz
        self.earliest = rules.orders["earliest_paid_at"]
        self.first_row: dict[str, int] = {}

    def clean(self, line: int, cells: list[str]) -> Row | Problem:
        if len(cells) != len(self.header):
            oid = cells[0].strip() if cells and self.header[0] == "order_id" else ""
            return Problem(line, oid, "rejected", "bad_row",
                           f"{len(cells)} cells, the header has {len(self.header)}")
        rec = {h: c.strip() for h, c in zip(self.header, cells, strict=True)}
        oid = rec.get("order_id", "")
        for col in SKIP_FIELDS:
            for text, rx in self.patterns:
                if rec.get(col) and rx.fullmatch(rec[col]):
                    return Problem(line, oid, "skipped", "test_account",
                                   f"{col} matches {text!r}")
        ident = next(((c, rec[c]) for c in MEMBER_COLUMNS if rec.get(c)), None)
        if ident is None:
            return Problem(line, oid, "rejected", "missing_member",
                           f"none of {', '.join(MEMBER_COLUMNS)} is given")
        data: dict[str, Any] = {k: rec.get(k) or None for k in REQUIRED}
        data[ident[0]] = ident[1]
        data["coupon_code"] = rec.get("coupon_code") or None
        try:
            for col in ("amount_fen", "points_used"):
                v = rec.get(col, "")
                if v and not re.fullmatch(r"-?[0-9]+", v):
                    raise schema.BadField(col, "", f"{col} must be whole fen, got {v!r}")
                data[col] = int(v) if v else None
            order = schema.ORDER.check(data, self.tz)
            schema.check_paid_at(order["paid_at"], self.now, self.earliest, self.tz)
        except schema.BadField as e:
            return Problem(line, oid, "rejected", FIELD_REASONS.get(e.field or "", "bad_row"),
                           e.en)
        if oid in self.first_row:
            return Problem(line, oid, "rejected", "duplicate",
                           f"order_id already on row {self.first_row[oid]}")
        self.first_row[oid] = line
        return Row(line, order, ident)


async def import_orders(members: Members, path: Path, now: datetime, *,
                        patterns: Iterable[str] | None = None, encoding: str = "auto",
                        concurrency: int = 64,
                        progress: Callable[[int], None] | None = None,
                        total: Callable[[int], None] | None = None) -> Summary:
    """Import ``path``; each member's orders in paid_at order, members concurrently.

    ``total(n)`` is told the number of rows once they are read; ``progress(k)`` each time
    ``k`` more are done. ``patterns``: the test accounts, by default the rules file's
    ``importer.test_accounts``."""
    t0 = time.perf_counter()
    tick = progress or (lambda n: None)
    header, raw_rows = read_rows(path, encoding)
    if total is not None:
        total(len(raw_rows))
    summary = Summary(rows=len(raw_rows))
    if patterns is None:
        patterns = members.rules.test_accounts
    cleaner = Cleaner(header, patterns, now, members.rules)
    good: list[Row] = []
    for line, cells in raw_rows:
        r = cleaner.clean(line, cells)
        if isinstance(r, Problem):
            summary.problems.append(r)
            tick(1)
        else:
            good.append(r)
    sem = asyncio.Semaphore(concurrency)
    owners: dict[tuple[str, str], str | None] = {}

    async def resolve(ident: tuple[str, str]) -> None:
        async with sem:
            owners[ident] = await members.resolve(**{ident[0]: ident[1]})

    await asyncio.gather(*(resolve(i) for i in {r.ident for r in good}))
    by_member: dict[str, list[Row]] = defaultdict(list)
    for r in good:
        mid = owners[r.ident]
        if mid is None:
            summary.problems.append(Problem(r.row, r.order["order_id"], "rejected",
                                            "unknown_member", f"no member with {r.ident[0]}"))
            tick(1)
        else:
            by_member[mid].append(r)
    queue: asyncio.Queue[tuple[str, list[Row]]] = asyncio.Queue()
    for mid, rows in by_member.items():
        # oldest first, so tier multipliers apply as they would have at the time
        queue.put_nowait((mid, sorted(rows, key=lambda r: (r.order["paid_at"], r.row))))

    async def worker() -> None:
        while not queue.empty():
            mid, rows = queue.get_nowait()
            for r in rows:
                await _record(members, mid, r, now, summary)
                tick(1)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    summary.problems.sort(key=lambda p: p.row)
    summary.seconds = time.perf_counter() - t0
    return summary


async def _record(members: Members, mid: str, r: Row, now: datetime, summary: Summary) -> None:
    o = r.order
    h = schema.order_hash(o)
    done, prev = await members.seen(mid, keys.order(o["order_id"]))
    if done and isinstance(prev, dict) and prev.get("body_hash") in (h, "", None):
        summary.already += 1
        return
    try:
        await members.record_order(
            mid, o["order_id"], o["amount_fen"], o["paid_at"], now, store_id=o["store_id"],
            coupon_code=(o.get("coupon_code") or "").upper() or None,
            points_used=o.get("points_used") or 0, body_hash=h)
    except Refusal as e:
        summary.problems.append(Problem(r.row, o["order_id"], "rejected", e.code, e.message))
        return
    summary.imported += 1


def write_report(path: Path, summary: Summary) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(REPORT_HEADER)
        for p in summary.problems:
            w.writerow((p.row, p.order_id, p.status, p.reason, p.detail))


def register(main: click.Group) -> None:
    @main.command("import-orders")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="where to write skipped and rejected rows [FILE.report.csv]")
    @click.option("--skip-pattern", "skip", multiple=True, metavar="REGEX",
                  help="also skip rows whose member field or name matches REGEX as a whole "
                       "field; repeatable, added to the rules' importer.test_accounts")
    @click.option("--no-default-skips", is_flag=True,
                  help="do not skip the rules file's importer.test_accounts patterns")
    @click.option("--encoding", default="auto", show_default=True,
                  help="file encoding; auto = UTF-8, else GB18030")
    @click.option("--concurrency", default=64, show_default=True, type=click.IntRange(1, 1024))
    def import_orders_cmd(file: Path, report_path: Path | None, skip: tuple[str, ...],
                          no_default_skips: bool, encoding: str, concurrency: int) -> None:
        """Import historical orders from FILE.csv (columns: docs/operators.md)."""
        for p in skip:
            try:
                re.compile(p)
            except re.error as e:
                raise click.BadParameter(f"{p!r}: {e}", param_hint="--skip-pattern") from e
        report_path = report_path or file.with_suffix(".report.csv")
        summary = run_with_members(load_settings(), lambda members, now: _run(
            members, now, file, [*(() if no_default_skips else members.rules.test_accounts),
                                 *skip], encoding, concurrency))
        write_report(report_path, summary)
        click.echo(f"{summary.rows} rows: {summary.imported} imported, {summary.already} "
                   f"already imported, {summary.skipped} skipped (test accounts), "
                   f"{summary.rejected} rejected, in {summary.seconds:.1f} s")
        click.echo(f"report: {report_path}")


async def _run(members: Members, now: datetime, file: Path, patterns: list[str],
               encoding: str, concurrency: int) -> Summary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task("importing orders", total=None)
        return await import_orders(members, file, now, patterns=patterns, encoding=encoding,
                                   concurrency=concurrency,
                                   progress=lambda n: bar.advance(task, n),
                                   total=lambda n: bar.update(task, total=n))
