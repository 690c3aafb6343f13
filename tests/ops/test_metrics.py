"""/metrics: requests by route and status, callback latency, store latency and conflicts,
pushes, job durations. Counters are process-wide, so tests compare before and after."""

from __future__ import annotations

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bot.handlers.metrics import count_requests
from bot.metrics import JOB_SECONDS, PUSHES, REGISTRY
from bot.web import CTX, create_app, errors
from storage import StoreUnavailable
from tests.api.support import Api, Clock, order_body
from tests.conftest import make_settings


async def scrape(client) -> dict[tuple[str, tuple], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(await resp.text()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def delta(after, before, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


async def test_requests_store_latency_conflicts_pushes_and_jobs(aiohttp_client, tmp_path, now):
    clock = Clock(now)
    client = await aiohttp_client(create_app(make_settings(tmp_path), clock=clock))
    ctx = client.app[CTX]
    api = Api(client, clock)
    before = await scrape(client)
    m = await ctx.members.register("o-metrics", now)
    await api.order(**order_body("MX1", m["member_code"], 1000, now))
    await api.get("/api/members/000000000000")
    await api.get("/api/members/000000000000", secret="wrong")
    await client.get("/no/such/page")
    ctx.store.conflicts = getattr(ctx.store, "conflicts", 0) + 2
    PUSHES.labels("birthday", "sent").inc()
    JOB_SECONDS.labels("birthday").observe(1.5)
    after = await scrape(client)
    req = "memberbot_http_requests_total"
    assert delta(after, before, req, route="/api/orders", method="POST", status="200") == 1
    assert delta(after, before, req, route="/api/members/{member_code}", method="GET",
                 status="404") == 1
    assert delta(after, before, req, route="/api/members/{member_code}", method="GET",
                 status="401") == 1
    assert delta(after, before, req, route="unmatched", method="GET", status="404") == 1
    # register and the order: at least two member updates were timed
    assert delta(after, before, "memberbot_store_update_seconds_count", store="sqlite") >= 2
    assert delta(after, before, "memberbot_store_conflicts_total", store="sqlite") == 2
    assert delta(after, before, "memberbot_pushes_total", kind="birthday", result="sent") == 1
    assert delta(after, before, "memberbot_job_seconds_count", job="birthday") == 1
    assert not any("MX1" in str(k) or m["member_code"] in str(k) for k in after)


async def test_callbacks_are_timed_and_errors_counted_by_status(aiohttp_client):
    async def ok(request):
        return web.Response(text="success")

    async def down(request):
        raise StoreUnavailable("redis down")

    # as in create_app: the error middleware inside, turning a store outage into a 503
    app = web.Application(middlewares=[count_requests, errors])
    app.router.add_post("/wechat", ok)
    app.router.add_post("/wecom", down)
    client = await aiohttp_client(app)

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0

    b_wechat = sample("memberbot_callback_seconds_count", route="/wechat")
    b_wecom_s = {r: sample("memberbot_callback_seconds_count", route=r)
                 for r in ("/wecom", "wecom")}
    b_wecom = sample("memberbot_http_requests_total", route="/wecom", method="POST",
                     status="503")
    assert (await client.post("/wechat", data=b"<xml/>")).status == 200
    assert (await client.post("/wecom", data=b"<xml/>")).status == 503
    assert sample("memberbot_callback_seconds_count", route="/wechat") == b_wechat + 1
    # /wecom is timed once, under its route like /wechat
    assert {r: sample("memberbot_callback_seconds_count", route=r) - b
            for r, b in b_wecom_s.items()} == {"/wecom": 1, "wecom": 0}
    assert sample("memberbot_http_requests_total", route="/wecom", method="POST",
                  status="503") == b_wecom + 1
