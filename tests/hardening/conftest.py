"""Hardening tests reuse the end-to-end fixtures: the whole app, a signing WeChat, a clock."""

from tests.e2e.conftest import bot, clock, fake_api, make_bot  # noqa: F401
