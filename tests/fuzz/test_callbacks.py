"""Hypothesis-generated callbacks for /wechat (plain and safe mode) and /wecom: random XML,
wrong types, huge fields, bad encodings, signature, timestamp and nonce edge cases.

Every reply is below 500 and names no exception class; no log line is an ERROR or carries a
traceback; a refused callback (4xx) changes nothing in the store. ``FUZZ_CALLBACKS`` cases per
target (four targets, 10,400 in all by default)."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wechatpy.crypto import PrpCrypto as _OAPrp
from wechatpy.enterprise.crypto import PrpCrypto as _WeComPrp

from bot.web import create_app
from tests.conftest import make_settings

from .conftest import RANDOM
from .invariants import Ledger, LogWatch, check_reply

pytestmark = pytest.mark.fuzz

CASES = int(os.environ.get("FUZZ_CALLBACKS", "2600"))
FUZZ = settings(max_examples=CASES, deadline=None, database=None, derandomize=not RANDOM,
                suppress_health_check=list(HealthCheck))

WECOM_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CORP = "wwfuzzcorp"
FIELDS = ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Event",
          "EventKey", "Encrypt", "AgentID", "ChangeType", "UserID", "ExternalUserID",
          "WelcomeCode", "Ticket", "PicUrl", "MediaId", "Location_X", "Latitude"]
WORDS = ["签到", "积分", "兑换", "兑换 1", "兑换 " + "9" * 5000, "生日 1990-05-20",
         "生日 0000-13-45", "绑定 ABC234", "退订", "邀请码", "帮助", "优惠券", "会员",
         "text", "event", "image",
         "subscribe", "unsubscribe", "SCAN", "CLICK", "VIEW", "LOCATION", "qrscene_inv_ABC234",
         "inv_", "BALANCE", "REDEEM", "change_external_contact", "add_external_contact",
         "del_follow_user", "edit_external_contact", "o_fuzz", "gh_0123456789ab", "-1", "0",
         "1e9", "99999999999999999999999", "NaN", "١٢٣", "]]>", "<![CDATA[", "&amp;", "&#0;",
         "\u202e", "\ufeff", "\U0001f600", " ", ""]
text = st.one_of(st.sampled_from(WORDS), st.text(max_size=30),
                 st.integers(-2**70, 2**70).map(str),
                 st.integers(1, 70_000).map(lambda n: "x" * n))


class OAPrp(_OAPrp):
    def get_random_string(self) -> str:  # hypothesis forbids `random` inside strategies
        return "0123456789abcdef"


class WeComPrp(_WeComPrp):
    def get_random_string(self) -> str:
        return "0123456789abcdef"


def escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


PLAUSIBLE = {
    "ToUserName": st.sampled_from(["gh_0123456789ab", "wwfuzzcorp"]),
    "FromUserName": st.sampled_from([f"o_fuzz{i}" for i in range(8)] + ["sys"]),
    "CreateTime": st.integers(0, 2**40).map(str) | st.just(str(int(time.time()))),
    "MsgType": st.sampled_from(["text", "text", "text", "event", "event", "image", "voice",
                                "location", "link", "TEXT", "Event "]),
    "Content": st.sampled_from(WORDS) | st.text(max_size=20),
    "MsgId": st.integers(0, 2**64).map(str),
    "Event": st.sampled_from(["subscribe", "unsubscribe", "SCAN", "CLICK", "VIEW",
                              "LOCATION", "change_external_contact", "TEMPLATESENDJOBFINISH"]),
    "EventKey": st.sampled_from(["qrscene_inv_ABC234", "inv_ABC234", "BALANCE", "CHECKIN",
                                 "REDEEM", "CARD", "COUPONS", "INVITE", "HELP", ""]),
    "ChangeType": st.sampled_from(["add_external_contact", "add_half_external_contact",
                                   "del_external_contact", "del_follow_user",
                                   "edit_external_contact", "other"]),
    "UserID": st.sampled_from(["alice", "bob", ""]),
    "ExternalUserID": st.sampled_from(["wm_1", "wm_2", ""]),
    "WelcomeCode": st.sampled_from(["WC-1", ""]),
}


@st.composite
def xml_text(draw) -> str:
    """A document shaped like a callback, more or less."""
    names = st.one_of(st.sampled_from(FIELDS),
                      st.text(alphabet="abcdefXYZ_-.1", min_size=1, max_size=6))
    root = "xml"
    if draw(st.integers(0, 9)) < 7:  # a plausible callback, at most one value odd
        required = ["ToUserName", "FromUserName", "CreateTime", "MsgType"]
        keys = required + draw(st.lists(st.sampled_from(
            [k for k in PLAUSIBLE if k not in required]), unique=True, max_size=6))
        odd = draw(st.sampled_from([None, None, None, *keys]))
        fields = [(k, draw(text if k == odd else PLAUSIBLE[k]), draw(st.booleans()))
                  for k in keys]
        if draw(st.integers(0, 4)) == 4:  # one required field missing
            fields.pop(draw(st.integers(0, 3)))
    else:
        fields = draw(st.lists(st.tuples(names, text, st.booleans()), max_size=9))
        root = draw(st.sampled_from(["xml", "root", "x:ml"]))
    inner = "".join(
        f"<{k}>" + (f"<![CDATA[{v}]]>" if cdata else escape(v)) + f"</{k.split()[0]}>"
        for k, v, cdata in fields)
    doc = f"<{root}>{inner}</{root}>"
    shape = draw(st.sampled_from(["ok"] * 24 + ["truncate", "dtd", "entity", "xxe", "nested",
                                               "garbage", "empty", "pi"]))
    if shape == "truncate":
        doc = doc[:draw(st.integers(0, max(0, len(doc) - 1)))]
    elif shape == "dtd":
        doc = '<!DOCTYPE xml [<!ELEMENT xml ANY>]>' + doc
    elif shape == "entity":
        doc = '<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">]>' + doc.replace("</xml>", "&a;</xml>")
    elif shape == "xxe":
        doc = '<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml>&e;</xml>'
    elif shape == "nested":
        doc = "<xml>" + "<a>" * 500 + "</a>" * 500 + "</xml>"
    elif shape == "garbage":
        doc = draw(st.text(max_size=200))
    elif shape == "empty":
        doc = ""
    elif shape == "pi":
        doc = '<?xml-stylesheet href="http://127.0.0.1:9/x"?>' + doc
    return doc


@st.composite
def xml_bytes(draw) -> bytes:
    doc = draw(xml_text())
    enc = draw(st.sampled_from(["utf-8"] * 16 + ["gbk", "utf-16", "latin-1", "declared",
                                                 "mismatch", "bad-bytes", "unknown"]))
    if enc in ("gbk", "latin-1", "utf-16"):
        return doc.encode(enc, errors="xmlcharrefreplace")
    if enc == "declared":
        return f'<?xml version="1.0" encoding="GB2312"?>{doc}'.encode("gb2312", "replace")
    if enc == "mismatch":
        return f'<?xml version="1.0" encoding="utf-16"?>{doc}'.encode()
    if enc == "bad-bytes":
        return doc.encode() + draw(st.binary(min_size=1, max_size=40))
    if enc == "unknown":
        return f'<?xml version="1.0" encoding="x-nonesuch"?>{doc}'.encode()
    return doc.encode()


def sha1(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


timestamps = st.one_of(
    st.just("now"), st.just("now"), st.just("now"),
    st.sampled_from(["-299", "+299", "-301", "+301", "", "abc", "-1", "0", "１２３", "١٢٣",
                     " 1", "1" * 30, "1500000000", "9" * 12]))
nonces = st.one_of(st.just("fresh"), st.just("fresh"), st.sampled_from(
    ["n", "", "ñ", "n" * 2000, "a b", "%00", "n\r\nX-Injected: 1"]))
signatures = st.sampled_from(["good"] * 6 + ["wrong", "missing", "empty", "upper", "non-ascii",
                                               "long", "other-token"])


def timestamp(choice: str) -> str:
    now = int(time.time())
    if choice == "now":
        return str(now)
    if choice[:1] in "+-" and choice[1:].isdigit() and len(choice) <= 4:
        return str(now + int(choice))
    return choice


def signed(token: str, sig: str, *parts: str) -> str | None:
    good = sha1(token, *parts)
    return {"good": good, "wrong": "f" * 40, "missing": None, "empty": "", "upper": good.upper(),
            "non-ascii": "签名" * 20, "long": good * 300,
            "other-token": sha1("other", *parts)}[sig]


@st.composite
def callback(draw, target: str) -> tuple[dict[str, str], bytes]:
    """Query parameters and body of one callback for ``target``: most are signed right, so
    the fuzzed body reaches the parser and the commands; the rest fuzz the envelope."""
    envelope_ok = draw(st.integers(0, 9)) < 6
    ts = timestamp("now" if envelope_ok else draw(timestamps))
    nonce = "fresh" if envelope_ok else draw(nonces)
    nonce = secrets.token_hex(6) if nonce == "fresh" else nonce
    sig = "good" if envelope_ok else draw(signatures)
    inner = draw(xml_bytes())
    q: dict[str, str] = {"timestamp": ts, "nonce": nonce}
    if target == "wechat-plain":
        q["openid"] = "o_fuzz" if envelope_ok else draw(st.sampled_from(["", "o" * 300]))
        if (s := signed("testtoken", sig, ts, nonce)) is not None:
            q["signature"] = s
        if not envelope_ok and draw(st.booleans()):
            q["encrypt_type"] = draw(st.sampled_from(["aes", "raw", "", "xyz"]))
        return q, inner
    # safe mode (/wechat with WECHAT_AES_KEY, and /wecom): an Encrypt envelope
    how = "right" if envelope_ok else draw(st.sampled_from(
        ["right", "other-id", "garbage", "b64-garbage", "none", "raw-body"]))
    if target == "wechat-safe":
        key, owner, prp = AES_KEY_OA, "wxfuzzappid", OAPrp
    else:
        key, owner, prp = WECOM_KEY, CORP, WeComPrp
    raw_key = base64.b64decode(key + "=")
    text = inner.decode("utf-8", "replace")
    if how == "right":
        enc = prp(raw_key).encrypt(text, owner).decode()
    elif how == "other-id":
        enc = prp(raw_key).encrypt(text, owner + "x").decode()
    elif how == "b64-garbage":
        enc = base64.b64encode(draw(st.binary(max_size=64))).decode()
    elif how == "garbage":
        enc = draw(st.text(max_size=60))
    else:
        enc = ""
    if how == "raw-body":
        body = inner
    elif how == "none":
        body = b"<xml><ToUserName>gh</ToUserName></xml>"
    else:
        body = f"<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[{enc}]]>" \
               f"</Encrypt></xml>".encode()
    if (s := signed(TOKENS[target], sig, ts, nonce, enc)) is not None:
        q["msg_signature"] = s
    if target == "wechat-safe":
        q["encrypt_type"] = "aes" if envelope_ok else draw(st.sampled_from(
            ["aes", "AES", "raw", ""]))
        outer = "good" if envelope_ok else draw(signatures)
        if (s := signed(TOKENS[target], outer, ts, nonce)) is not None:
            q["signature"] = s
    return q, body


AES_KEY_OA = base64.b64encode(bytes(range(32))).decode().rstrip("=")
TOKENS = {"wechat-plain": "testtoken", "wechat-safe": "testtoken", "wecom": "wt"}


@pytest.fixture
async def target_app(aiohttp_client, fast_tmp):
    """The app with /wechat in plain or safe mode and /wecom configured (no API reachable:
    WECOM_API_BASE and WECHAT_API_BASE point at a closed port)."""

    made: dict[bool, tuple] = {}  # one app per test, shared by all its examples

    async def make(safe: bool):
        if safe in made:
            return made[safe]
        s = make_settings(fast_tmp, wechat_appid="wxfuzzappid",
                          wechat_aes_key=AES_KEY_OA if safe else "",
                          wecom_token="wt", wecom_aes_key=WECOM_KEY, wecom_corp_id=CORP,
                          wechat_api_base="http://127.0.0.1:9", wecom_api_base="http://127.0.0.1:9")
        client = await aiohttp_client(create_app(s))
        made[safe] = client, Ledger(fast_tmp / "m.db")
        return made[safe]

    return make


@pytest.fixture
def logs(caplog):
    return LogWatch(caplog)


async def run(client, ledger: Ledger, logs: LogWatch, path: str, q: dict, body: bytes) -> None:
    before = ledger.state()
    r = await client.post(path, params=q, data=body,
                          headers={"Content-Type": "text/xml"})
    text = await r.text(errors="replace")
    what = (path, q, body[:200])
    check_reply(r.status, text, what)
    if r.status >= 400:
        assert ledger.state() == before, what
    logs.check(what)
    if r.status == 200 and text not in ("success", ""):
        ET.fromstring(text)  # a passive reply is XML


@FUZZ
@given(case=callback("wechat-plain"))
async def test_fuzzed_plain_mode_callbacks(target_app, logs, case):
    client, ledger = await target_app(False)
    await run(client, ledger, logs, "/wechat", *case)


@FUZZ
@given(case=callback("wechat-safe"))
async def test_fuzzed_safe_mode_callbacks(target_app, logs, case):
    client, ledger = await target_app(True)
    await run(client, ledger, logs, "/wechat", *case)


@FUZZ
@given(case=callback("wecom"))
async def test_fuzzed_wecom_callbacks(target_app, logs, case):
    client, ledger = await target_app(False)
    await run(client, ledger, logs, "/wecom", *case)


@FUZZ
@given(case=callback("wechat-plain"), method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH"]),
       path=st.sampled_from(["/wechat", "/wecom"]))
async def test_fuzzed_verification_and_other_methods(target_app, logs, case, method, path):
    client, ledger = await target_app(False)
    q, body = case
    q = {**q, "echostr": body.decode("utf-8", "replace")[:300]}
    before = ledger.state()
    r = await client.request(method, path, params=q, data=body if method != "GET" else None)
    text = await r.text(errors="replace")
    check_reply(r.status, text, (method, path, q))
    assert ledger.state() == before
    logs.check((method, path, q))

