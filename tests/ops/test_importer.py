"""memberbot import-orders: 数据清洗 of a messy file, the exact report, idempotency."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.importer import ImportFailed, import_orders, write_report
from bot.members import Members
from bot.rules import load_rules
from storage import open_store
from tests.conftest import serve_cli_env

from .support import seed_member

FIXTURE = Path(__file__).parent.parent / "fixtures" / "orders_messy.csv"
KEY = b"k" * 32

EXPECTED_REPORT = """\
row,order_id,status,reason,detail
5,T-001,skipped,test_account,openid matches '(?i)(test|tester|demo)[ _-]?[0-9]*'
6,T-002,skipped,test_account,name matches '测试(账号|用户|员)[0-9]*'
7,H-004,rejected,bad_amount,"amount_fen must be whole fen, got '12.80'"
8,H-005,rejected,bad_amount,field amount_fen must be at least 0
9,H-006,rejected,bad_date,field paid_at is not an ISO 8601 date-time
10,H-007,rejected,unknown_member,no member with openid
11,H-001,rejected,duplicate,order_id already on row 2
12,H-008,rejected,missing_member,"none of member_code, openid, unionid, phone is given"
13,,rejected,bad_order_id,field order_id is required
15,H-010,rejected,bad_date,field paid_at lies in the future
16,H-011,rejected,insufficient_points,积分不足：当前 128 分，需要 500 分
19,H-002,rejected,duplicate,order_id already on row 3
21,H-014,rejected,bad_amount,field amount_fen is required
23,H-016,rejected,bad_amount,"amount_fen must be whole fen, got '1,280'"
24,H-017,rejected,bad_row,"12 cells, the header has 11"
25,H-018,rejected,bad_store_id,field store_id is required
26,H-019,rejected,coupon_expired,该优惠券已过期
"""


async def seed(members: Members, now: datetime) -> None:
    joined = now - timedelta(days=800)
    await seed_member(members, "alice", "100000000001", joined, openid="o-alice")
    await seed_member(members, "bob", "100000000002", joined, openid="o-bob", unionid="u-bob")
    await seed_member(members, "carol", "100000000003", joined, openid="o-carol",
                      phone="13800000001", coupon=("welcome", "WEKC2345ABCD", joined))
    await seed_member(members, "tester", "100000000009", joined, openid="o-test-01")


@pytest.fixture
async def members(tmp_path, rules, now):
    store = open_store(f"sqlite:///{tmp_path}/m.db", KEY)
    await store.open()
    m = Members(store, rules)
    await seed(m, now)
    yield m
    await store.close()


def report_text(summary) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("row", "order_id", "status", "reason", "detail"))
    for p in summary.problems:
        w.writerow((p.row, p.order_id, p.status, p.reason, p.detail))
    return buf.getvalue()


async def balances(members, now):
    out = {}
    for mid in ("alice", "bob", "carol"):
        m = await members.get(mid)
        card = members.card(m, now)
        out[mid] = (card["balance"], m.tier, m.lifetime_spend)
    return out


async def test_a_messy_file_gives_the_exact_report_and_ledgers(members, now, tmp_path):
    s = await import_orders(members, FIXTURE, now)
    assert report_text(s) == EXPECTED_REPORT
    assert (s.rows, s.imported, s.already, s.skipped, s.rejected) == (25, 8, 0, 2, 15)
    assert await balances(members, now) == {
        "alice": (158, "normal", 15800),   # 128 + 30; H-011 refused: 128 < 500 points
        "bob": (3040, "silver", 304000),   # 20 expired, 3000, then 20 + 20 at x2
        "carol": (0, "normal", 5000),      # 2024 order: its 50 points expired on 2025-03-01
    }
    rows = await members.store.ledger(member_id="carol", kinds=["order", "credit", "expire"])
    assert [(r.kind, r.points, r.amount_fen, r.ref) for r in rows] == [
        ("order", 0, 5000, "order:H-003"), ("credit", 50, 0, "order:H-003"),
        ("expire", -50, 0, "order:H-003")]
    bob = await members.get("bob")
    assert [(o.order_id, o.points, o.multiplier) for o in
            sorted(bob.orders.values(), key=lambda o: o.paid_at)] == [
        ("H-009", 20, 1), ("H-002", 3000, 1), ("H-015", 20, 2), ("H-020", 20, 2)]
    out = tmp_path / "r.csv"
    write_report(out, s)
    assert out.read_text(encoding="utf-8").replace("\r\n", "\n") == EXPECTED_REPORT


async def test_a_second_import_changes_nothing(members, now):
    await import_orders(members, FIXTURE, now)
    ledger = await members.store.ledger()
    before = await balances(members, now)
    again = await import_orders(members, FIXTURE, now + timedelta(minutes=5), concurrency=3)
    assert (again.imported, again.already, again.rejected) == (0, 8, 15)
    # refused rows are tried again (and would import once their cause is fixed); alice
    # now has the 30 points of H-013 as well
    assert report_text(again) == EXPECTED_REPORT.replace("当前 128 分", "当前 158 分")
    assert await members.store.ledger() == ledger
    assert await balances(members, now) == before


async def test_the_same_order_with_another_amount_later_is_a_conflict(members, now, tmp_path):
    f = tmp_path / "one.csv"
    f.write_text("order_id,openid,amount_fen,paid_at,store_id\n"
                 "Z-1,o-alice,1000,2026-11-01T10:00:00+08:00,S\n", encoding="utf-8")
    assert (await import_orders(members, f, now)).imported == 1
    f.write_text(f.read_text().replace("1000", "2000"), encoding="utf-8")
    s = await import_orders(members, f, now)
    assert [(p.row, p.reason) for p in s.problems] == [(2, "order_conflict")]


async def test_skip_patterns_are_configurable(members, now, tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("order_id,openid,name,amount_fen,paid_at,store_id\n"
                 "P-1,o-alice,内部员工,1000,2026-11-01T10:00:00+08:00,S\n"
                 "P-2,o-test-01,,1000,2026-11-01T10:00:00+08:00,S\n", encoding="utf-8")
    s = await import_orders(members, f, now, patterns=["内部.*"])
    assert [(p.row, p.reason) for p in s.problems] == [(2, "test_account")]
    assert s.imported == 1  # o-test-01 is an ordinary member: no pattern matches it whole


async def test_test_accounts_match_whole_fields_not_substrings(members, now, tmp_path):
    # issue 9 defect 10: a real member whose openid contains "test" is imported
    f = tmp_path / "t.csv"
    f.write_text("order_id,openid,name,amount_fen,paid_at,store_id\n"
                 "W-1,o-test-01,,1000,2026-11-01T10:00:00+08:00,S\n"
                 "W-2,o-alice,Contest 冠军,1000,2026-11-01T10:00:00+08:00,S\n"
                 "W-3,test,,1000,2026-11-01T10:00:00+08:00,S\n"
                 "W-4,o-alice,测试,1000,2026-11-01T10:00:00+08:00,S\n"
                 "W-5,Tester_7,,1000,2026-11-01T10:00:00+08:00,S\n", encoding="utf-8")
    s = await import_orders(members, f, now)
    assert [(p.order_id, p.reason) for p in s.problems] == [
        ("W-3", "test_account"), ("W-4", "test_account"), ("W-5", "test_account")]
    assert s.imported == 2
    assert "W-1" in (await members.get("tester")).orders


async def test_test_account_patterns_come_from_the_rules_file(tmp_path, now):
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text('[importer]\ntest_accounts = ["(?i)qa-[0-9]+"]\n', encoding="utf-8")
    rules = load_rules(rules_file)
    store = open_store(f"sqlite:///{tmp_path}/r.db", KEY)
    await store.open()
    try:
        members = Members(store, rules)
        await seed(members, now)
        f = tmp_path / "q.csv"
        f.write_text("order_id,openid,name,amount_fen,paid_at,store_id\n"
                     "Q-1,o-alice,QA-17,1000,2026-11-01T10:00:00+08:00,S\n"
                     "Q-2,o-alice,test,1000,2026-11-01T10:00:00+08:00,S\n", encoding="utf-8")
        s = await import_orders(members, f, now)
        assert [(p.order_id, p.reason, p.detail) for p in s.problems] == [
            ("Q-1", "test_account", "name matches '(?i)qa-[0-9]+'")]
        assert s.imported == 1
    finally:
        await store.close()


async def test_a_paid_at_before_the_earliest_day_is_a_rejected_row(members, now, tmp_path):
    # issue 9 defect 3: year 1 (a till with a reset clock) is refused, not stored
    f = tmp_path / "d.csv"
    f.write_text("order_id,openid,amount_fen,paid_at,store_id\n"
                 "D-1,o-alice,1000,0001-01-01T00:00:00,S\n"
                 "D-2,o-alice,1000,1999-12-31T23:59:59,S\n"
                 "D-3,o-alice,1000,1999-12-31T16:00:00Z,S\n"
                 "D-4,o-alice,1600000,2026-11-01T10:00:00+08:00,S\n", encoding="utf-8")
    s = await import_orders(members, f, now)
    detail = "field paid_at lies before 2000-01-01 (orders.earliest_paid_at)"
    assert [(p.order_id, p.reason, p.detail) for p in s.problems] == [
        ("D-1", "bad_date", detail), ("D-2", "bad_date", detail)]
    # no offset = Shanghai: 2000-01-01 00:00 there is 1999-12-31 16:00 UTC, just in
    assert s.imported == 2
    alice = await members.get("alice")
    assert sorted(alice.orders) == ["D-3", "D-4"] and alice.tier == "gold"


async def test_gb18030_files_from_excel_are_read(members, now, tmp_path):
    f = tmp_path / "gbk.csv"
    f.write_bytes("order_id,openid,name,amount_fen,paid_at,store_id\n"
                  "G-1,o-alice,张三,1000,2026-11-01T10:00:00+08:00,门店一\n".encode("gb18030"))
    s = await import_orders(members, f, now)
    assert [(p.reason, p.detail) for p in s.problems] == [
        ("bad_store_id", f"field store_id does not match {r'^[A-Za-z0-9][A-Za-z0-9_.:-]*$'}")]


@pytest.mark.parametrize(("header", "message"), [
    ("order_id,openid,amount,paid_at,store_id", "unknown column 'amount'"),
    ("order_id,openid,amount_fen,store_id", "missing column 'paid_at'"),
    ("order_id,name,amount_fen,paid_at,store_id", "needs a member column"),
])
async def test_a_file_with_wrong_columns_is_refused_naming_it(members, now, tmp_path,
                                                             header, message):
    f = tmp_path / "bad.csv"
    f.write_text(header + "\n", encoding="utf-8")
    with pytest.raises(ImportFailed) as e:
        await import_orders(members, f, now)
    assert message in e.value.message and "bad.csv:1" in e.value.message


def test_the_command_imports_and_writes_the_report(tmp_path, monkeypatch, rules, now):
    db = tmp_path / "cli.db"

    async def prepare():
        store = open_store(f"sqlite:///{db}", KEY)
        await store.open()
        await seed(Members(store, rules), now)
        await store.close()

    asyncio.run(prepare())
    serve_cli_env(monkeypatch, tmp_path, f"sqlite:///{db}")
    src = tmp_path / "orders.csv"
    shutil.copy(FIXTURE, src)
    res = CliRunner().invoke(main, ["import-orders", str(src)])
    assert res.exit_code == 0, res.output
    assert "25 rows: 8 imported, 0 already imported, 2 skipped (test accounts), 15 rejected" \
        in res.output
    report = (tmp_path / "orders.report.csv").read_text(encoding="utf-8")
    assert report.replace("\r\n", "\n") == EXPECTED_REPORT
    res = CliRunner().invoke(main, ["import-orders", str(src), "--report",
                                    str(tmp_path / "again.csv")])
    assert "0 imported, 8 already imported" in res.output
    res = CliRunner().invoke(main, ["import-orders", str(src), "--skip-pattern", "("])
    assert res.exit_code == 2 and "--skip-pattern" in res.output
