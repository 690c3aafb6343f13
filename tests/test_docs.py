"""The documentation users get: it stands on its own."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*"))]


def test_user_docs_do_not_send_readers_to_the_internal_spec():
    # PRODUCT.md is the team's specification: it is not shipped, so users cannot open it
    offenders = [f"{p.name}:{n}" for p in USER_DOCS if p.is_file()
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if "PRODUCT.md" in line or "ARCHITECTURE.md" in line]
    assert offenders == []
