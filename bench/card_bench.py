"""Card sync benchmark: how fast a backlog of member-card updates drains, and what the card
hook costs a check-in.

    .venv/bin/python bench/card_bench.py [--members 2000] [--backends sqlite redis]

For each backend: ``--members`` card holders (activated, not timed) each check in once with
the sender stopped (timed: check-ins/s with the card hook), then one ``CardSync.drain`` sends
the backlog to the fake card API, a real HTTP server on a local port (timed: updates/s). The
same check-ins without a card are timed too, for the hook's cost. Redis uses ``REDIS_URL``
(default db 15, flushed). Numbers compare runs on one machine; they are not constants.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.card_sync import CardSync  # noqa: E402
from bot.channels.wechat import WeChatClient  # noqa: E402
from bot.channels.wechat_card import CardAPI  # noqa: E402
from bot.members import Members  # noqa: E402
from bot.rules import load_rules  # noqa: E402
from bot.settings import Settings  # noqa: E402
from storage import open_store  # noqa: E402
from tests.fakes.wechat_api import FakeWeChatAPI  # noqa: E402

RULES = load_rules()
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=RULES.tz)
FORM = {"user_info": {"common_field_list": [
    {"name": "USER_FORM_INFO_FLAG_BIRTHDAY", "value": "1990-05-20"}]}}


async def check_ins(members: Members, ids: list[str], conc: int) -> float:
    sem = asyncio.Semaphore(conc)

    async def one(mid: str) -> None:
        async with sem:
            await members.check_in(mid, NOW)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(m) for m in ids))
    return len(ids) / (time.perf_counter() - t0)


async def run(backend: str, n: int, conc: int, api: FakeWeChatAPI) -> dict:
    tmp = tempfile.mkdtemp(prefix="card-bench-")
    url = (f"sqlite:///{tmp}/b.db" if backend == "sqlite"
           else os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    store = open_store(url, os.urandom(32))
    await store.open()
    if backend == "redis":
        await store.client.flushdb()
    members = Members(store, RULES)
    plain, carded = [], []
    for i in range(n):
        plain.append((await members.register(f"p{i}", NOW))["member_id"])
        mid = (await members.register(f"c{i}", NOW))["member_id"]
        await members.bind_card(mid, "pBENCH", f"C{i}", NOW, key=f"g{i}")
        await members.submit_card_form(mid, f"C{i}", FORM, NOW, key=f"f{i}")
        carded.append(mid)
    settings = Settings(env="development", data_dir=Path(tmp), store_url=url,
                        data_key="", wechat_appid=api.appid, wechat_appsecret=api.secret,
                        wechat_api_base=api.base)
    async with aiohttp.ClientSession() as session:
        sync = CardSync(store, members, CardAPI(WeChatClient(store, settings, session)),
                        clock=lambda: NOW, concurrency=conc)
        await sync.drain()  # the activations: not timed
        plain_rate = await check_ins(members, plain, conc)
        card_rate = await check_ins(members, carded, conc)
        before = len(api.to("/card/membercard/updateuser"))
        t0 = time.perf_counter()
        done = await sync.drain()
        drain_s = time.perf_counter() - t0
        sent = len(api.to("/card/membercard/updateuser")) - before
    await store.close()
    return {"backend": backend, "members": n, "checkins_per_s_plain": round(plain_rate),
            "checkins_per_s_card": round(card_rate), "updates_sent": sent,
            "drain_s": round(drain_s, 2), "updates_per_s": round(sent / drain_s),
            "result": dict(done)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--backends", nargs="+", default=["sqlite", "redis"])
    a = ap.parse_args()
    for backend in a.backends:
        api = FakeWeChatAPI()
        api.cards["pBENCH"] = {"card": {}, "status": "CARD_STATUS_VERIFY_OK"}
        await api.start()
        try:
            print(await run(backend, a.members, a.concurrency, api), flush=True)
        finally:
            await api.close()


if __name__ == "__main__":
    asyncio.run(main())
