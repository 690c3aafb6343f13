"""Every storage key the application builds: idempotency keys (one event always maps to
one key) and the kv keys of small shared state. Backends lay out their own keys."""

from __future__ import annotations


def wechat_message(openid: str, msg_id: str | None, create_time: str, event: str | None) -> str:
    """A WeChat callback: ``MsgId`` for messages, FromUserName+CreateTime+Event for events."""
    if msg_id:
        return f"wx:msg:{msg_id}"
    return f"wx:evt:{openid}:{create_time}:{event or ''}"


def register(openid: str) -> str:
    return f"register:{openid}"


def checkin(member_id: str, day: str) -> str:
    return f"checkin:{member_id}:{day}"


def activity(member_id: str, day: str) -> str:
    return f"activity:{member_id}:{day}"


def order(order_id: str) -> str:
    return f"order:{order_id}"


# the grant a restore gives each campaign budget: what the backup says it had used
# (storage/budgets.py; orders take their grants under their own key, order(order_id))
BUDGET_RESTORED = "backup:restored"


def refund(refund_id: str) -> str:
    return f"refund:{refund_id}"


def task_event(event_id: str) -> str:
    """A task completion reported with ``POST /api/events``: once per event id."""
    return f"event:{event_id}"


def invite(invitee_id: str) -> str:
    return f"invite:{invitee_id}"


def invite_ladder(inviter_id: str, rung: int) -> str:
    """The unit of coupon stock an inviter's ladder rung takes."""
    return f"ladder:{inviter_id}:{rung}"


def invite_backfill(inviter_id: str, count: int) -> str:
    """The backfill of an inviter's rewarded-invite count (from before the ladder) to ``count``."""
    return f"invite_backfill:{inviter_id}:{count}"


def invite_notice(invitee_id: str) -> str:
    """Marks the customer-service message telling an inviter of the reward as sent."""
    return f"notice:invite:{invitee_id}"


def invite_undo(invitee_id: str) -> str:
    """A bind that closed an invite cycle, reversed on the invitee's side."""
    return f"invite_undo:{invitee_id}"


def invite_graph_lease() -> str:
    """The short lease binds hold while they read the inviter chain and commit (kv)."""
    return "lease:invite-graph"


def redeem(code: str, order_id: str) -> str:
    return f"redeem:{code}:{order_id}"


def points_age(day: str) -> str:
    """The points-age curve of ``day``, kept a while for the dashboard (kv)."""
    return f"report:points_age:{day}"


def offer_stock(offer: str) -> str:
    """The stock counter of a limited catalogue item (限时爆款), beside the coupon templates'."""
    return f"offer:{offer}"


def coupon(member_id: str, template: str, period: str) -> str:
    """One coupon of ``template`` per member per period (welcome: 'join', birthday: a year)."""
    return f"coupon:{member_id}:{template}:{period}"


def push(member_id: str, kind: str, period: str) -> str:
    return f"push:{member_id}:{kind}:{period}"


def staff_adjust(request_id: str) -> str:
    return f"adjust:{request_id}"


def chat_action(action: str, message_key: str) -> str:
    """A use case one chat message runs (setting the birthday): once per message."""
    return f"{action}:{message_key}"


def late_reply(message_key: str) -> str:
    """A reply delivered as a customer-service message because it missed WeChat's 5 s."""
    return f"late:{message_key}"


def wecom_welcome(welcome_code: str) -> str:
    """A WeCom welcome code: valid 20 s and usable once, so it is claimed once."""
    return f"wecom:welcome:{welcome_code}"


def push_batch(batch_id: str) -> str:
    """The record of one delivery batch (its rows, state, msgid) in the store's kv."""
    return f"outbox:batch:{batch_id}"


# -- kv keys: small shared state in the store's kv (locks, caches, marks, counters) ----------
def job_last(kind: str) -> str:
    """The last run of job ``kind`` and what it did (JSON), shown by /admin and ``jobs list``."""
    return f"jobs:last:{kind}"


SCHEDULER_LEADER = "scheduler:leader"  # the leading scheduler's id: see scheduler_id
OUTBOX_PAUSED = "outbox:wecom:paused-until"
WECOM_TAG_IDS = "wecom:corp-tags"  # the corp tag groups memberbot keeps: name -> tag id


def scheduler_fired(kind: str, instant: str) -> str:
    """One scheduled instant of a job, claimed once by the leader that runs it."""
    return f"scheduler:fired:{kind}:{instant}"


def admin_revoked(session_id: str) -> str:
    return f"admin:revoked:{session_id}"


def callback_nonce(channel: str, timestamp: str, nonce: str) -> str:
    """A signed callback's (timestamp, nonce): used once, by one body (retries repeat it)."""
    return f"nonce:{channel}:{timestamp}:{nonce}"


