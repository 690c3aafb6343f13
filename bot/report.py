"""``memberbot report``: the analytics of PRODUCT.md 7 as terminal tables (or JSON)."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from . import analytics, campaign_report, experiment_report
from .members import Members
from .offline import run_with_members
from .operator import OperatorError, load_settings
from .rules import experiments


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"


def tables(r: dict[str, Any]) -> list[Table]:
    """One rich table per section, each metric with its definition."""
    p = r["period"]
    head = Table(title=f"会员运营报表 {p['first_day']} – {p['as_of']}（{p['days']} 天）",
                 title_justify="left")
    for col in ("指标", "值", "分子 / 分母", "定义"):
        head.add_column(col, overflow="fold")
    for k in r["kpis"]:
        num, den = k["numerator"], k["denominator"]
        if k["key"] in ("arpu", "aov"):
            frac = f"¥{num / 100:,.2f} / {den}"
        elif k["key"] == "points_issue_rate":
            frac = f"¥{num / 100:,.2f} / ¥{den / 100:,.2f}"
        else:
            frac = f"{num:,} / {den:,}"
        head.add_row(k["label"], k["text"], frac, k["definition"])
    m = r["members"]
    head.add_row("会员总数 / 新会员", f"{m['total']:,} / {m['new']:,}", "",
                 "期末会员数 / 期内开卡")
    head.add_row("订单 / 净消费", f"{m['orders']:,} / ¥{m['spend_fen'] / 100:,.2f}", "",
                 "期内支付的订单数 / 实付减退款")

    pts = r["points"]
    points = Table(title="积分", title_justify="left")
    for col in ("发放", "兑换", "过期", "退款冲回", "兑换率", "发放构成"):
        points.add_column(col)
    points.add_row(f"{pts['issued']:,}", f"{pts['redeemed']:,}", f"{pts['expired']:,}",
                   f"{pts['reversed']:,}", pct(analytics.ratio(pts["redeemed"], pts["issued"])),
                   ", ".join(f"{k} {v:,}" for k, v in pts["by_reason"].items()) or "—")

    coupons = Table(title="优惠券：发放 → 核销（按模板）", title_justify="left")
    for col in ("模板", "名称", "发放", "已核销", "核销率", "过期"):
        coupons.add_column(col)
    for c in r["coupons"]:
        coupons.add_row(c["template"], c["name"], str(c["issued"]), str(c["redeemed"]),
                        pct(c["rate"]), str(c["expired"]))

    tiers = Table(title="等级分布与变更", title_justify="left")
    for col in ("等级", "名称", "会员数", "期内升级至", "期内降级至"):
        tiers.add_column(col)
    for t in r["tiers"]:
        tiers.add_row(t["tier"], t["name"], f"{t['members']:,}", str(t["upgrades"]),
                      str(t["downgrades"]))

    ops = Table(title="签到、推送与退订", title_justify="left")
    for col in ("签到 DAU（日均）", "签到 DAU（末日）", "推送已发送", "推送失败", "无法触达",
                "退订", "取关"):
        ops.add_column(col)
    ck, pu, un = r["checkin"], r["pushes"]["by_status"], r["unsubscribes"]
    ops.add_row(f"{ck['average'] or 0:,.2f}", str(ck["last_day"]), str(pu["sent"]),
                str(pu["failed"]), str(pu["unreachable"]), str(un["opted_out"]),
                str(un["unfollowed"]))

    conf = Table(title="企业微信群发确认（按类型）", title_justify="left")
    for col in ("类型", "已创建", "已确认", "未确认", "非好友", "已收到其他群发", "等待确认"):
        conf.add_column(col)
    for kind, d in r["pushes"]["delivery"].items():
        conf.add_row(kind, *(str(d[c]) for c in analytics.DELIVERY_COLUMNS))

    wait = r["pushes"].get("awaiting_owner")
    if wait:
        conf.caption = (f"等待新负责人的会员（推送暂缓）：交接中 {wait['handover']:,}，"
                        f"负责人已离开 {wait['owner_left']:,}")
        conf.caption_justify = "left"

    chan = Table(title="渠道（渠道活码添加的会员）", title_justify="left")
    chan.add_column("渠道")
    chan.add_column("会员数")
    for state, n in r["channels"]["by_state"].items():
        chan.add_row(state, f"{n:,}")

    seg = Table(title="RFM 分群（截至期末）", title_justify="left")
    seg.add_column("分群")
    seg.add_column("会员数")
    for s in r["rfm"]:
        seg.add_row(s["segment"], f"{s['members']:,}")
    if r.get("offers"):
        offers = Table(title="积分兑换（限时爆款）：期内兑换与剩余库存", title_justify="left")
        for col in ("序号", "项目", "价格", "期内兑换", "总库存", "剩余"):
            offers.add_column(col)
        for o in r["offers"]:
            price = f"{o['points']:,} 积分" + (f" + ¥{o['cash_fen'] / 100:,.2f}"
                                              if o["cash_fen"] else "")
            left = o["left"] if o["left"] is not None else o["stock"]
            offers.add_row(str(o["n"]), f"{o['name']} ({o['key']})", price,
                           f"{o['exchanged']:,}", "—" if o["stock"] is None else f"{o['stock']:,}",
                           "—" if left is None else f"{left:,}")
        tables_extra = [offers]
    else:
        tables_extra = []
    age = r.get("points_age")
    out = [head, points, coupons, tiers, ops, conf, chan, seg, *tables_extra]
    if age:
        ages = Table(title=f"积分账龄（截至 {age['as_of']}；≥ {age['flag_months']} 个月未用"
                           f"的标 ⚑：{age['flagged_points']:,} 分，"
                           f"{age['flagged_members']:,} 人）",
                     title_justify="left")
        for col in ("账龄", "积分", "会员数", ""):
            ages.add_column(col)
        for b in age["buckets"]:
            ages.add_row(b["age"], f"{b['points']:,}", f"{b['members']:,}",
                         "⚑" if b["flagged"] else "")
        out.append(ages)
    c = r.get("card")
    if c and (c["configured"] or c["holders"]):
        card = Table(title="微信会员卡（截至现在）", title_justify="left")
        for col in ("开卡数", "已激活", "激活率"):
            card.add_column(col)
        card.add_row(f"{c['holders']:,}", f"{c['activated']:,}", pct(c["activation_rate"]))
        out.append(card)
    return out + campaign_report.tables(r.get("campaigns") or [])


def register(main: click.Group) -> None:
    @main.command("report")
    @click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]), default=None,
                  help="last day of the period (YYYY-MM-DD) [today]")
    @click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3660),
                  help="length of the period in days")
    @click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
    @click.option("--experiment", default=None, metavar="NAME",
                  help="an A/B test of the rules file: members, sent and conversions per "
                       "variant and for the holdout, with a 95 % interval")
    def report_cmd(as_of: datetime | None, days: int, as_json: bool,
                   experiment: str | None) -> None:
        """Programme analytics for a period: conversion, activity, points, coupons, tiers,
        check-ins, pushes, unsubscribes, RFM; or one A/B test (--experiment). Definitions:
        docs/operators.md."""
        settings = load_settings()
        if experiment is not None:

            async def one(members: Members, now: datetime) -> dict[str, Any]:
                exp = experiments.find(members.rules.experiments, experiment)
                if exp is None:
                    names = ", ".join(e.name for e in members.rules.experiments) or "none"
                    raise OperatorError(f"--experiment: no experiment {experiment!r} in the "
                                        f"rules file (known: {names})")
                return await members.experiment_figures(exp)

            r = run_with_members(settings, one)
            click.echo(json.dumps(r, ensure_ascii=False, indent=2) if as_json
                       else "\n".join(experiment_report.lines(r)))
            return

        async def go(members: Members, now: datetime) -> dict[str, Any]:
            day: date = as_of.date() if as_of else now.date()
            r = await members.report(day, days)
            r["campaigns"] = await members.campaign_figures()
            return r

        r = run_with_members(settings, go)
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False, indent=2))
            return
        console = Console()
        for t in tables(r):
            console.print(t)
