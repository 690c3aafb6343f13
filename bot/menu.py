"""``memberbot menu show|create [FILE]``: the Official Account's custom menu from a TOML file.

Without a file, ``create`` sets the default menu: every chat command that has a menu key, in
three columns (签到 · 我的 · 更多). A file names its buttons like this::

    [[button]]
    name = "签到"
    key = "CHECKIN"          # a click button: the key of a chat command

    [[button]]
    name = "我的"
      [[button.sub_button]]
      name = "积分"
      key = "BALANCE"
      [[button.sub_button]]
      name = "官网"
      url = "https://example.com/"   # a view button

Checked before anything is sent: at most 3 buttons with at most 5 sub-buttons each, names of
at most 16 bytes (sub-buttons 60), and every click key is one the bot answers.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path
from typing import Any

import click

# The default layout: which menu keys go where. A key the command registry does not have is
# left out, so a command added with a menu key only needs a place here.
TOP = ("CHECKIN",)
MINE = ("BALANCE", "HISTORY", "COUPONS", "CARD", "MEMBER_CARD")
MORE = ("REDEEM", "INVITE", "TASKS", "HELP")
SHORT = {"CARD": "会员码", "HELP": "帮助"}  # labels shorter than the command's name


class MenuError(ValueError):
    """A menu file WeChat would refuse (or the bot could not answer); names the button."""


def menu_keys() -> dict[str, str]:
    """Menu key -> the command's name, from the chat command registry."""
    from .handlers.commands import router

    return {c.menu: c.name for c in router.commands if c.menu}


def default_menu() -> dict[str, Any]:
    keys = menu_keys()

    def click(k: str) -> dict[str, str]:
        return {"type": "click", "name": SHORT.get(k, keys[k]), "key": k}

    buttons: list[dict[str, Any]] = [click(k) for k in TOP if k in keys]
    for name, group in (("我的", MINE), ("更多", MORE)):
        subs = [click(k) for k in group if k in keys]
        if subs:
            buttons.append({"name": name, "sub_button": subs[:5]})
    return {"button": buttons}


