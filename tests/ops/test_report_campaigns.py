"""memberbot report shows each campaign's budget: used, left, spent (issue 17 item 5)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

from click.testing import CliRunner

from bot.cli import main
from bot.members import Members
from bot.rules import load_rules
from storage import open_store

RULES_TOML = """
[[campaigns]]
key = "weekend"
name = "周末积分翻倍"
multiplier = 2
start = 2026-12-05
end = 2026-12-06
budget = 250

[[campaigns]]
key = "memberday"
name = "会员日三倍"
multiplier = 3
member_day = true
tiers = ["gold", "black"]
"""


def test_report_shows_budget_used_per_campaign(tmp_path, monkeypatch):
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(RULES_TOML, encoding="utf-8")
    rules = load_rules(rules_file)
    path = tmp_path / "r.db"
    now = datetime(2026, 12, 5, 12, tzinfo=rules.tz)

    async def prepare():
        store = open_store(f"sqlite:///{path}", b"k" * 32)
        await store.open()
        members = Members(store, rules)
        for i in range(3):  # 100 + 100 + the last 50
            mid = (await members.register(f"o-{i}", now))["member_id"]
            await members.record_order(mid, f"w-{i}", 10_000, now, now)
        await store.close()

    asyncio.run(prepare())
    for k, v in {"MEMBERBOT_STORE": f"sqlite:///{path}", "MEMBERBOT_DATA_DIR": str(tmp_path),
                 "MEMBERBOT_DATA_KEY": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
                 "MEMBERBOT_API_SECRET": "x", "WECHAT_TOKEN": "x",
                 "MEMBERBOT_RULES": str(rules_file), "COLUMNS": "200"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["report", "--as-of", "2026-12-05", "--json"])
    assert res.exit_code == 0, res.output
    rows = {c["key"]: c for c in json.loads(res.output)["campaigns"]}
    assert (rows["weekend"]["budget"], rows["weekend"]["used"], rows["weekend"]["left"],
            rows["weekend"]["spent"]) == (250, 250, 0, True)
    assert rows["memberday"]["budget"] is None and rows["memberday"]["multiplier"] == 3
    res = CliRunner().invoke(main, ["report", "--as-of", "2026-12-05"])
    assert res.exit_code == 0, res.output
    for text in ("积分活动预算", "周末积分翻倍", "×2", "2026-12-05 – 2026-12-06", "250",
                 "100.0%（已用完）", "会员日三倍", "不限"):
        assert text in res.output, text


def test_report_shows_a_window_with_times_of_day_to_the_minute(tmp_path):
    from bot.campaign_report import figures

    rules_file = tmp_path / "rules.toml"
    rules_file.write_text('[[campaigns]]\nkey = "noon"\nname = "午间"\nmultiplier = 2\n'
                          "start = 2026-12-05T10:00:00\nend = 2026-12-05\n", encoding="utf-8")
    rows = asyncio.run(figures(None, load_rules(rules_file)))  # no budget: no store read
    assert (rows[0]["start"], rows[0]["end"]) == ("2026-12-05 10:00", "2026-12-05")
