"""Outbound webhooks to a real receiver on a local port: every event once per id, signed like
the store API, retried with backoff after failures, one sender per endpoint across processes,
shown on /admin."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import aiohttp
import pytest
from aiohttp import web

from bot import changes
from bot.members import Members
from bot.settings import SettingsError
from bot.web import CTX, create_app
from bot.webhooks import Delivery, Endpoint, parse
from storage import open_store
from tests.conftest import make_settings

SECRET = "receiver-secret-0123456789"


class Receiver:
    """A CRM's webhook endpoint: checks the signature from the documented rule, records."""

    def __init__(self) -> None:
        self.accepted: list[dict] = []
        self.refused = 0
        self.fail_next = 0
        self.bad_signatures = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        ts = request.headers["X-Memberbot-Timestamp"]
        msg = f"{ts}\nPOST\n{request.path}\n".encode() + body
        want = hmac.new(SECRET.encode(), msg, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, request.headers["X-Memberbot-Signature"]):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.fail_next:
            self.fail_next -= 1
            self.refused += 1
            return web.Response(status=503)
        ev = json.loads(body)
        assert request.headers["X-Memberbot-Event-Id"] == ev["id"]
        assert request.headers["X-Memberbot-Event"] == ev["type"]
        self.accepted.append(ev)
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/memberbot", self.hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hooks/memberbot"

    async def close(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.close()


@pytest.fixture
async def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/w.db", b"k" * 32)
    await s.open()
    yield s
    await s.close()


async def activity(members: Members, now) -> None:
    await members.ensure_stock()
    for i in range(3):
        mid = (await members.register(f"o-w{i}", now))["member_id"]
        await members.record_order(mid, f"W{i}", 12_000, now, now, store_id="S")
    await members.refund("W0", "WR0", None, now)


async def drain(deliveries: list[Delivery], ep: Endpoint, rounds: int = 400) -> None:
    for _ in range(rounds):
        done = await asyncio.gather(*(d.run_once(ep) for d in deliveries))
        st = await deliveries[0].state(ep)
        if not any(done) and not st.get("last_error"):
            left, _ = await changes.read(deliveries[0].store, deliveries[0].tz,
                                         int(st["cursor"]), 1, ep.wants)
            if not left:
                return
        await asyncio.sleep(0.005)
    raise AssertionError("webhook delivery did not finish")


async def test_each_event_once_signed_after_retries_with_two_senders(
        store, rules, now, receiver):
    await activity(Members(store, rules), now)
    ep = Endpoint("crm", receiver.url, SECRET, ("member.created", "order.recorded",
                                                "order.refunded", "points.changed"))
    receiver.fail_next = 3  # the receiver is down for a moment
    waits: list[int] = []

    def quick(attempt: int) -> float:
        waits.append(attempt)
        return 0.01

    async with aiohttp.ClientSession() as session:
        # two processes' senders on one store: the lock lets one deliver at a time
        a = Delivery(store, rules.tz, [ep], session, backoff=quick)
        b = Delivery(store, rules.tz, [ep], session, backoff=quick)
        await drain([a, b], ep)
    ids = [e["id"] for e in receiver.accepted]
    assert len(ids) == len(set(ids))  # once per event id
    types = [e["type"] for e in receiver.accepted]
    assert types.count("member.created") == 3 and types.count("order.recorded") == 3
    assert types.count("order.refunded") == 1 and "coupon.issued" not in types
    assert ids == sorted(ids, key=lambda i: int(i[4:]))  # in commit order
    assert receiver.refused == 3 and waits == [1, 2, 3] and receiver.bad_signatures == 0
    st = await a.state(ep)
    assert st["delivered"] == len(ids) and st["failed"] == 0 and st["last_error"] == ""
    # nothing new: nothing sent again
    async with aiohttp.ClientSession() as session:
        assert await Delivery(store, rules.tz, [ep], session).run_once(ep) == 0
    assert len(receiver.accepted) == len(ids)


async def test_a_backoff_holds_the_endpoint_until_it_is_due(store, rules, now, receiver):
    await activity(Members(store, rules), now)
    ep = Endpoint("crm", receiver.url, SECRET, ("order.recorded",))
    receiver.fail_next = 1
    clock = [1000.0]
    async with aiohttp.ClientSession() as session:
        d = Delivery(store, rules.tz, [ep], session, wall=lambda: clock[0])
        assert await d.run_once(ep) == 0
        st = await d.state(ep)
        assert st["attempts"] == 1 and st["retry_at"] == 1001.0 and "503" in st["last_error"]
        assert await d.run_once(ep) == 0 and receiver.refused == 1  # not yet due: not sent
        clock[0] = 1001.5
        assert await d.run_once(ep) == 3
    assert [e["data"]["order_id"] for e in receiver.accepted] == ["W0", "W1", "W2"]


def test_the_configuration_names_what_is_wrong():
    ok = parse(json.dumps([{"name": "crm", "url": "https://crm.example.com/h",
                            "secret": SECRET, "events": ["points.changed"]}]))
    assert ok == [Endpoint("crm", "https://crm.example.com/h", SECRET, ("points.changed",))]
    for raw, msg in [("[{", "not JSON"),
                     ('[{"url": "ftp://x", "secret": "' + SECRET + '"}]',
                      r"entry 1 \(webhook1\): url must be an http\(s\) address"),
                     ('[{"url": "https://x", "secret": "short"}]', "at least 16"),
                     ('[{"url": "https://x", "secret": "' + SECRET + '", "events": ["points"]}]',
                      "unknown event 'points'")]:
        with pytest.raises(SettingsError, match=msg):
            parse(raw)


async def test_the_server_delivers_in_the_background_and_admin_shows_it(
        aiohttp_client, tmp_path, rules, now, receiver):
    hooks = json.dumps([{"name": "crm", "url": receiver.url, "secret": SECRET,
                         "events": ["member.created"]}])
    app = create_app(make_settings(tmp_path, webhooks=hooks, admin_password="pw-for-admin"),
                     clock=lambda: now)
    client = await aiohttp_client(app)
    await app[CTX].members.register("o-bg", now)
    for _ in range(500):
        if receiver.accepted:
            break
        await asyncio.sleep(0.01)
    assert [e["type"] for e in receiver.accepted] == ["member.created"]
    r = await client.post("/admin/login", data={"password": "pw-for-admin"},
                          allow_redirects=True)
    delivery = app[CTX].webhooks
    for _ in range(500):  # the receiver answered; the delivery's state is saved just after
        if (await delivery.state(delivery.endpoints[0]))["delivered"]:
            break
        await asyncio.sleep(0.01)
    text = await (await client.get("/admin")).text()
    assert r.status == 200 and 'data-webhook="crm"' in text
    assert '<td data-field="delivered">1</td>' in text


async def test_admin_shows_a_webhook_that_delivered_nothing_yet(aiohttp_client, tmp_path):
    hooks = json.dumps([{"name": "crm", "url": "http://127.0.0.1:9/never", "secret": SECRET,
                         "events": ["member.created"]}])
    app = create_app(make_settings(tmp_path, webhooks=hooks, admin_password="pw-for-admin"))
    client = await aiohttp_client(app)
    await client.post("/admin/login", data={"password": "pw-for-admin"})
    r = await client.get("/admin")
    text = await r.text()
    assert r.status == 200 and 'data-webhook="crm"' in text
    assert '<td data-field="delivered">0</td>' in text