def load_menu(path: Path) -> dict[str, Any]:
    """The menu of a TOML file, checked; :class:`MenuError` names the file and button."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise MenuError(f"{path}: cannot read ({e.strerror})") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise MenuError(f"{path}: not valid TOML: {e}") from e
    try:
        return check_menu(data)
    except MenuError as e:
        raise MenuError(f"{path}: {e}") from e


def check_menu(data: dict[str, Any]) -> dict[str, Any]:
    known = menu_keys()
    buttons = data.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise MenuError("a menu has 1 to 3 [[button]] entries")
    out = []
    for i, b in enumerate(buttons, 1):
        where = f"button {i}"
        name = _name(b, where, 16)
        subs = b.get("sub_button")
        if subs:
            if not isinstance(subs, list) or len(subs) > 5:
                raise MenuError(f"{where} ({name}): at most 5 sub_button entries")
            out.append({"name": name, "sub_button": [
                _leaf(sb, f"{where} ({name}) sub_button {j}", 60, known)
                for j, sb in enumerate(subs, 1)]})
        else:
            out.append(_leaf(b, where, 16, known))
    return {"button": out}


def _name(b: Any, where: str, limit: int) -> str:
    if not isinstance(b, dict):
        raise MenuError(f"{where}: expected a table with name and key or url")
    name = b.get("name")
    if not isinstance(name, str) or not name.strip():
        raise MenuError(f"{where}: name is missing")
    if len(name.encode()) > limit:
        raise MenuError(f"{where} ({name}): name longer than {limit} bytes "
                        f"({limit // 3} Chinese characters)")
    return name


def _leaf(b: Any, where: str, limit: int, known: dict[str, str]) -> dict[str, Any]:
    name = _name(b, where, limit)
    kind = b.get("type") or ("view" if "url" in b else "miniprogram" if "appid" in b
                             else "click")
    where = f"{where} ({name})"
    if kind == "click":
        key = str(b.get("key") or "").strip().upper()
        if key not in known:
            raise MenuError(f"{where}: key {b.get('key')!r} is not a command menu key "
                            f"({', '.join(sorted(known))})")
        return {"type": "click", "name": name, "key": key}
    if kind == "view":
        url = b.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or \
                len(url.encode()) > 1024:
            raise MenuError(f"{where}: url must be an http(s) address of at most 1024 bytes")
        return {"type": "view", "name": name, "url": url}
    if kind == "miniprogram":
        need = ("appid", "pagepath", "url")
        missing = [k for k in need if not b.get(k)]
        if missing:
            raise MenuError(f"{where}: a miniprogram button needs {', '.join(missing)}")
        return {"type": "miniprogram", "name": name, **{k: str(b[k]) for k in need}}
    raise MenuError(f"{where}: type {kind!r} is not click, view or miniprogram")


def to_toml(menu: dict[str, Any]) -> str:
    """A menu as the TOML ``menu create`` reads (what ``menu show`` prints)."""

    def s(v: Any) -> str:
        return json.dumps(str(v), ensure_ascii=False)  # a TOML basic string

    def fields(b: dict[str, Any], indent: str) -> list[str]:
        return [f"{indent}{k} = {s(b[k])}" for k in ("name", "type", "key", "url", "appid",
                                                       "pagepath") if b.get(k)]

    lines: list[str] = []
    for b in menu.get("button", []):
        lines.append("[[button]]")
        subs = b.get("sub_button") or []
        if isinstance(subs, dict):  # menu/get of a menu set in the web console
            subs = subs.get("list", [])
        lines += fields({k: v for k, v in b.items() if not subs or k == "name"}, "")
        for sb in subs:
            lines.append("  [[button.sub_button]]")
            lines += fields(sb, "  ")
        lines.append("")
    return "\n".join(lines)


async def _client_call(settings: Any, fn: str, *args: Any) -> Any:
    import aiohttp

    from storage import open_store

    from .channels.wechat import WeChatClient

    store = open_store(settings.store_url, settings.data_key)
    await store.open()
    try:
        async with aiohttp.ClientSession() as session:
            client = WeChatClient(store, settings, session)
            return await getattr(client, fn)(*args)
    finally:
        await store.close()


def register(main: click.Group) -> None:
    from storage import StoreError

    from .channels.wechat import WeChatAPIError

    @main.group()
    def menu() -> None:
        """The Official Account's custom menu (自定义菜单)."""

    def settings_with_oa():
        from .operator import fail, load_settings

        settings = load_settings()
        if not (settings.wechat_appid and settings.wechat_appsecret):
            fail("the menu is set through the OA API: set WECHAT_APPID and WECHAT_APPSECRET")
        return settings

    def call(settings, fn: str, *args: Any) -> Any:
        from .operator import fail

        try:
            return asyncio.run(_client_call(settings, fn, *args))
        except WeChatAPIError as e:
            fail(f"WeChat refused {fn.replace('_', ' ')}: {e.errcode} {e.errmsg}")
        except StoreError as e:
            fail(str(e))
        except (OSError, TimeoutError) as e:
            fail(f"the OA API at {settings.wechat_api_base} is unreachable ({e})")

    @menu.command("show")
    def show() -> None:
        """Print the menu set now, as TOML that `menu create FILE` reads."""
        current = call(settings_with_oa(), "get_menu")
        if current is None:
            click.echo("# no custom menu is set; `memberbot menu create` sets the default")
            return
        click.echo(to_toml(current), nl=False)

    @menu.command("create")
    @click.argument("file", required=False, type=click.Path(path_type=Path))
    @click.option("--print", "print_only", is_flag=True,
                  help="print the menu that would be set, and set nothing")
    def create(file: Path | None, print_only: bool) -> None:
        """Set the menu from FILE (TOML), or the default menu of the chat commands."""
        from .operator import fail

        try:
            m = load_menu(file) if file is not None else default_menu()
        except MenuError as e:
            fail(str(e))
        if print_only:
            click.echo(to_toml(m), nl=False)
            return
        call(settings_with_oa(), "create_menu", m)
        names = " · ".join(b["name"] for b in m["button"])
        leaves = sum(len(b.get("sub_button", [])) or 1 for b in m["button"])
        click.echo(f"menu set: {names} ({leaves} buttons)")
