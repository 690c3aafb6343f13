"""The import contracts of pyproject.toml name every top-level module, so a new module is
covered by "bot.rules imports nothing of the project" and "storage imports only the rules
models" from its first commit (``lint-imports`` in ``make test`` checks them)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def top_level() -> set[str]:
    bot = ROOT / "bot"
    mods = {f"bot.{p.stem}" for p in bot.glob("*.py") if p.stem not in ("__init__", "__main__")}
    mods |= {f"bot.{p.name}" for p in bot.iterdir() if (p / "__init__.py").exists()}
    return mods


def contracts() -> dict[str, dict]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {c["name"]: c for c in data["tool"]["importlinter"]["contracts"]}


def test_the_pure_rules_contract_forbids_every_other_module():
    c = contracts()["bot.rules is pure: it imports nothing of the project but itself"]
    assert set(c["forbidden_modules"]) == (top_level() - {"bot.rules"}) | {"storage"}


def test_the_storage_contract_forbids_every_module_but_the_rules_models():
    c = contracts()["storage imports only the bot.rules models"]
    rules = {f"bot.rules.{p.stem}" for p in (ROOT / "bot" / "rules").glob("*.py")
             if p.stem not in ("__init__", "models")}
    assert set(c["forbidden_modules"]) == (top_level() - {"bot.rules"}) | rules


# Handlers and jobs are thin: they call use cases and read models (bot/members.py,
# bot/readmodels.py, the app context), never the store. From storage they may import only
# what its answers are made of (errors, rows); ``memberbot jobs`` opens the store of a
# command in one place (bot/jobs/cli.py, the composition root of the job commands).
THIN = ("bot/handlers", "bot/jobs")
STORAGE_NAMES = {"StoreError", "StoreUnavailable", "ConflictError", "UniqueTaken",
                 "OutOfStock", "OutboxRow", "LedgerRow"}
OPENS_THE_STORE = {"bot/jobs/cli.py": {"Store", "open_store"}}


def store_uses(path: Path, root: Path = ROOT) -> list[str]:
    """Where a module reaches the store: ``<x>.store`` attributes, or storage names that
    are not answers (the store class, open_store)."""
    import ast

    rel = path.relative_to(root).as_posix()
    allowed = STORAGE_NAMES | OPENS_THE_STORE.get(rel, set())
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr == "store":
            found.append(f"{rel}:{node.lineno}: .store")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == \
                "storage" and node.level == 0:
            found += [f"{rel}:{node.lineno}: storage.{a.name}" for a in node.names
                      if a.name not in allowed]
        elif isinstance(node, ast.Import):
            found += [f"{rel}:{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] == "storage"]
    return found


def test_handlers_and_jobs_never_touch_the_store():
    found = [hit for d in THIN for p in sorted((ROOT / d).rglob("*.py"))
             for hit in store_uses(p)]
    assert found == []


# The command layer is as thin: ``memberbot`` commands call the same use cases and read
# models (``ctx.members``, ``ctx.accounts``, ``members.*``); bot/offline.py opens the store of
# a command in one place, like bot/jobs/cli.py. Storage-level tools are allowed the store
# itself, because their work is the store and not the programme: backup and restore copy
# every row (outbox, idempotency results, kv, stock and budgets) of any backend as it is,
# ``db upgrade`` migrates the schema, ``rotate-data-key`` re-seals the stored personal data
# under a new key. Any other command that reaches the store fails this test.
COMMANDS = sorted({p.relative_to(ROOT).as_posix() for p in (ROOT / "bot").glob("*cli*.py")}
                  | {f"bot/{m}.py" for m in ("cli", "offline", "report", "importer", "export",
                                             "backup", "dbcli", "rotate")})
STORAGE_TOOLS = {"bot/backup.py", "bot/dbcli.py", "bot/rotate.py"}
OPENS_THE_STORE["bot/offline.py"] = {"open_store"}


def test_commands_never_touch_the_store_but_the_storage_tools():
    assert {"bot/cli.py", "bot/wecom_cli.py", "bot/card_cli.py", "bot/invites_cli.py",
            "bot/report.py", "bot/importer.py", "bot/export.py"} <= set(COMMANDS)
    found = [hit for rel in COMMANDS if rel not in STORAGE_TOOLS
             for hit in store_uses(ROOT / rel)]
    assert found == []


def test_the_storage_tools_do_reach_the_store():
    """The allow-list holds only modules that need it (a tool moved behind the use cases
    leaves the list)."""
    assert all(store_uses(ROOT / rel) for rel in STORAGE_TOOLS)


def test_the_layer_check_can_fail(tmp_path):
    bad = tmp_path / "bot" / "jobs" / "probe.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from storage import OutboxRow, Store\n\nasync def f(ctx):\n"
                   "    return await ctx.store.get('m')\n", encoding="utf-8")
    assert [h.split(": ", 1)[1] for h in store_uses(bad, tmp_path)] == ["storage.Store",
                                                                        ".store"]
