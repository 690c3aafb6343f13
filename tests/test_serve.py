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
