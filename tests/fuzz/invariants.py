"""What every fuzzed request must leave true: no 5xx, no traceback or exception class in a
reply or a log line, and nothing changed by a refused request."""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path

CLASS_NAME = re.compile(r"Traceback|\b[A-Z]\w*(Exception|Error|Forbidden)\b")


class Ledger:
    """A fingerprint of everything a change would touch, read from the SQLite file."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def state(self) -> tuple:
        return self.db.execute(
            "SELECT (SELECT count(*) FROM members), (SELECT coalesce(sum(version), 0) FROM "
            "members), (SELECT coalesce(max(id), 0) FROM ledger), (SELECT count(*) FROM "
            "outbox), (SELECT count(*) FROM uniques), (SELECT coalesce(sum(remaining), 0) "
            "FROM stock)").fetchone()

    def close(self) -> None:
        self.db.close()


class LogWatch:
    """Fails on any log record at ERROR or with a traceback since the last check."""

    def __init__(self, caplog) -> None:
        self.caplog = caplog
        caplog.set_level(logging.INFO)
        self.seen = 0

    def check(self, what: object) -> None:
        records = self.caplog.records[self.seen:]
        self.seen = len(self.caplog.records)
        bad = [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
        assert not bad, (what, [r.getMessage() for r in bad])


def check_reply(status: int, body: str, what: object) -> None:
    assert status < 500, (status, body[:300], what)
    if status >= 400:
        assert not CLASS_NAME.search(body), (status, body[:300], what)
