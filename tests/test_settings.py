"""Settings: local secrets generated once and reused; production refuses missing ones."""

from __future__ import annotations

import pytest

from bot.settings import Settings, SettingsError


def test_local_secrets_are_generated_once_and_reused(tmp_path):
    a = Settings.load({}, cwd=tmp_path)
    b = Settings.load({}, cwd=tmp_path)
    assert a.generated and not b.generated
    assert a.data_key == b.data_key and a.api_secret == b.api_secret
    assert a.wechat_token == b.wechat_token
    assert a.store_url == "sqlite:///./data/memberbot.db"


def test_environment_and_dotenv_win_over_generated(tmp_path):
    (tmp_path / ".env").write_text("WECHAT_TOKEN='from-dotenv'\n# comment\n\nMEMBERBOT_TZ=UTC\n")
    s = Settings.load({"MEMBERBOT_API_SECRET": "from-env"}, cwd=tmp_path)
    assert s.wechat_token == "from-dotenv" and s.api_secret == "from-env" and s.tz == "UTC"
    assert s.generated == ["MEMBERBOT_DATA_KEY"]


def test_production_needs_every_secret(tmp_path):
    with pytest.raises(SettingsError, match="MEMBERBOT_DATA_KEY"):
        Settings.load({"MEMBERBOT_ENV": "production", "WECHAT_TOKEN": "t",
                       "MEMBERBOT_API_SECRET": "s"}, cwd=tmp_path)
    assert not (tmp_path / "data").exists()


def test_bad_dotenv_line_names_the_line(tmp_path):
    (tmp_path / ".env").write_text("GOOD=1\nnot a setting\n")
    with pytest.raises(SettingsError, match=r"\.env:2"):
        Settings.load({}, cwd=tmp_path)
