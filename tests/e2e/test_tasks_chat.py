"""任务 in chat: the tasks open today with the member's progress, after signed API reports."""

from __future__ import annotations


async def test_tasks_reply_shows_today_progress_and_the_profile_task(bot, clock):
    await bot.wx.follow("o_task")
    m = await bot.member("o_task")
    r = await bot.wx.text("o_task", "任务")
    assert "分享好友 +20积分" in r.content and "今日 0/3" in r.content
    assert "完善资料 +50积分" in r.content and "已完成" not in r.content
    for i in range(3):
        await bot.ctx.members.report_task(m.id, f"chat-{i}", "share", clock.t, clock.t)
    await bot.ctx.members.report_task(m.id, "chat-a", "article", clock.t, clock.t)
    await bot.wx.text("o_task", "手机 13800138000")
    await bot.wx.text("o_task", "生日 1990-05-20")
    r = await bot.wx.click("o_task", "TASKS")
    lines = r.content.splitlines()
    assert any(x.startswith("· 分享好友") and "今日 3/3，明天再来" in x for x in lines), r.content
    assert any(x.startswith("· 阅读文章") and "今日 1/2" in x for x in lines), r.content
    assert any(x.startswith("· 完善资料") and x.endswith("已完成") for x in lines), r.content
    clock.advance(days=1)
    r = await bot.wx.text("o_task", "任务")
    assert "今日 0/3" in r.content
