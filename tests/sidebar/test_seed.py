"""``memberbot sidebar-seed``: a demo customer for preview mode, the same one when repeated."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys

from storage import open_store

KEY = base64.b64encode(b"x" * 32).decode()


def seed(tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMBERBOT_", "WECHAT_"))}
    env.update({"MEMBERBOT_DATA_DIR": str(tmp_path / "data"), "MEMBERBOT_DATA_KEY": KEY})
    return subprocess.run([sys.executable, "-m", "bot", "sidebar-seed", "--staff", "zhangsan"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_sidebar_seed_makes_one_demo_customer_for_preview(tmp_path):
    first, again = seed(tmp_path), seed(tmp_path)
    assert first.returncode == 0, first.stderr
    url = re.search(r"(/sidebar\?preview_member=(\d{12})&preview_staff=zhangsan)", first.stdout)
    assert url and url.group(1) in again.stdout  # the same member again

    async def check():
        store = open_store(f"sqlite:///{tmp_path}/data/memberbot.db", KEY)
        await store.open()
        try:
            mid = await store.lookup("external_userid", "wm_demo_customer")
            m = await store.get(mid)
            return m, await store.count_members()
        finally:
            await store.close()

    m, count = asyncio.run(check())
    assert count == 1 and m.member_code == url.group(2)
    assert m.follow_users == ["zhangsan"] and len(m.orders) == 2 and m.checkin_streak == 2
