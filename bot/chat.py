"""``memberbot chat``: talk to the running bot as a member, through the same signed (and, with
an AES key, encrypted) HTTP callback WeChat uses. Reads the server's local settings, so it
needs no configuration after ``make run``. Works with piped stdin (one message per line).
"""

from __future__ import annotations

import getpass
import hashlib
import itertools
import re
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .handlers.commands import router
from .handlers.wxproto import (
    BadRequest,
    BadSignature,
    SafeMode,
    callback_xml,
    parse_xml,
    signed_query,
)
from .settings import Settings, SettingsError

DEFAULT_URL = "http://127.0.0.1:8080/wechat"
ACCOUNT = "gh_memberbot_chat"  # the ToUserName WeChat would put: the account's original id
HELP = ("/menu  list menu keys · /menu KEY|N  tap one · /follow · /unfollow · /scan CODE · "
        "/quit")


class ChatError(Exception):
    """The bot cannot be reached or refused the callback: one line for the user."""


class Chat:
    """One member talking to the bot at ``url``."""

    def __init__(self, settings: Settings, url: str, user: str) -> None:
        self.url = url
        self.token = settings.wechat_token
        self.safe = (SafeMode(settings.wechat_token, settings.wechat_aes_key,
                              settings.wechat_appid) if settings.wechat_aes_key else None)
        self.openid = "o_chat_" + hashlib.sha1(user.encode()).hexdigest()[:20]
        self.user = user
        self._msg_ids = itertools.count(int(time.time() * 1000) * 1000 + secrets.randbelow(999))
        self._last_time = 0

    def _create_time(self) -> int:
        # events are told apart by FromUserName+CreateTime+Event: never reuse a second
        self._last_time = max(int(time.time()), self._last_time + 1)
        return self._last_time

    def send(self, xml: str) -> str | None:
        """Post one callback; the reply text, or None for ``success``."""
        query, body = signed_query(self.token, self.openid, self.safe, xml)
        req = urllib.request.Request(self.url + "?" + urllib.parse.urlencode(query),
                                     data=body.encode(), method="POST",
                                     headers={"Content-Type": "text/xml; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read().decode()
        except urllib.error.HTTPError as e:
            if e.code == 403:
                raise ChatError("the bot refused the signature: chat and server must share "
                                "WECHAT_TOKEN (and WECHAT_AES_KEY, WECHAT_APPID)") from e
            raise ChatError(f"the bot answered HTTP {e.code}") from e
        except (urllib.error.URLError, OSError) as e:
            raise ChatError(f"cannot reach the bot at {self.url}: is `memberbot serve` "
                            "running?") from e
        if raw in ("", "success"):
            return None
        try:
            inner = self.safe.open_envelope(raw) if self.safe else raw
            return parse_xml(inner).get("Content")
        except (BadRequest, BadSignature) as e:
            raise ChatError(f"the reply could not be read ({e})") from e

    def text(self, content: str) -> str | None:
        return self.send(callback_xml(ACCOUNT, self.openid, "text", content=content,
                                      msg_id=str(next(self._msg_ids)),
                                      create_time=self._create_time()))

    def event(self, event: str, key: str = "") -> str | None:
        return self.send(callback_xml(ACCOUNT, self.openid, "event", event=event,
                                      event_key=key, create_time=self._create_time()))


def menu_keys() -> list[tuple[str, str]]:
    return [(c.menu, c.name) for c in router.commands if c.menu]


def _known(settings: Settings, user: str, remember: bool) -> bool:
    """Whether this chat user followed before (kept beside the server's data)."""
    path = settings.data_dir / "chat-users.txt"
    try:
        known = user in path.read_text(encoding="utf-8").splitlines()
    except OSError:
        known = False
    if not known and remember:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(user + "\n")
        except OSError:
            pass
    return known


def run(chat: Chat, console: Console, lines, *, interactive: bool, follow: bool) -> int:
    def show(reply: str | None) -> None:
        if reply is None:
            console.print("[dim](no reply: success)[/dim]")
        else:
            console.print(f"[bold green]bot>[/bold green] {escape(reply)}")

    if follow:
        console.print("[dim]/follow (new member)[/dim]")
        show(chat.event("subscribe"))
    for raw in lines:
        line = raw.strip()
        if not interactive:
            console.print(f"[bold cyan]{escape(chat.user)}>[/bold cyan] {escape(line)}")
        if not line:
            continue
        cmd, _, arg = line.partition(" ")
        arg = arg.strip()
        if cmd in ("/quit", "/exit"):
            break
        if cmd == "/help":
            console.print(HELP)
        elif cmd == "/menu" and not arg:
            table = Table("n", "menu key", "command", title="menu")
            for n, (key, name) in enumerate(menu_keys(), 1):
                table.add_row(str(n), key, name)
            console.print(table)
        elif cmd == "/menu":
            keys = menu_keys()
            key = keys[int(arg) - 1][0] if arg.isdigit() and 0 < int(arg) <= len(keys) else arg
            show(chat.event("CLICK", key.upper()))
        elif cmd == "/follow":
            show(chat.event("subscribe", f"qrscene_inv_{arg}" if arg else ""))
        elif cmd == "/unfollow":
            show(chat.event("unsubscribe"))
        elif cmd == "/scan":
            if not arg:
                console.print("usage: /scan INVITE_CODE")
                continue
            show(chat.event("SCAN", f"inv_{arg}"))
        elif re.match(r"^/\w", line):
            console.print(f"unknown command {escape(cmd)}; {HELP}")
        else:
            show(chat.text(line))
    return 0


def _stdin_lines(console: Console, prompt: str):
    while True:
        try:
            yield console.input(prompt)
        except EOFError:
            return


def register(main: click.Group) -> None:
    @main.command()
    @click.option("--user", default=None, help="who you are (default: your login name)")
    @click.option("--url", default=DEFAULT_URL, show_default=True, help="the bot's /wechat")
    @click.option("--no-follow", is_flag=True, help="do not send subscribe for a new user")
    def chat(user: str | None, url: str, no_follow: bool) -> None:
        """Chat with the running bot as a member (signed like WeChat). /help for commands."""
        console = Console(highlight=False, soft_wrap=True)
        try:
            settings = Settings.load()
        except SettingsError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        user = user or getpass.getuser() or "member"
        try:
            c = Chat(settings, url, user)
        except ValueError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        interactive = sys.stdin.isatty()
        mode = "safe mode (AES)" if c.safe else "plain mode"
        console.print(f"[dim]chatting with {escape(url)} as {escape(user)} ({mode}); "
                      f"{HELP}[/dim]")
        follow = not no_follow and not _known(settings, user, remember=False)
        lines = _stdin_lines(console, f"{user}> ") if interactive else sys.stdin
        try:
            code = run(c, console, lines, interactive=interactive, follow=follow)
            if follow:
                _known(settings, user, remember=True)
        except ChatError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            code = 0
        sys.exit(code)
