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
