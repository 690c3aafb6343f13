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


def serve_cli_env(monkeypatch, tmp_path: Path, store_url: str) -> None:
    """The environment of a ``memberbot`` command run in ``tmp_path`` on ``store_url``."""
    for k, v in {"MEMBERBOT_STORE": store_url, "MEMBERBOT_DATA_DIR": str(tmp_path),
                 "MEMBERBOT_DATA_KEY": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
                 "MEMBERBOT_API_SECRET": "x", "WECHAT_TOKEN": "x"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def fake():
    """The fake WeCom API (and OA API) on a local port."""
    from tests.fakes.wecom_api import FakeWeComAPI

    api = FakeWeComAPI()
    await api.start()
    yield api
    await api.close()


@pytest.fixture
async def browser():
    """Headless Chromium over CDP (skipped where there is none)."""
    from tests.ops.cdp import Browser, require_chromium

    require_chromium()
    b = Browser()
    try:
        yield await b.start()
    finally:
        await b.close()


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture(autouse=True)
def _builtin_templates():
    """A test that opened settings with MEMBERBOT_TEMPLATES leaves the built-in templates."""
    from bot import templating

    yield
    templating.use(None)
