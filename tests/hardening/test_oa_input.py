"""Hostile chat input gets a hint, never 系统繁忙 or a traceback (issue 15, item 3)."""

from __future__ import annotations

import logging


async def test_exchange_with_a_huge_number_gets_the_usage_hint(bot, caplog):
    await bot.wx.follow("o_big")
    caplog.set_level(logging.WARNING)
    for arg in ("9" * 4400, "1" * 20, "1.5", "12345678"):
        r = await bot.wx.text("o_big", f"兑换 {arg}")
        assert r.status == 200 and "格式：兑换 序号" in r.content, arg
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
