"""The one template loader: compiled, cached jinja2 templates from ``bot/templates``.

Operators may override any template by putting a file of the same relative name under
``MEMBERBOT_TEMPLATES`` (a folder); it is searched first. The folder comes from the settings
(environment or ``.env``): :func:`use` is called once by whatever opens the settings.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
)

_overrides: str | None = None


def use(folder: str | None) -> None:
    """Search ``folder`` (the settings' ``templates``) before the built-in templates."""
    global _overrides
    if folder != _overrides:
        _overrides = folder
        environment.cache_clear()
        html_environment.cache_clear()
        _compiled.cache_clear()


def overrides() -> str | None:
    return _overrides


@lru_cache(maxsize=1)
def environment() -> Environment:
    loaders = []
    extra = _overrides
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


@lru_cache(maxsize=64)
def _compiled(source: str) -> Any:
    return environment().from_string(source)


def render_source(source: str, **ctx: Any) -> str:
    """Render a template given as text (an A/B variant's message in the rules file)."""
    return _compiled(source).render(**ctx).strip()


def check_source(source: str) -> str | None:
    """Why ``source`` is not a template (its syntax error), or None."""
    try:
        environment().parse(source)
    except TemplateError as e:
        return f"line {getattr(e, 'lineno', '?')}: {e.message or e}"
    return None


def render_html(name: str, **ctx: Any) -> str:
    """Render an HTML page with autoescaping."""
    return html_environment().get_template(name).render(**ctx)


def _place(e: BaseException) -> tuple[str | None, int | None]:
    """Where in a template ``e`` happened: a syntax error carries its place; an undefined
    variable (StrictUndefined) or an error of the template's code does not, but jinja2
    rewrites the traceback so the frame of the template names its file and line: the
    innermost such frame is the place."""
    where, line = getattr(e, "filename", None), getattr(e, "lineno", None)
    if where is None:
        tb = e.__traceback__
        while tb is not None:
            name = tb.tb_frame.f_code.co_filename
            if tb.tb_frame.f_globals.get("__jinja_template__") is not None or \
                    name.endswith((".j2", ".html")):
                where, line = name, tb.tb_lineno
            tb = tb.tb_next
    return where, line


def describe_error(e: TemplateError) -> str:
    """``template FILE line N: what`` for an operator."""
    where, line = _place(e)
    where = where or getattr(e, "name", None) or "a template"
    return f"template {where}{f' line {line}' if line else ''}: {e.message or e}"


def describe_failure(e: Exception) -> str:
    """Why a render failed, for an operator, without a traceback: a missing template by
    name (and where it was looked for); else what went wrong (a template error, or what the
    template's code raised, ``{{ points / 0 }}``), after its place when it is known."""
    if isinstance(e, TemplateNotFound):
        where = f"{_overrides} (MEMBERBOT_TEMPLATES) or " if _overrides else ""
        return f"no template {e.name!r} in {where}the built-in templates"
    what = (getattr(e, "message", None) if isinstance(e, TemplateError) else None) or \
        f"{type(e).__name__}: {e}"
    where, line = _place(e)
    if where is None or where == "<template>":  # a text in the rules file: the field says
        return f"line {line}: {what}" if line and where else what
    return f"template {where}{f' line {line}' if line else ''}: {what}"
