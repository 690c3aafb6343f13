"""``memberbot chat`` with piped stdin against ``memberbot serve`` on a free port, both as
subprocesses sharing nothing but the data folder (where the server generated its secrets)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import AES_KEY, APPID

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMBERBOT_", "WECHAT_", "WECOM_"))}
    env.update(MEMBERBOT_DATA_DIR=str(tmp / "data"), PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.fixture(params=["plain", "safe"])
def server(request, tmp_path):
    extra = {"WECHAT_AES_KEY": AES_KEY, "WECHAT_APPID": APPID} if request.param == "safe" else {}
    env = clean_env(tmp_path, **extra)
    port = free_port()
    proc = subprocess.Popen([str(BIN / "memberbot"), "serve", "--port", str(port),
                             "--no-scheduler"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read().decode()) from None
                time.sleep(0.1)
        yield port, env, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def chat(port: int, env: dict, cwd: Path, stdin: str, user: str = "alice") -> str:
    out = subprocess.run([str(BIN / "memberbot"), "chat", "--user", user, "--url",
                          f"http://127.0.0.1:{port}/wechat"], input=stdin.encode(), cwd=cwd,
                         env=env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def test_chat_checks_in_through_the_signed_http_path(server):
    port, env, cwd = server
    out = chat(port, env, cwd, "签到\n积分\n/menu\n/menu CHECKIN\n/quit\n签到\n")
    assert "欢迎加入会员" in out  # a new user follows first
    assert "签到成功！+5 积分" in out and "当前积分：5" in out
    assert "CHECKIN" in out and "今天已签到" in out
    assert out.count("签到成功") == 1  # nothing after /quit
    again = chat(port, env, cwd, "/scan ZZZZZZ\n/unfollow\n/follow\n")
    assert "欢迎回来" in again and again.count("欢迎") == 1  # known user: no auto-follow
    assert "邀请码不存在" in again


def test_chat_reports_an_unreachable_bot(tmp_path):
    env = clean_env(tmp_path)
    out = subprocess.run([str(BIN / "memberbot"), "chat", "--url",
                          f"http://127.0.0.1:{free_port()}/wechat"], input=b"hi\n",
                         cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert out.returncode == 1 and "memberbot serve" in out.stderr.decode()
    assert "Traceback" not in out.stderr.decode()
