"""Shared fixtures: rules, a fixed clock in Asia/Shanghai, settings for an app under test."""

from __future__ import annotations

import base64
import os
from datetime import datetime
from pathlib import Path

import pytest

from bot.rules import load_rules
from bot.settings import Settings

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def rules():
    return load_rules()


@pytest.fixture
def tz(rules):
    return rules.tz


@pytest.fixture
def now(tz):
    return datetime(2026, 11, 25, 10, 0, tzinfo=tz)


def make_settings(tmp_path: Path, **over) -> Settings:
    """Settings for tests: a SQLite file under ``tmp_path`` and fixed secrets."""
    base = dict(env="development", data_dir=tmp_path, store_url=f"sqlite:///{tmp_path}/m.db",
                data_key=base64.b64encode(b"k" * 32).decode(), wechat_token="testtoken",
                api_secret="test-api-secret")
    base.update(over)
    return Settings(**base)


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture(autouse=True)
def _builtin_templates():
    """A test that opened settings with MEMBERBOT_TEMPLATES leaves the built-in templates."""
    from bot import templating

    yield
    templating.use(None)
