"""The one template loader: compiled, cached jinja2 templates from ``bot/templates``.

Operators may override any template by putting a file of the same relative name under
``MEMBERBOT_TEMPLATES`` (a folder); it is searched first.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined


@lru_cache(maxsize=1)
def environment() -> Environment:
    loaders = []
    extra = os.environ.get("MEMBERBOT_TEMPLATES")
    if extra:
        loaders.append(FileSystemLoader(extra))
    loaders.append(PackageLoader("bot", "templates"))
    env = Environment(loader=ChoiceLoader(loaders), autoescape=False, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
                      auto_reload=False)  # compiled once per process: restart to pick up edits
    env.filters["yuan"] = yuan
    return env


@lru_cache(maxsize=1)
def html_environment() -> Environment:
    env = environment().overlay(autoescape=True)
    return env


def yuan(fen: int) -> str:
    """Fen as yuan for people: 1000 -> '10', 1050 -> '10.50'."""
    return f"{fen // 100}" if fen % 100 == 0 else f"{fen / 100:.2f}"


def render(name: str, **ctx: Any) -> str:
    """Render a text template (replies, lifecycle messages); surrounding blank space trimmed."""
    return environment().get_template(name).render(**ctx).strip()


def render_html(name: str, **ctx: Any) -> str:
    """Render an HTML page with autoescaping."""
    return html_environment().get_template(name).render(**ctx)
