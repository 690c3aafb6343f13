"""``memberbot menu show|create``: the OA custom menu from TOML through menu/create and menu/get
on the fake OA API; every click key of the default menu is a command the bot answers."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.menu import default_menu
from bot.templating import render
from tests.fakes.wechat_api import FakeWeChatAPI

KEY = "a2FrYWthYWthYWthYWthYWthYWthYWthYWthYWthYWs="  # 32 bytes, base64


def run(tmp_path, api: FakeWeChatAPI, *args: str):
    env = {"MEMBERBOT_STORE": f"sqlite:///{tmp_path}/m.db", "MEMBERBOT_DATA_KEY": KEY,
           "MEMBERBOT_DATA_DIR": str(tmp_path), "WECHAT_TOKEN": "t", "MEMBERBOT_API_SECRET": "s",
           "WECHAT_APPID": api.appid, "WECHAT_APPSECRET": api.secret,
           "WECHAT_API_BASE": api.base, "MEMBERBOT_RULES": "", "MEMBERBOT_TZ": ""}
    return CliRunner().invoke(main, ["menu", *args], env=env)


def test_create_sets_the_default_menu_and_show_prints_it_back_as_toml(tmp_path, oa_api):
    res = run(tmp_path, oa_api, "show")
    assert res.exit_code == 0 and "no custom menu is set" in res.output
    res = run(tmp_path, oa_api, "create")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("menu set: 签到 · 我的 · 更多")
    [call] = oa_api.to("/cgi-bin/menu/create")
    assert call.body == default_menu()
    assert "签到" in call.raw.decode()  # UTF-8 as is: WeChat shows \uXXXX literally
    keys = [b.get("key") or [s["key"] for s in b["sub_button"]] for b in call.body["button"]]
    assert keys == ["CHECKIN", ["BALANCE", "HISTORY", "COUPONS", "CARD", "MEMBER_CARD"],
                    ["REDEEM", "INVITE", "TASKS", "HELP"]]
    shown = run(tmp_path, oa_api, "show")
    assert shown.exit_code == 0 and 'key = "CHECKIN"' in shown.output
    # what show prints is a file create takes: the same menu again
    (tmp_path / "menu.toml").write_text(shown.output)
    assert run(tmp_path, oa_api, "create", str(tmp_path / "menu.toml")).exit_code == 0
    assert oa_api.to("/cgi-bin/menu/create")[1].body == call.body


def test_create_from_a_file_with_a_web_page_button(tmp_path, oa_api):
    (tmp_path / "menu.toml").write_text('''
[[button]]
name = "签到"
key = "checkin"

[[button]]
name = "商城"
url = "https://shop.example.com/"

[[button]]
name = "我的"
  [[button.sub_button]]
  name = "积分"
  key = "BALANCE"
  [[button.sub_button]]
  name = "会员卡"
  key = "CARD"
''')
    res = run(tmp_path, oa_api, "create", str(tmp_path / "menu.toml"))
    assert res.exit_code == 0, res.output
    assert oa_api.menu["button"][0] == {"type": "click", "name": "签到", "key": "CHECKIN",
                                        "sub_button": []}
    assert oa_api.menu["button"][1]["url"] == "https://shop.example.com/"
    assert [s["key"] for s in oa_api.menu["button"][2]["sub_button"]] == ["BALANCE", "CARD"]


@pytest.mark.parametrize("toml, message", [
    ('[[button]]\nname="a"\nkey="HELP"\n' * 4, "1 to 3 [[button]] entries"),
    ('[[button]]\nname="签到"\nkey="NOPE"\n', "button 1 (签到): key 'NOPE' is not a command"),
    ('[[button]]\nname="会员积分中心"\nkey="HELP"\n', "name longer than 16 bytes"),
    ('[[button]]\nname="x"\nurl="ftp://a"\n', "url must be an http(s) address"),
    ('[[button]]\nname="x"\n  [[button.sub_button]]\n  name="y"\n  key="ZZ"\n',
     "button 1 (x) sub_button 1 (y): key 'ZZ'"),
    ("[[button]\n", "not valid TOML"),
])
def test_a_bad_menu_file_is_one_line_naming_file_and_button(tmp_path, oa_api, toml, message):
    (tmp_path / "menu.toml").write_text(toml)
    res = run(tmp_path, oa_api, "create", str(tmp_path / "menu.toml"))
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'menu.toml'}: ")
    assert message in lines[0]
    assert oa_api.to("/cgi-bin/menu/create") == []


def test_a_refusal_by_wechat_is_one_line(tmp_path, oa_api):
    oa_api.fail_next(40018)
    res = run(tmp_path, oa_api, "create")
    assert res.exit_code == 1
    assert res.output.strip() == "error: WeChat refused create menu: 40018 fake failure 40018"


async def test_every_default_menu_key_is_answered_by_its_command(bot):
    await bot.wx.follow("o_menu")
    hint = render("replies/hint.j2")
    for b in default_menu()["button"]:
        for leaf in b.get("sub_button") or [b]:
            r = await bot.wx.click("o_menu", leaf["key"])
            assert r.content and r.content != hint, leaf
