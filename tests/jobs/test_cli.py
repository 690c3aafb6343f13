"""``memberbot jobs``: list, run (dry, as of a day), bad input, and a sender killed mid-call."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.members import Members
from bot.rules import load_rules
from storage import open_store
from tests.fakes.wecom_api import ADD, FakeWeComAPI

from .conftest import KEY
from .support import sh

MEMBERBOT = str(Path(sys.executable).parent / "memberbot")


@pytest.fixture
def api():
    fake = FakeWeComAPI()
    fake.start_thread()
    yield fake
    fake.stop_thread()


def environ(tmp_path, api: FakeWeComAPI) -> dict[str, str]:
    return {"MEMBERBOT_STORE": f"sqlite:///{tmp_path}/m.db", "MEMBERBOT_DATA_KEY": KEY,
            "MEMBERBOT_DATA_DIR": str(tmp_path), "WECHAT_TOKEN": "t",
            "MEMBERBOT_API_SECRET": "s", "WECOM_CORP_ID": api.corp_id,
            "WECOM_SECRET": api.secret, "WECOM_API_BASE": api.base, "WECHAT_APPID": "",
            "WECHAT_TEMPLATE_ID": "", "MEMBERBOT_RULES": "", "MEMBERBOT_TZ": ""}


def seed(tmp_path, n: int) -> None:
    """``n`` members due for points_expiry on 2026-11-25, each its own text and call."""

    async def go() -> None:
        store = open_store(f"sqlite:///{tmp_path}/m.db", KEY)
        await store.open()
        members = Members(store, load_rules())
        await members.ensure_stock()
        try:
            for i in range(n):
                at = sh(2025, 12, 25)
                mid = (await members.register(f"o{i}", at, unionid=f"u{i}"))["member_id"]
                await members.link_wecom(f"ext-{i}", at, staff="alice", unionid=f"u{i}")
                await members.record_order(mid, f"ord{i}", 10_000 + 100 * i, at, at)
        finally:
            await store.close()

    asyncio.run(go())


def summary(output: str) -> dict[str, str]:
    lines = [x.strip() for x in output.splitlines()[1:] if x.strip()]
    return {x.rsplit(None, 1)[0]: x.rsplit(None, 1)[1] for x in lines}


def invoke(tmp_path, api, *args: str):
    return CliRunner().invoke(main, ["jobs", *args], env=environ(tmp_path, api),
                              catch_exceptions=False)


@pytest.mark.parametrize("args, message", [
    (["run", "nope"], "unknown job kind 'nope'"),
    (["run", "points_expiry", "--as-of", "2026-02-30"], "not a date YYYY-MM-DD"),
    (["run", "points_expiry", "--as-of", "20261125"], "not a date YYYY-MM-DD"),
    (["run", "welcome"], "sent from the /wecom callback"),
    (["run", "birthday", "--as-of", "2099-05-20"], "is in the future"),
])
def test_bad_input_is_one_line_and_a_failure(tmp_path, api, args, message):
    res = invoke(tmp_path, api, *args)
    assert res.exit_code != 0
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_run_as_of_a_day_delivers_and_summarises(tmp_path, api):
    seed(tmp_path, 3)
    res = invoke(tmp_path, api, "run", "points_expiry", "--as-of", "2026-11-25", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "dry run" in res.output.splitlines()[0]
    assert summary(res.output)["would send via wecom"] == "3" and api.to(ADD) == []
    res = invoke(tmp_path, api, "run", "points_expiry", "--as-of", "2026-11-25")
    assert res.exit_code == 0, res.output
    out = summary(res.output)
    assert out["sent"] == "3" and out["enqueued"] == "3" and out["failed"] == "0"
    assert sum(api.delivered().values()) == 3
    res = invoke(tmp_path, api, "run", "points_expiry", "--as-of", "2026-11-24")
    assert "due" in res.output and len(api.to(ADD)) == 3  # not the day before
    res = CliRunner().invoke(main, ["jobs", "list"], env={**environ(tmp_path, api),
                                                          "COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    row = next(x for x in res.output.splitlines() if "points_expiry" in x)
    assert "daily 10:00" in row and "(as of 2026-11-24)" in row  # the last run


def test_a_configuration_error_fails_the_command_after_the_summary(tmp_path, api):
    seed(tmp_path, 1)
    env = {**environ(tmp_path, api), "WECOM_SECRET": "wrong"}
    res = CliRunner().invoke(main, ["jobs", "run", "points_expiry", "--as-of", "2026-11-25"],
                             env=env)
    assert res.exit_code == 1
    assert "held: config" in res.output and "error: WeCom refused the credentials" in res.output


def test_a_sender_killed_mid_call_then_rerun_reaches_everyone_once(tmp_path, api):
    n = 6
    seed(tmp_path, n)
    api.hang_on = 3  # the third call is received and never answered
    env = {**os.environ, **environ(tmp_path, api), "MEMBERBOT_OUTBOX_LEASE": "1"}
    cmd = [MEMBERBOT, "jobs", "run", "points_expiry", "--as-of", "2026-11-25"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while len(api.to(ADD)) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)  # the process we started, by its id
        proc.communicate()
    api.hang_on = None
    time.sleep(1.1)  # the dead sender's lease (MEMBERBOT_OUTBOX_LEASE=1) runs out
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reached = api.reached()
    assert set(reached) == {f"ext-{i}" for i in range(n)} and set(reached.values()) == {1}
    assert "uncertain" in done.stdout  # the held call: resolved, never resent
    db = __import__("sqlite3").connect(tmp_path / "m.db")
    st = Counter(s for (s,) in db.execute("SELECT status FROM outbox"))
    db.close()
    # calls in flight at the kill (the held one, and any whose answer was lost with the
    # process) are uncertain; everything else was sent by one run or the other
    assert st["created"] + st["uncertain"] == n and st["uncertain"] >= 1


def test_dry_run_shows_rendered_messages_with_masked_members(tmp_path, api):
    seed(tmp_path, 3)
    res = invoke(tmp_path, api, "run", "points_expiry", "--as-of", "2026-11-25", "--dry-run",
                 "--show", "2")
    assert res.exit_code == 0, res.output
    heads = [x for x in res.output.splitlines() if x.startswith("--- ")]
    assert len(heads) == 2 and all("/2 member " in h and "via wecom" in h for h in heads)
    assert re.search(r"member \d{4}\*{4}\d{4} \(普通会员\)", heads[0])
    assert "积分" in res.output.split(heads[0], 1)[1]  # the message text itself
    db = sqlite3.connect(tmp_path / "m.db")
    codes = [c for (c,) in db.execute("SELECT value FROM uniques WHERE kind='member_code'")]
    db.close()
    assert codes and not any(c in res.output for c in codes)  # never the whole code
    assert api.to(ADD) == []
    bad = invoke(tmp_path, api, "run", "points_expiry", "--show", "2")
    assert bad.exit_code != 0 and "use it with --dry-run" in bad.output


@pytest.mark.parametrize("body, line, what", [
    ("积分提醒\n{{ no_such_fact }}\n", 2, "'no_such_fact' is undefined"),
    ("积分提醒\n\n{% if %}\n", 3, "Expected an expression"),
])
def test_a_template_error_names_the_file_and_line(tmp_path, api, body, line, what):
    seed(tmp_path, 1)
    (tmp_path / "tpl" / "lifecycle").mkdir(parents=True)
    (tmp_path / "tpl" / "lifecycle" / "points_expiry.j2").write_text(body)
    env = {**environ(tmp_path, api), "MEMBERBOT_TEMPLATES": str(tmp_path / "tpl")}
    res = CliRunner().invoke(main, ["jobs", "run", "points_expiry", "--as-of", "2026-11-25",
                                    "--dry-run", "--show", "1"], env=env)
    # the run goes on past the member (the summary counts it), then says what failed
    assert res.exit_code == 1
    assert (f"error: message not rendered (points_expiry): template "
            f"{tmp_path / 'tpl' / 'lifecycle' / 'points_expiry.j2'} line {line}: {what}"
            ) in res.output
    assert "Traceback" not in res.output
