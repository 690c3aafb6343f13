"""Logs never contain a member's phone or birthday, at any level (PRODUCT.md 9)."""

from __future__ import annotations

import logging

from tests.api.support import Api


async def test_logs_never_contain_phone_or_birthday(bot, caplog, clock):
    caplog.set_level(logging.DEBUG)
    await bot.wx.follow("o_pii")
    r = await bot.wx.text("o_pii", "生日 1987-06-15")
    assert "1987" in r.content or "生日" in r.content
    m = await bot.member("o_pii")
    await bot.store.claim("phone", "13912345678", m.id)
    api = Api(bot.client, type("C", (), {"now": clock()})())
    for payload in ({"order_id": "PII-1", "phone": "13912345678", "amount_fen": 100,
                     "paid_at": clock().isoformat(), "store_id": "S"},
                    {"order_id": "PII-2", "phone": "13987654321", "amount_fen": 100,
                     "paid_at": clock().isoformat(), "store_id": "S"}):
        await api.call("POST", "/api/orders", payload)
    await bot.wx.text("o_pii", "生日 1987-06-15")  # a second time: refused
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in ("13912345678", "13987654321", "1987-06-15", "19870615"):
        assert secret not in text
