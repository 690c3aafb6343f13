"""``memberbot card create | show | update`` and ``memberbot report`` against the fake card
API on a local port (served from a thread: the command runs its own event loop)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bot.cli import main

from .test_card import card_toml

KEY = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="


@pytest.fixture
def api(oa_api):
    return oa_api


def run(tmp_path, api, *args: str, rules: str | None = None):
    path = tmp_path / "rules.toml"
    path.write_text(card_toml() if rules is None else rules, encoding="utf-8")
    env = {"MEMBERBOT_STORE": f"sqlite:///{tmp_path}/m.db", "MEMBERBOT_DATA_KEY": KEY,
           "MEMBERBOT_DATA_DIR": str(tmp_path), "WECHAT_TOKEN": "t", "MEMBERBOT_API_SECRET": "s",
           "WECHAT_APPID": api.appid, "WECHAT_APPSECRET": api.secret,
           "WECHAT_API_BASE": api.base, "MEMBERBOT_RULES": str(path), "MEMBERBOT_TZ": ""}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_create_show_update_and_report(tmp_path, api):
    res = run(tmp_path, api, "card", "create")
    assert res.exit_code == 0, res.output
    assert "card pCARD1 created" in res.output and "QR code: https://" in res.output
    assert "支付即会员 rule 1001" in res.output
    assert len(api.to("/card/create")) == 1
    assert len(api.to("/card/membercard/activateuserform/set")) == 1
    again = run(tmp_path, api, "card", "create")
    assert "exists already" in again.output and len(api.to("/card/create")) == 1
    show = run(tmp_path, api, "card", "show")
    assert "card_id: pCARD1" in show.output and "CARD_STATUS_NOT_VERIFY" in show.output
    changed = card_toml().replace('notice = "结账时出示会员卡"', 'notice = "到店出示会员卡"')
    upd = run(tmp_path, api, "card", "update", rules=changed)
    assert upd.exit_code == 0 and "card pCARD1 updated" in upd.output
    (call,) = api.to("/card/update")
    assert call.body["member_card"]["base_info"]["notice"] == "到店出示会员卡"
    rep = run(tmp_path, api, "report")
    assert rep.exit_code == 0 and "开卡数" in rep.output and "激活率" in rep.output


def test_operator_errors_are_one_line(tmp_path, api):
    res = run(tmp_path, api, "card", "show")
    assert res.exit_code == 1
    assert res.output.strip() == "error: no card yet: run memberbot card create"
    res = run(tmp_path, api, "card", "create", rules="")
    assert res.exit_code == 1 and "no [card] section" in res.output
    bad = card_toml().replace('color = "Color010"', 'color = "red"')
    res = run(tmp_path, api, "card", "create", rules=bad)
    assert res.exit_code == 1 and "card.color" in res.output and "Traceback" not in res.output
    api.fail_next(40001)
    res = run(tmp_path, api, "card", "create")
    assert res.exit_code == 1 and "errcode 40001" in res.output
