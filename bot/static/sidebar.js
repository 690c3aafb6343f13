/* memberbot sales-staff sidebar: learn the customer (wx.agentConfig + getCurExternalContact,
 * or the preview member), show the card, send scripts with sendChatMessage, issue coupons and
 * adjust points. Every action carries a request_id kept until it is answered, so a double tap
 * is one action on the server. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("sb-config").textContent);
  var root = document.documentElement;
  var $ = function (sel, el) { return (el || document).querySelector(sel); };
  var who = {};          // {external_userid} or, in preview, {member_code}
  var card = null;
  var pending = {};      // action name -> request_id while unanswered

  function newId() {
    var a = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function query(obj) {
    return Object.keys(obj).map(function (k) {
      return encodeURIComponent(k) + "=" + encodeURIComponent(obj[k]);
    }).join("&");
  }

  function api(method, path, body) {
    var opts = { method: method, credentials: "same-origin", headers: {} };
    if (body) {
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-CSRF-Token"] = cfg.csrf;
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts).then(function (r) {
      return r.json().catch(function () { return { message: "HTTP " + r.status }; })
        .then(function (data) { return { status: r.status, data: data }; });
    });
  }

  function show(state) {
    ["loading", "notice", "card"].forEach(function (s) {
      $("[data-state=" + s + "]").classList.toggle("sb-hidden", s !== state);
    });
    $("#sb").setAttribute("aria-busy", state === "loading" ? "true" : "false");
  }

  function notice(title, text, join) {
    $("[data-notice-title]").textContent = title;
    $("[data-notice]").textContent = text;
    $("[data-join]").classList.toggle("sb-hidden", !join);
    if (join) { $("[data-send-join]").onclick = function () { sendText(join); }; }
    show("notice");
    root.dataset.ready = "notice";
  }

  var toastTimer = null;
  function toast(text, ok) {
    var t = $("[data-toast]");
    $("[data-toast-text]").textContent = text;
    $("[data-toast-icon]").className = ok === false ? "weui-icon-warn weui-icon_toast"
      : "weui-icon-success-no-circle weui-icon_toast";
    t.classList.remove("sb-hidden");
    root.dataset.lastToast = text;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { t.classList.add("sb-hidden"); }, 1800);
  }

  function confirmDialog(title, body, onOk) {
    var d = $("[data-dialog]");
    $("[data-dialog-title]").textContent = title;
    $("[data-dialog-body]").textContent = body;
    d.classList.remove("sb-hidden");
    $("[data-dialog-cancel]").onclick = function () { d.classList.add("sb-hidden"); };
    $("[data-dialog-ok]").onclick = function () { onOk(function () { d.classList.add("sb-hidden"); }); };
  }

  function set(name, text) {
    var el = $("[data-field=" + name + "]");
    el.textContent = text;
    return el;
  }

  function row(title, sub, ft) {
    var cell = document.createElement("div");
    cell.className = "weui-cell";
    var bd = document.createElement("div");
    bd.className = "weui-cell__bd";
    var p = document.createElement("div");
    p.textContent = title;
    bd.appendChild(p);
    if (sub) {
      var s = document.createElement("div");
      s.className = "sb-sub";
      s.textContent = sub;
      bd.appendChild(s);
    }
    cell.appendChild(bd);
    if (ft !== undefined) {
      var f = document.createElement("div");
      f.className = "weui-cell__ft";
      f.textContent = ft;
      cell.appendChild(f);
    }
    return cell;
  }

  function fill(list, items, empty) {
    var el = $("[data-list=" + list + "]");
    el.textContent = "";
    if (!items.length) {
      var e = document.createElement("div");
      e.className = "sb-empty";
      e.textContent = empty;
      el.appendChild(e);
    }
    items.forEach(function (it) { el.appendChild(it); });
    return el;
  }

  function render(c) {
    card = c;
    set("nickname", c.nickname || "会员");
    set("member_code", c.member_code);
    set("tier", c.tier.name);
    if (c.next_tier) {
      set("progress", "再消费 ¥" + c.next_tier.gap_yuan + " 升级" + c.next_tier.name +
          "（已累计 ¥" + c.next_tier.spent_yuan + " / ¥" + c.next_tier.threshold_yuan + "）");
      $("[data-field=progress_bar]").style.width = c.next_tier.percent + "%";
    } else {
      set("progress", "已是最高等级");
      $("[data-field=progress_bar]").style.width = "100%";
    }
    set("balance", String(c.balance) + (c.debt ? "（待抵扣 " + c.debt + "）" : "")
        + (c.pending && c.pending.points ? "（待生效 " + c.pending.points + "，"
           + c.pending.date + " 起）" : ""));
    set("expiring", c.expiring.points ? c.expiring.points + " 分 · " + c.expiring.date + " 起到期" : "无");
    set("streak", c.streak + " 天" + (c.checked_in_today ? " · 今日已签" : ""));
    set("invites", c.invites + " 人");
    set("rfm", c.rfm || "未消费");
    var tags = set("tags", c.tags.length ? "" : "—");
    c.tags.forEach(function (t) {
      var s = document.createElement("span");
      s.className = "sb-tag";
      s.textContent = t;
      tags.appendChild(s);
    });
    set("opted_out", c.opted_out ? "已退订" : "接收中");
    set("coupon_count", "(" + c.coupons.length + ")");
    fill("coupons", c.coupons.map(function (x) {
      var r = row(x.name + (x.label ? " · " + x.label : ""), x.code, "至 " + x.valid_until);
      r.dataset.coupon = x.code;
      return r;
    }), "暂无可用优惠券");
    fill("orders", c.orders.map(function (o) {
      var r = row("¥" + o.paid_yuan + (o.refunded_yuan !== "0" ? "（退 ¥" + o.refunded_yuan + "）" : ""),
                  o.paid_at + " · " + o.order_id, "+" + o.points + " 分");
      r.dataset.order = o.order_id;
      return r;
    }), "暂无订单");
    fill("scripts", c.scripts.map(function (s) {
      var cell = document.createElement("div");
      cell.setAttribute("role", "button");
      cell.tabIndex = 0;
      cell.className = "weui-cell weui-cell_access";
      cell.dataset.script = s.kind;
      var bd = document.createElement("div");
      bd.className = "weui-cell__bd";
      var t = document.createElement("div");
      t.className = "sb-script-title";
      t.textContent = s.title;
      var p = document.createElement("div");
      p.className = "sb-script";
      p.textContent = s.text;
      bd.appendChild(t);
      bd.appendChild(p);
      var ft = document.createElement("div");
      ft.className = "weui-cell__ft";
      ft.textContent = "发送";
      cell.appendChild(bd);
      cell.appendChild(ft);
      cell.onclick = function () { sendText(s.text); };
      return cell;
    }), "暂无话术");
    var staff = c.staff;
    fill("coupon_actions", staff.coupons.map(function (tpl) {
      var b = document.createElement("a");
      b.tabIndex = 0;
      b.setAttribute("role", "button");
      b.className = "weui-btn weui-btn_mini weui-btn_default";
      b.dataset.issue = tpl.key;
      b.textContent = tpl.name;
      b.onclick = function () {
        confirmDialog("发放" + tpl.name, tpl.name + "（" + tpl.label + "）发给会员 " + c.member_code + "？",
                      function (close) { issue(tpl.key, close); });
      };
      return b;
    }), "你的角色不能发券");
    var canAdjust = staff.adjust_per_action > 0;
    $("[data-adjust]").classList.toggle("sb-hidden", !canAdjust);
    $("[data-adjust-title]").classList.toggle("sb-hidden", !canAdjust);
    $("[data-adjust-submit]").parentNode.classList.toggle("sb-hidden", !canAdjust);
    set("quota", "单次 ±" + staff.adjust_per_action +
        (staff.adjust_per_day ? "，今日已用 " + staff.adjusted_today + "/" + staff.adjust_per_day : "，不限每日总额"));
    show("card");
    root.dataset.ready = "card";
  }

  function load() {
    return api("GET", "/sidebar/api/customer?" + query(who)).then(function (r) {
      if (r.status === 200) {
        render(r.data);
      } else if (r.status === 404) {
        notice("还不是会员", r.data.message, r.data.script);
      } else {
        notice("无法查看", r.data.message || ("HTTP " + r.status));
      }
    }).catch(function (e) { notice("网络异常", String(e)); });
  }

  function act(name, path, body, done) {
    if (!pending[name]) { pending[name] = newId(); }
    body.request_id = pending[name];
    Object.keys(who).forEach(function (k) { body[k] = who[k]; });
    return api("POST", path, body).then(function (r) {
      if (pending[name] === body.request_id) { delete pending[name]; }
      if (done) { done(); }
      if (r.status === 200) {
        toast(name === "points" ? "已调整" : "已发放");
        return load();
      }
      toast(r.data.message || ("HTTP " + r.status), false);
    });
  }

  function issue(template, close) {
    act("coupon:" + template, "/sidebar/api/coupons", { template: template }, close);
  }

  $("[data-adjust-submit]").onclick = function () {
    var pts = parseInt($("#sb-points").value, 10);
    var reason = $("#sb-reason").value.trim();
    if (!pts) { toast("请输入积分", false); return; }
    if (!reason) { toast("请填写原因", false); return; }
    act("points", "/sidebar/api/points", { points: pts, reason: reason }).then(function () {
      $("#sb-points").value = "";
      $("#sb-reason").value = "";
    });
  };

  function sendText(text) {
    if (window.wx && wx.invoke) {
      wx.invoke("sendChatMessage", { msgtype: "text", enterChat: true, text: { content: text } },
        function (res) {
          if (res.err_msg === "sendChatMessage:ok") { toast("已发送"); } else { toast(res.err_msg || "发送失败", false); }
        });
    } else {
      toast("预览模式：未发送", true);
    }
    root.dataset.lastScript = text;
  }

  function wecom() {
    api("GET", "/sidebar/jsapi?" + query({ url: location.href.split("#")[0] })).then(function (r) {
      if (r.status !== 200) { notice("无法连接企业微信", r.data.message || ("HTTP " + r.status)); return; }
      var s = r.data;
      var apis = ["getCurExternalContact", "sendChatMessage"];
      wx.config({ beta: true, debug: false, appId: s.config.appId, timestamp: s.config.timestamp,
                  nonceStr: s.config.nonceStr, signature: s.config.signature, jsApiList: apis });
      wx.ready(function () {
        wx.agentConfig({
          corpid: s.agentConfig.corpid, agentid: s.agentConfig.agentid,
          timestamp: s.agentConfig.timestamp, nonceStr: s.agentConfig.nonceStr,
          signature: s.agentConfig.signature, jsApiList: apis,
          success: function () {
            wx.invoke("getCurExternalContact", {}, function (res) {
              if (res.err_msg === "getCurExternalContact:ok") {
                who = { external_userid: res.userId };
                load();
              } else {
                notice("请在客户聊天中打开", "从与客户的单聊工具栏打开会员助手。");
              }
            });
          },
          fail: function (res) { notice("企业微信授权失败", (res && res.errMsg) || "agentConfig"); }
        });
      });
      wx.error(function (res) { notice("企业微信授权失败", (res && res.errMsg) || "config"); });
    });
  }

  if (cfg.preview) {
    who = { member_code: cfg.preview_member };
    load();
  } else if (window.wx && wx.config) {
    wecom();
  } else {
    notice("请在企业微信中打开", "会员助手需要在企业微信的客户聊天工具栏中使用。");
  }
})();
