"""`memberbot serve` with no configuration at all: generates local secrets, answers /healthz."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_without_configuration_answers_healthz(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMBERBOT_", "WECHAT_", "WECOM_"))}
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port),
                          "--no-scheduler"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        body = None
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    body = json.load(r)
                    break
            except OSError:
                assert p.poll() is None, p.stderr.read()
                time.sleep(0.1)
        assert body is not None and body["ok"] is True and body["store"] == "sqlite"
        secrets = (tmp_path / "data" / "secrets.env").read_text()
        for name in ("MEMBERBOT_DATA_KEY", "WECHAT_TOKEN", "MEMBERBOT_API_SECRET"):
            assert f"{name}=" in secrets
        assert oct((tmp_path / "data" / "secrets.env").stat().st_mode & 0o777) == "0o600"
        assert (tmp_path / "data" / "memberbot.db").exists()
    finally:
        p.terminate()
        _, err = p.communicate(timeout=20)
    assert "warning: generated" in err and "Traceback" not in err


def test_dotenv_templates_and_startup_line_say_what_was_loaded(tmp_path):
    """MEMBERBOT_TEMPLATES in .env reaches the replies (settings are read in one place), and
    the start-up line names the rules file, templates, store and admin state."""
    import shutil
    import urllib.parse

    from tests.e2e.wechat_client import sign, text_xml

    (tmp_path / "mine" / "replies").mkdir(parents=True)
    (tmp_path / "mine" / "replies" / "hint.j2").write_text("来自 .env 的模板\n")
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "docs", "rules.example.toml"),
                tmp_path / "brand.toml")
    (tmp_path / ".env").write_text("MEMBERBOT_TEMPLATES=mine\nMEMBERBOT_RULES=brand.toml\n"
                                   "MEMBERBOT_ADMIN_PASSWORD=secret-pw\nWECHAT_TOKEN=tok\n"
                                   "MEMBERBOT_STORE=sqlite:///./data/brand.db\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMBERBOT_", "WECHAT_", "WECOM_"))}
    made = subprocess.run([sys.executable, "-m", "bot", "admin", "add-user", "vera", "--role",
                           "viewer", "--password", "viewer-password"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port),
                          "--no-scheduler"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                break
            except OSError:
                assert p.poll() is None, p.stderr.read()
                time.sleep(0.1)
        ts, nonce = str(int(time.time())), "n1"
        q = urllib.parse.urlencode({"timestamp": ts, "nonce": nonce,
                                    "signature": sign("tok", ts, nonce)})
        req = urllib.request.Request(f"http://127.0.0.1:{port}/wechat?{q}",
                                     data=text_xml("o_env", "随便说点").encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            reply = r.read().decode()
    finally:
        p.terminate()
        _, err = p.communicate(timeout=20)
    assert "来自 .env 的模板" in reply
    line = next(x for x in err.splitlines() if "serving on" in x)
    assert "rules: brand.toml" in line
    assert f"templates: {tmp_path / 'mine'} over built-in" in line
    assert "store: sqlite:///./data/brand.db" in line
    assert "admin: password login (MEMBERBOT_ADMIN_PASSWORD) and 1 account" in line
    assert "secret-pw" not in err
