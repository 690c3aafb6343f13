"""Every idempotency key is built here, so one event always maps to one key."""

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


def refund(refund_id: str) -> str:
    return f"refund:{refund_id}"


def invite(invitee_id: str) -> str:
    return f"invite:{invitee_id}"


def redeem(code: str, order_id: str) -> str:
    return f"redeem:{code}:{order_id}"


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


def callback_nonce(channel: str, timestamp: str, nonce: str) -> str:
    """A signed callback's (timestamp, nonce): used once, by one body (retries repeat it)."""
    return f"nonce:{channel}:{timestamp}:{nonce}"


def admin_login_failures(account: str, address: str) -> str:
    """Failed admin logins of one account from one client address, in a window."""
    return f"admin:login:fail:{account}:{address}"


def admin_flash(session_id: str) -> str:
    """The notice the server set for an admin session's next page (shown once)."""
    return f"admin:flash:{session_id}"
