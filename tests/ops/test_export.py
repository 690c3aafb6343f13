"""memberbot export members|ledger|orders: CSV or JSON lines, --since, phones masked unless
--with-pii."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import timedelta

from click.testing import CliRunner

from bot.cli import main
from bot.members import Members
from storage import open_store

KEY = "a2FrYWthYWthYWthYWthYWthYWthYWthYWthYWthYWs="


def seed(tmp_path, rules, now) -> None:
    async def go():
        s = open_store(f"sqlite:///{tmp_path}/e.db", KEY)
        await s.open()
        members = Members(s, rules)
        await members.ensure_stock()
        old = now - timedelta(days=10)
        a = (await members.register("o-old", old))["member_id"]
        await members.record_order(a, "E-OLD", 5_000, old, old, store_id="S1")
        b = (await members.register("o-new", now))["member_id"]
        await s.claim("phone", "13912345678", b)
        await members.run(b, now, lambda m: (setattr(m, "phone", "13912345678") or {}, []))
        await members.record_order(b, "E-NEW", 128_00, now, now, store_id="SH-001")
        await members.refund("E-NEW", "E-R1", 2_800, now)
        await s.close()

    asyncio.run(go())


def env_of(tmp_path):
    return {"MEMBERBOT_STORE": f"sqlite:///{tmp_path}/e.db", "MEMBERBOT_DATA_KEY": KEY,
            "MEMBERBOT_DATA_DIR": str(tmp_path), "WECHAT_TOKEN": "t",
            "MEMBERBOT_API_SECRET": "s", "MEMBERBOT_RULES": "", "MEMBERBOT_TZ": ""}


def run(tmp_path, *args, input=None):
    return CliRunner().invoke(main, ["export", *args], env=env_of(tmp_path), input=input)


run.env = env_of


def test_members_csv_masks_phones_unless_with_pii(tmp_path, rules, now):
    seed(tmp_path, rules, now)
    res = run(tmp_path, "members", "-o", str(tmp_path / "m.csv"))
    assert res.exit_code == 0, res.output
    assert "exported 2 members rows" in res.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "m.csv").read_text())))
    assert len(rows) == 2
    new = next(r for r in rows if r["openid"] == "o-new")
    assert new["phone"] == "139****5678" and "13912345678" not in (tmp_path / "m.csv").read_text()
    assert new["balance"] == "100" and new["tier_name"] == "普通会员"
    assert new["joined_at"].endswith("+08:00") and new["birthday"] == ""
    res = run(tmp_path, "members", "--with-pii", "--format", "jsonl")
    assert res.exit_code == 1 and "--with-pii is for admins" in res.output
    for name, role in (("ada", "admin"), ("olaf", "operator")):
        made = CliRunner().invoke(main, ["admin", "add-user", name, "--role", role,
                                         "--password", f"{name}-password"],
                                  env=run.env(tmp_path))
        assert made.exit_code == 0, made.output
    res = run(tmp_path, "members", "--with-pii", "--as", "olaf", input="olaf-password\n")
    assert res.exit_code == 1 and "not an enabled admin account" in res.output
    assert "13912345678" not in res.output
    res = run(tmp_path, "members", "--with-pii", "--as", "ada", input="wrong-password\n")
    assert res.exit_code == 1 and "13912345678" not in res.output
    res = run(tmp_path, "members", "--with-pii", "--as", "ada", "--format", "jsonl",
              input="ada-password\n")
    assert res.exit_code == 0 and "phones and birthdays in clear" in res.output
    assert "13912345678" in res.output


def test_since_and_formats_for_ledger_and_orders(tmp_path, rules, now):
    seed(tmp_path, rules, now)
    day = (now - timedelta(days=1)).date().isoformat()
    res = run(tmp_path, "orders", "--since", day, "--format", "jsonl")
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.output.splitlines() if x.startswith("{")]
    assert [(r["kind"], r["order_id"], r["paid_fen"]) for r in rows] == [
        ("order", "E-NEW", 12_800), ("refund", "E-NEW", -2_800)]
    assert rows[1]["refund_id"] == "E-R1" and rows[0]["store_id"] == "SH-001"
    assert rows[0]["paid_at"].endswith("+08:00")
    res = run(tmp_path, "orders")
    assert res.output.count("E-OLD") == 1
    res = run(tmp_path, "ledger", "--since", day)
    lines = list(csv.DictReader(io.StringIO(res.stdout)))
    assert {r["kind"] for r in lines} >= {"join", "order", "credit", "refund", "reverse"}
    assert all(r["at"] >= day for r in lines)
    res = run(tmp_path, "members", "--since", day, "--format", "jsonl")
    assert [json.loads(x)["openid"] for x in res.output.splitlines()
            if x.startswith("{")] == ["o-new"]
    bad = run(tmp_path, "ledger", "--since", "yesterday")
    assert bad.exit_code == 1 and "--since 'yesterday' is not a date YYYY-MM-DD" in bad.output
