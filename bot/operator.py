"""What every operator command shares: one ``error:`` line and exit 1 instead of a
traceback, and the settings loaded once."""

from __future__ import annotations

import sys

import click

from .settings import Settings, SettingsError


def fail(message: str) -> None:
    """One line for the operator, non-zero exit, no traceback."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def load_settings() -> Settings:
    try:
        settings = Settings.load()
    except SettingsError as e:
        fail(str(e))
    settings.warn_generated()
    return settings


class OperatorError(click.ClickException):
    """One line for the operator, ``error: ...`` like every memberbot command, exit 1."""

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        click.echo(f"error: {self.format_message()}", err=True)