def admin_login_failures(account: str, address: str) -> str:
    """Failed admin logins of one account from one client address, in a window."""
    return f"admin:login:fail:{account}:{address}"


def admin_flash(session_id: str) -> str:
    """The notice the server set for an admin session's next page (shown once)."""
    return f"admin:flash:{session_id}"


def chat_rate(member_id: str) -> str:
    """The per-member command counter of the Official Account."""
    return f"ratelimit:wechat:{member_id}"


def invite_qr(scene: str) -> str:
    """A member's invite QR link, cached for most of its 30-day life."""
    return f"wechat:qr:{scene}"


def unionid_try(member_id: str) -> str:
    """A unionid look-up tried today for a member (one try a day)."""
    return f"wechat:unionid-try:{member_id}"


def wechat_token(appid: str) -> str:
    return f"wechat:token:{appid}"


def wecom_token(corp_id: str, tag: str) -> str:
    return f"wecom:token:{corp_id}:{tag}"


def token_lock(token_key: str) -> str:
    """The refresh lock of a shared access token: one process refreshes at a time."""
    return f"{token_key}:lock"


def exchange(message_key: str) -> str:
    """A coupon bought with points (兑换), once per message."""
    return f"exchange:{message_key}"


def webhook_state(name: str) -> str:
    """One webhook endpoint's cursor in the ledger and its delivery figures."""
    return f"webhook:{name}"


def webhook_lock(name: str) -> str:
    return f"webhook:{name}:lock"


def scheduler_id(pid: int, host: str, token: str) -> str:
    """A scheduler's id in the leader lock: /healthz reads the leader's pid and host from it."""
    return f"{pid}@{host}:{token}"


def parse_scheduler_id(sid: str) -> dict[str, object] | None:
    pid, _, rest = sid.partition("@")
    host = rest.rpartition(":")[0]
    return {"pid": int(pid), "host": host} if pid.isdigit() and host else None


def wecom_ticket(corp_id: str, agent_id: str, kind: str) -> str:
    """A JS-SDK ticket (``jsapi`` for wx.config, ``agent_config`` for wx.agentConfig), shared
    by every process like the access token."""
    return f"wecom:ticket:{corp_id}:{agent_id}:{kind}"


def sidebar_state(nonce: str) -> str:
    """An OAuth ``state`` nonce of the sidebar login, marked when it is used (once)."""
    return f"sidebar:state:{nonce}"


def staff_departures() -> str:
    """Staff members who left the company whose customers are still being marked (kv, JSON
    {staff: time}); a departure is dropped from it once every customer is done."""
    return "wecom:staff-left"


def sidebar_quota(staff: str, day: str) -> str:
    """What one staff member adjusted on one day: the daily cap's reservations."""
    return f"sidebar:quota:{staff}:{day}"


def sidebar_coupon(request_id: str) -> str:
    """A coupon a staff member issued from the sidebar: once per request_id."""
    return f"staffcoupon:{request_id}"


def admin_account(name: str) -> str:
    """One /admin account: role, Argon2 hash, disabled."""
    return f"admin:account:{name}"


def admin_accounts() -> str:
    """The names of the /admin accounts (a JSON list)."""
    return "admin:accounts"


def admin_audit() -> str:
    """The account changes (add-user, disable): who, what, when, before -> after."""
    return "admin:audit"


def groupmsg_reminders(msgid: str) -> str:
    """When the staff of a WeCom task were reminded (JSON list of times): ≤ 3 in 24 h."""
    return f"wecom:groupmsg:remind:{msgid}"


def wecom_sends(external_userid: str, period: str) -> str:
    """How many group messages memberbot had WeCom create for a customer in a period of
    WeCom's per-customer limit (a month, an ISO week or a day)."""
    return f"wecom:sends:{external_userid}:{period}"


def channel(member_id: str) -> str:
    """A member's channel (the State of the contact QR it came by): set once."""
    return f"channel:{member_id}"


CONTACT_WAYS = "wecom:contact-ways"  # the contact QRs memberbot created (JSON list)


# -- the member card (WeChat card wallet) ------------------------------------------------
CARD_DEFINITION = "card:definition"  # kv: the created card's id, status and when
CARD_PAUSED = "card:sync:paused-until"  # kv: a 45009 rate limit holds the card sync


def card_event(message_key: str) -> str:
    """The use case one card event (get, submit form, delete) runs: once per callback."""
    return f"card:{message_key}"


def card_sync_lock(member_id: str) -> str:
    """kv: the one sender sending a member's card updates, so they leave in order."""
    return f"card:sync:lock:{member_id}"


def card_sync_sent(member_id: str) -> str:
    """kv: the highest card update sequence sent for a member (never sent backwards)."""
    return f"card:sync:sent:{member_id}"


def card_qr(outer_str: str) -> str:
    """kv: a card QR code's URL, cached."""
    return f"card:qr:{outer_str}"
