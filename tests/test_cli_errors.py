"""Bad configuration gets one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest


def serve(tmp_path, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MEMBERBOT_", "WECHAT_"))}
    e.update({"MEMBERBOT_DATA_DIR": str(tmp_path / "data"),
              "MEMBERBOT_DATA_KEY": base64.b64encode(b"x" * 32).decode(), **env})
    return subprocess.run([sys.executable, "-m", "bot", "serve", "--port", "0", "--no-scheduler"],
                          cwd=tmp_path, env=e, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env, expect", [
    ({"MEMBERBOT_STORE": "mongodb://localhost/x"}, "unknown store URL scheme"),
    ({"MEMBERBOT_STORE": "redis://127.0.0.1:1/0"}, "cannot reach Redis"),
    ({"MEMBERBOT_STORE": "sqlite:////proc/memberbot/m.db"}, "SQLite"),
    ({"MEMBERBOT_RULES": "missing.toml"}, "cannot read the rules file"),
    ({"MEMBERBOT_ENV": "production", "MEMBERBOT_DATA_KEY": ""}, "MEMBERBOT_DATA_KEY"),
    ({"MEMBERBOT_ENV": "production", "MEMBERBOT_SIDEBAR_PREVIEW": "1", "WECHAT_TOKEN": "t",
      "MEMBERBOT_API_SECRET": "s"}, "MEMBERBOT_SIDEBAR_PREVIEW=1 is refused"),
])
def test_bad_configuration_is_one_line(tmp_path, env, expect):
    p = serve(tmp_path, **env)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expect in errors[0], p.stderr


def test_malformed_rules_file_names_the_field(tmp_path):
    (tmp_path / "rules.toml").write_text('[points]\nexpiry_months = "twelve"\n')
    p = serve(tmp_path, MEMBERBOT_RULES="rules.toml")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "points.expiry_months" in p.stderr and "whole number" in p.stderr


def test_production_refuses_generated_secrets(tmp_path):
    p = serve(tmp_path, MEMBERBOT_ENV="production", MEMBERBOT_API_SECRET="",
              WECHAT_TOKEN="t")
    assert p.returncode != 0 and "MEMBERBOT_API_SECRET" in p.stderr
    assert not (tmp_path / "data" / "secrets.env").exists()


def test_busy_port_is_one_line_without_a_serving_claim(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        e = {k: v for k, v in os.environ.items() if not k.startswith(("MEMBERBOT_", "WECHAT_"))}
        e["MEMBERBOT_DATA_DIR"] = str(tmp_path / "data")
        p = subprocess.run([sys.executable, "-m", "bot", "serve", "--port", str(port)],
                           cwd=tmp_path, env=e, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr and "serving on" not in p.stderr, p.stderr
    assert "error: cannot listen on" in p.stderr


@pytest.mark.parametrize("args", [["report"], ["jobs", "list"]])
def test_operator_commands_say_error_in_one_line_when_the_store_is_down(tmp_path, args):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MEMBERBOT_", "WECHAT_"))}
    e.update(MEMBERBOT_DATA_DIR=str(tmp_path / "data"), MEMBERBOT_STORE="redis://127.0.0.1:1/0")
    p = subprocess.run([sys.executable, "-m", "bot", *args], cwd=tmp_path, env=e,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert [x for x in p.stderr.splitlines() if "rror" in x] == [
        "error: cannot reach Redis at redis://127.0.0.1:1/0 (Connection refused): start Redis "
        "or fix MEMBERBOT_STORE"], p.stderr
