// Draws the dashboard's charts from the report embedded in the page (no network requests).
// When every chart has rendered, <html data-charts-ready="N"> is set (the browser test waits
// for it); a failure sets data-charts-error instead.
(function () {
  "use strict";
  var report = JSON.parse(document.getElementById("report-data").textContent);
  var pct = function (v) { return v == null ? "—" : (v * 100).toFixed(1) + "%"; };

  function bar(names, series, horizontal) {
    var cat = { type: "category", data: names, axisLabel: { interval: 0, fontSize: 11 } };
    var val = { type: "value", minInterval: 1 };
    return {
      tooltip: { trigger: "axis" },
      legend: series.length > 1 ? { top: 0 } : undefined,
      grid: { left: horizontal ? 110 : 48, right: 16, top: 32, bottom: 32 },
      xAxis: horizontal ? val : cat,
      yAxis: horizontal ? cat : val,
      series: series.map(function (s) {
        return { name: s.name, type: "bar", data: s.data, label: { show: true,
          position: horizontal ? "right" : "top" } };
      })
    };
  }

  var options = {
    checkin: {
      tooltip: { trigger: "axis" },
      grid: { left: 40, right: 16, top: 24, bottom: 32 },
      xAxis: { type: "category", data: report.checkin.days.map(function (d) { return d.slice(5); }) },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ name: "签到人数", type: "line", smooth: true, areaStyle: {},
                 data: report.checkin.dau }]
    },
    tiers: {
      tooltip: { trigger: "item" },
      legend: { bottom: 0 },
      series: [{ type: "pie", radius: ["35%", "65%"], label: { formatter: "{b}: {c}" },
                 data: report.tiers.map(function (t) { return { name: t.name, value: t.members }; }) }]
    },
    rfm: bar(report.rfm.map(function (s) { return s.segment; }),
             [{ name: "会员数", data: report.rfm.map(function (s) { return s.members; }) }], true),
    points: bar(["发放", "兑换", "过期", "冲回"],
                [{ name: "积分", data: [report.points.issued, report.points.redeemed,
                                        report.points.expired, report.points.reversed] }]),
    coupons: bar(report.coupons.map(function (c) { return c.name; }), [
      { name: "发放", data: report.coupons.map(function (c) { return c.issued; }) },
      { name: "核销", data: report.coupons.map(function (c) { return c.redeemed; }) }]),
    pushes: bar(["已发送", "失败", "无法触达", "待发送"], [{ name: "推送", data: [
      report.pushes.by_status.sent, report.pushes.by_status.failed,
      report.pushes.by_status.unreachable, report.pushes.by_status.pending] }])
  };
  options.coupons.tooltip.formatter = function (items) {
    var c = report.coupons[items[0].dataIndex];
    return c.name + "<br>发放 " + c.issued + "，核销 " + c.redeemed + "（" + pct(c.rate) + "）";
  };

  var nodes = document.querySelectorAll("[data-chart]");
  var charts = [];
  var done = 0;
  try {
    nodes.forEach(function (el) {
      var chart = echarts.init(el, null, { renderer: "canvas" });
      chart.on("finished", function once() {
        chart.off("finished", once);
        done += 1;
        if (done === nodes.length) {
          document.documentElement.setAttribute("data-charts-ready", String(done));
        }
      });
      chart.setOption(options[el.getAttribute("data-chart")]);
      charts.push(chart);
    });
  } catch (e) {
    document.documentElement.setAttribute("data-charts-error", String(e));
    throw e;
  }
  window.addEventListener("resize", function () {
    charts.forEach(function (c) { c.resize(); });
  });
})();
