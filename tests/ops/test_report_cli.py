"""memberbot report: the same figures as the analytics, as tables or JSON."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.members import Members
from storage import open_store
from tests.conftest import serve_cli_env

from .seeded import seed_history


@pytest.fixture
def db(tmp_path, monkeypatch, rules):
    path = tmp_path / "r.db"

    async def prepare():
        store = open_store(f"sqlite:///{path}", b"k" * 32)
        await store.open()
        await seed_history(Members(store, rules), monkeypatch)
        await store.close()

    asyncio.run(prepare())
    serve_cli_env(monkeypatch, tmp_path, f"sqlite:///{path}")
    return path


def test_json_output_has_every_figure(db):
    res = CliRunner().invoke(main, ["report", "--as-of", "2026-11-25", "--days", "7", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert {k["key"]: k["text"] for k in r["kpis"]} == {
        "card_conversion": "75.0%", "active_ratio": "50.0%", "arpu": "¥5,563.33",
        "repurchase": "33.3%", "points_redeem": "3.0%", "checkin_dau": "0.57",
        "unsubscribe": "16.7%", "unfollow": "16.7%",
        # ¥16,690 over 4 orders; 1 of 6 members went up a tier; no rewarded invites
        "aov": "¥4,172.50", "tier_promotion": "16.7%", "invite_per_inviter": "—",
        "invite_per_new": "0.00", "points_issue_rate": "1.0%"}
    assert all(k["definition"] for k in r["kpis"])


def test_tables_show_each_section_with_definitions(db, monkeypatch):
    monkeypatch.setenv("COLUMNS", "220")  # rich folds long definitions in narrow terminals
    res = CliRunner().invoke(main, ["report", "--as-of", "2026-11-25", "--days", "7"])
    assert res.exit_code == 0, res.output
    out = res.output
    for text in ("开卡转化率", "75.0%", "活跃会员比", "ARPU", "¥5,563.33", "复购率", "积分",
                 "16,811", "兑换率", "welcome", "33.3%", "等级分布", "金卡会员", "签到 DAU",
                 "推送已发送", "无法触达", "退订", "重要发展客户", "未消费",
                 "期内新开卡会员数 / 期内新关注人数"):
        assert text in out, text


def test_a_bad_date_is_refused_naming_the_option(db):
    res = CliRunner().invoke(main, ["report", "--as-of", "25/11/2026"])
    assert res.exit_code == 2 and "--as-of" in res.output
