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


def test_every_setting_comes_from_dotenv(tmp_path):
    (tmp_path / "tpl").mkdir()
    (tmp_path / ".env").write_text("MEMBERBOT_TEMPLATES=tpl\nMEMBERBOT_LOG=debug\n"
                                   "MEMBERBOT_OUTBOX_LEASE=5\n")
    s = Settings.load({}, cwd=tmp_path)
    assert s.templates == str(tmp_path / "tpl")
    assert s.log_level == "DEBUG" and s.outbox_lease == 5.0


def test_a_missing_templates_folder_is_named(tmp_path):
    (tmp_path / ".env").write_text("MEMBERBOT_TEMPLATES=nowhere\n")
    with pytest.raises(SettingsError, match="MEMBERBOT_TEMPLATES: nowhere is not a folder"):
        Settings.load({}, cwd=tmp_path)


def test_the_app_renders_with_the_settings_templates(tmp_path, settings):
    from bot import templating
    from bot.web import create_app

    (tmp_path / "tpl" / "replies").mkdir(parents=True)
    (tmp_path / "tpl" / "replies" / "hint.j2").write_text("override")
    settings.templates = str(tmp_path / "tpl")
    create_app(settings)
    assert templating.render("replies/hint.j2") == "override"
    settings.templates = None
    create_app(settings)
    assert templating.render("replies/hint.j2") != "override"


def test_loaded_names_rules_templates_store_and_admin_without_credentials(tmp_path):
    s = Settings.load({"MEMBERBOT_STORE": "postgresql://bob:pw@db:5432/m"}, cwd=tmp_path)
    line = s.loaded()
    assert line == ("rules: built-in defaults; templates: built-in; store: "
                    "postgresql://db:5432/m; admin: off (set MEMBERBOT_ADMIN_PASSWORD or "
                    "memberbot admin add-user)")
    assert s.loaded(2).endswith("admin: 2 accounts (no bootstrap password)")
    s.admin_password = "pw"
    assert s.loaded(1).endswith("admin: password login (MEMBERBOT_ADMIN_PASSWORD) and 1 account")
