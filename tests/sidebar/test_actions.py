"""The card and the actions over HTTP: the card equals the ledger; who may see whom; coupons
and points within the role's rights, each once per request_id, CSRF-checked, audited."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from bot.rules import points
from bot.rules.timeutil import local_day

from .conftest import ADMIN, CUSTOMER, OTHER, STAFF, csrf, ctx, login, seed_customer


@pytest.fixture
async def seeded(client, fake, now):
    mid = await seed_customer(ctx(client).members, now)
    return mid


async def staff_client(client, fake, userid=STAFF):
    await login(client, fake, userid)
    return await csrf(client)


async def post(client, path, token, body):
    r = await client.post(path, json=body, headers={"X-CSRF-Token": token})
    return r.status, await r.json()


async def ledger(client, mid):
    return await ctx(client).store.ledger(member_id=mid)


async def test_the_card_shows_what_the_ledger_says(client, fake, seeded, now):
    await login(client, fake)
    r = await client.get("/sidebar/api/customer", params={"external_userid": CUSTOMER})
    assert r.status == 200
    card = await r.json()
    rows = await ledger(client, seeded)
    m = await ctx(client).members.get(seeded)
    assert card["balance"] == sum(x.points for x in rows) == \
        points.balance(m, local_day(now, ctx(client).rules.tz))
    assert card["member_code"] == m.member_code and card["nickname"] == "王小明"
    assert card["tier"]["name"] == "普通会员"
    # ¥1,288 + ¥366 of ¥3,000 lifetime for silver
    assert card["next_tier"] == {"key": "silver", "name": "银卡会员", "gap_fen": 134_600,
                                 "gap_yuan": "1346", "threshold_yuan": "3000",
                                 "spent_yuan": "1654", "percent": 55}
    assert [o["order_id"] for o in card["orders"]] == ["ORD-0012", "ORD-0011"]
    assert card["orders"][0]["paid_yuan"] == "366"
    issued = [x.data.get("code") or x.ref for x in rows if x.kind == "coupon_issue"]
    assert [c["template"] for c in card["coupons"]] == ["welcome"] and len(issued) == 1
    assert card["streak"] == 2 and card["invites"] == 0
    assert card["tags"] == ["爱喝拿铁", "门店A"] and card["opted_out"] is False
    assert card["rfm"] == m.rfm and card["rfm"]
    assert card["staff"]["role"] == "staff"
    assert [c["key"] for c in card["staff"]["coupons"]] == ["wakeup", "birthday", "points_500"]
    kinds = [s["kind"] for s in card["scripts"]]
    assert "card" in kinds and "welcome_wecom" in kinds and "coupon_reminder" in kinds
    script = next(s for s in card["scripts"] if s["kind"] == "card")
    assert m.member_code in script["text"] and "1346" in script["text"]


async def test_the_card_lists_the_last_five_orders_newest_first(client, fake, seeded, now):
    from datetime import timedelta

    members = ctx(client).members
    for i in range(6):
        await members.record_order(seeded, f"LATE-{i}", 1_000 + i, now - timedelta(hours=6 - i),
                                   now)
    await login(client, fake)
    card = await (await client.get("/sidebar/api/customer",
                                   params={"external_userid": CUSTOMER})).json()
    assert [o["order_id"] for o in card["orders"]] == [f"LATE-{i}" for i in (5, 4, 3, 2, 1)]
    assert card["orders"][0]["paid_yuan"] == "10.05"


async def test_without_wecom_configured_the_page_says_what_to_set(make_client):
    client = await make_client(wecom_corp_id="", wecom_agent_id="")
    r = await client.get("/sidebar", allow_redirects=False)
    assert r.status == 503 and "WECOM_AGENT_ID" in await r.text()


async def test_points_expiring_within_30_days_are_shown_with_their_date(client, fake, now):
    from datetime import timedelta

    members = ctx(client).members
    mid = await seed_customer(members, now - timedelta(days=350))  # orders ~13 months ago
    await login(client, fake)
    card = await (await client.get("/sidebar/api/customer",
                                   params={"external_userid": CUSTOMER})).json()
    m = await members.get(mid)
    lo, hi = now.date().isoformat(), (now + timedelta(days=30)).date().isoformat()
    soon = [lot for lot in m.lots if lo <= lot.expires_on <= hi]
    assert soon and card["expiring"] == {"points": sum(x.remaining for x in soon),
                                         "date": min(x.expires_on for x in soon)}
    assert any(s["kind"] == "points_expiry" for s in card["scripts"])


async def test_another_staff_members_customer_is_403_unless_admin(client, fake, seeded):
    await login(client, fake, OTHER)
    r = await client.get("/sidebar/api/customer", params={"external_userid": CUSTOMER})
    assert r.status == 403 and (await r.json())["code"] == "not_your_customer"
    token = await csrf(client)
    status, body = await post(client, "/sidebar/api/coupons", token, {
        "external_userid": CUSTOMER, "template": "wakeup", "request_id": "req-other-1"})
    assert status == 403
    before = await ledger(client, seeded)
    status, _ = await post(client, "/sidebar/api/points", token, {
        "external_userid": CUSTOMER, "points": 10, "reason": "x", "request_id": "req-other-2"})
    assert status == 403 and await ledger(client, seeded) == before
    client.session.cookie_jar.clear()
    await login(client, fake, ADMIN)
    r = await client.get("/sidebar/api/customer", params={"external_userid": CUSTOMER})
    assert r.status == 200 and (await r.json())["staff"]["role"] == "admin"


async def test_a_contact_who_is_not_a_member_is_404_with_a_join_hint(make_client, fake):
    client = await make_client(join_url="https://mp.weixin.qq.com/join-qr")
    await login(client, fake)
    r = await client.get("/sidebar/api/customer", params={"external_userid": "wm-stranger"})
    assert r.status == 404
    body = await r.json()
    assert body["code"] == "not_member" and "不是会员" in body["message"]
    assert "关注公众号" in body["hint"]
    assert "https://mp.weixin.qq.com/join-qr" in body["script"]
    r = await client.get("/sidebar/api/customer")
    assert r.status == 400 and (await r.json())["field"] == "external_userid"


async def test_issuing_a_coupon_updates_the_card_and_a_double_tap_is_one_coupon(
        client, fake, seeded):
    token = await staff_client(client, fake)
    body = {"external_userid": CUSTOMER, "template": "wakeup", "request_id": "tap-0001"}
    (s1, r1), (s2, r2) = [await post(client, "/sidebar/api/coupons", token, body)
                          for _ in range(2)]
    assert s1 == s2 == 200 and r1["code"] == r2["code"]
    card = await (await client.get("/sidebar/api/customer",
                                   params={"external_userid": CUSTOMER})).json()
    assert Counter(c["template"] for c in card["coupons"]) == {"welcome": 1, "wakeup": 1}
    rows = await ledger(client, seeded)
    audit = [x for x in rows if x.kind == "staff_coupon"]
    assert len(audit) == 1 and audit[0].data["staff"] == STAFF
    assert audit[0].data["code"] == r1["code"]
    assert await ctx(client).store.stock("wakeup") == 1_000_000 - 1
    # a new request_id is a second coupon
    s3, r3 = await post(client, "/sidebar/api/coupons", token, {**body, "request_id": "tap-0002"})
    assert s3 == 200 and r3["code"] != r1["code"]


async def test_a_coupon_outside_the_role_is_refused_and_nothing_is_written(client, fake,
                                                                          seeded):
    token = await staff_client(client, fake)
    before = await ledger(client, seeded)
    for template in ("welcome", "memberday_gold", "nope"):
        status, body = await post(client, "/sidebar/api/coupons", token, {
            "external_userid": CUSTOMER, "template": template, "request_id": "req-0000001"})
        assert status == 403 and body["code"] == "role_coupon"
    assert await ledger(client, seeded) == before
    assert await ctx(client).store.stock("welcome") == 1_000_000 - 1  # the join coupon only


async def test_points_within_the_cap_are_adjusted_once_per_request(client, fake, seeded):
    token = await staff_client(client, fake)
    card0 = await (await client.get("/sidebar/api/customer",
                                    params={"external_userid": CUSTOMER})).json()
    body = {"external_userid": CUSTOMER, "points": 150, "reason": "补录门店积分",
            "request_id": "adj-00000001"}
    (s1, r1), (s2, r2) = [await post(client, "/sidebar/api/points", token, body)
                          for _ in range(2)]
    assert s1 == s2 == 200 and r1 == r2 and r1["balance"] == card0["balance"] + 150
    adj = [x for x in await ledger(client, seeded) if x.kind == "adjust"]
    assert len(adj) == 1 and adj[0].data == {"staff": STAFF, "reason": "补录门店积分",
                                             "delta": 150, "via": "sidebar",
                                             "before": card0["balance"],
                                             "after": card0["balance"] + 150}
    card = await (await client.get("/sidebar/api/customer",
                                   params={"external_userid": CUSTOMER})).json()
    assert card["balance"] == card0["balance"] + 150
    assert card["staff"]["adjusted_today"] == 150  # the double tap counted once


@pytest.mark.parametrize("pts", [201, -201, 10_000])
async def test_points_over_the_per_action_cap_are_refused_and_nothing_is_written(
        client, fake, seeded, pts):
    token = await staff_client(client, fake)
    before = await ledger(client, seeded)
    status, body = await post(client, "/sidebar/api/points", token, {
        "external_userid": CUSTOMER, "points": pts, "reason": "补偿",
        "request_id": "adj-over-0001"})
    assert status == 403 and body["code"] == "adjust_cap"
    assert await ledger(client, seeded) == before


async def test_the_daily_cap_counts_every_adjustment_of_the_staff_member(client, fake, seeded,
                                                                        now):
    members = ctx(client).members
    second = "wmCUSTOMER002"
    mid2 = await seed_customer(members, now, external_userid=second)
    token = await staff_client(client, fake)
    deltas = [200, -200, 200, 200, 150]  # |…| = 950 across two members
    for i, d in enumerate(deltas):
        eu = CUSTOMER if i % 2 == 0 else second
        status, body = await post(client, "/sidebar/api/points", token, {
            "external_userid": eu, "points": d, "reason": "活动补偿",
            "request_id": f"daily-{i:04d}"})
        assert status == 200, body
    before = (await ledger(client, seeded), await ledger(client, mid2))
    status, body = await post(client, "/sidebar/api/points", token, {
        "external_userid": second, "points": 51, "reason": "活动补偿",
        "request_id": "daily-over"})
    assert status == 403 and body["code"] == "adjust_daily_cap" and "50" in body["message"]
    assert (await ledger(client, seeded), await ledger(client, mid2)) == before
    # exactly up to the cap is allowed; one point more is not
    status, body = await post(client, "/sidebar/api/points", token, {
        "external_userid": second, "points": -50, "reason": "扣回", "request_id": "daily-neg"})
    assert status == 200, body
    status, body = await post(client, "/sidebar/api/points", token, {
        "external_userid": CUSTOMER, "points": 1, "reason": "x", "request_id": "daily-last"})
    assert status == 403 and body["code"] == "adjust_daily_cap"
    # another staff member has a day of their own; the admin role has no daily cap
    client.session.cookie_jar.clear()
    admin_token = await staff_client(client, fake, ADMIN)
    status, body = await post(client, "/sidebar/api/points", admin_token, {
        "external_userid": CUSTOMER, "points": 5000, "reason": "大额补偿",
        "request_id": "admin-0001"})
    assert status == 200, body
    status, body = await post(client, "/sidebar/api/points", admin_token, {
        "external_userid": CUSTOMER, "points": 10_001, "reason": "太多",
        "request_id": "admin-0002"})
    assert status == 403 and body["code"] == "adjust_cap"


async def test_a_refused_adjustment_gives_its_daily_reservation_back(client, fake, now):
    await ctx(client).members.link_wecom(CUSTOMER, now, staff=STAFF)  # no points yet
    token = await staff_client(client, fake)
    card = await (await client.get("/sidebar/api/customer",
                                   params={"external_userid": CUSTOMER})).json()
    assert card["balance"] < 200
    status, body = await post(client, "/sidebar/api/points", token, {
        "external_userid": CUSTOMER, "points": -200, "reason": "扣回",
        "request_id": "neg-0000001"})
    assert status == 409 and body["code"] == "insufficient_points"
    card = await (await client.get("/sidebar/api/customer",
                                   params={"external_userid": CUSTOMER})).json()
    assert card["staff"]["adjusted_today"] == 0


async def test_a_staff_member_without_the_role_is_refused(make_client, fake, tmp_path, now):
    rules = tmp_path / "rules.toml"
    rules.write_text('[staff.roles.viewer]\ncoupons = []\nadjust_per_action = 0\n\n'
                     '[staff.users]\nintern01 = "viewer"\n', encoding="utf-8")
    client = await make_client(rules_path=str(rules))
    members = ctx(client).members
    mid = await seed_customer(members, now, staff="intern01")
    token = await staff_client(client, fake, "intern01")
    r = await client.get("/sidebar/api/customer", params={"external_userid": CUSTOMER})
    card = await r.json()
    assert r.status == 200 and card["staff"]["role"] == "viewer"
    assert card["staff"]["coupons"] == [] and card["staff"]["adjust_per_action"] == 0
    before = await ledger(client, mid)
    status, body = await post(client, "/sidebar/api/coupons", token, {
        "external_userid": CUSTOMER, "template": "wakeup", "request_id": "viewer-001"})
    assert status == 403 and body["code"] == "role_coupon"
    status, body = await post(client, "/sidebar/api/points", token, {
        "external_userid": CUSTOMER, "points": 1, "reason": "x", "request_id": "viewer-002"})
    assert status == 403 and body["code"] == "role_adjust"
    assert await ledger(client, mid) == before


async def test_actions_need_the_csrf_token_a_reason_and_a_request_id(client, fake, seeded):
    token = await staff_client(client, fake)
    before = await ledger(client, seeded)
    body = {"external_userid": CUSTOMER, "points": 10, "reason": "补录",
            "request_id": "csrf-000001"}
    r = await client.post("/sidebar/api/points", json=body)
    assert r.status == 403 and (await r.json())["code"] == "csrf"
    r = await client.post("/sidebar/api/points", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert r.status == 403
    r = await client.post("/sidebar/api/coupons", json={**body, "template": "wakeup"})
    assert r.status == 403
    status, out = await post(client, "/sidebar/api/points", token, {**body, "reason": "  "})
    assert status == 400 and out["code"] == "adjust_reason"
    status, out = await post(client, "/sidebar/api/points", token, {**body, "request_id": ""})
    assert status == 400 and out["code"] == "request_id"
    status, out = await post(client, "/sidebar/api/points", token, {**body, "points": "10"})
    assert status == 400 and out["field"] == "points"
    r = await client.post("/sidebar/api/points", data=b"{", headers={"X-CSRF-Token": token})
    assert r.status == 400
    assert await ledger(client, seeded) == before
    client.session.cookie_jar.clear()
    r = await client.post("/sidebar/api/points", json=body, headers={"X-CSRF-Token": token})
    assert r.status == 401


async def test_admins_read_the_audit_trail(make_client, fake, now):
    client = await make_client(admin_password="audit-pass")
    mid = await seed_customer(ctx(client).members, now)
    code = (await ctx(client).members.get(mid)).member_code
    token = await staff_client(client, fake)
    await post(client, "/sidebar/api/points", token, {
        "external_userid": CUSTOMER, "points": -20, "reason": "误加积分扣回",
        "request_id": "audit-0001"})
    await post(client, "/sidebar/api/coupons", token, {
        "external_userid": CUSTOMER, "template": "birthday", "request_id": "audit-0002"})
    r = await client.get("/admin/audit", allow_redirects=False)
    assert r.status == 303  # admins only
    r = await client.post("/admin/login", data={"password": "audit-pass", "next": "/admin/audit"})
    assert r.status == 200
    html = await r.text()
    assert html.count(f">{code}</a>") == 2 and html.count(f"<td>{STAFF}</td>") == 2
    assert "积分 -20" in html and "误加积分扣回" in html and "发券 生日礼券" in html
    assert "2026-11-25 10:00:00" in html
    r = await client.get("/admin/audit", params={"staff": "nobody"})
    assert "没有员工操作" in await r.text()


async def test_pending_points_are_shown_apart_from_the_balance(make_client, fake, now, tmp_path):
    rules = tmp_path / "pending.toml"
    rules.write_text("[points]\npending_days = 7\n", encoding="utf-8")
    client = await make_client(rules_path=str(rules))
    await seed_customer(ctx(client).members, now)  # the last order 3 days ago: 366 pending
    await login(client, fake)
    card = await (await client.get("/sidebar/api/customer",
                                   params={"external_userid": CUSTOMER})).json()
    assert card["pending"]["points"] == 366
    assert card["pending"]["date"] == (now + timedelta(days=4)).date().isoformat()
