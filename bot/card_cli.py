"""``memberbot card create | show | update``: the member card in WeChat's card wallet."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import click

from .channels.wechat import WeChatAPIError
from .channels.wechat_card import CardAPI
from .context import Context
from .members import Members
from .offline import OperatorError, run_with_context
from .operator import load_settings
from .rules.models import Refusal
from .settings import Settings


def _with_api(settings: Settings, fn: Callable[[Members, CardAPI, datetime], Awaitable[Any]]
              ) -> Any:
    async def go(ctx: Context) -> Any:
        if ctx.rules.card is None:
            raise OperatorError("the rules file has no [card] section (see docs/card.md)")
        if ctx.oa is None:
            raise OperatorError("WECHAT_APPID and WECHAT_APPSECRET must be set to use the "
                                "card API")
        try:
            return await fn(ctx.members, CardAPI(ctx.oa), ctx.now())
        except WeChatAPIError as e:
            raise OperatorError(f"WeChat refused the call: errcode {e.errcode} "
                                f"{e.errmsg}") from e
        except Refusal as e:
            raise OperatorError(e.message) from e
        except (aiohttp.ClientError, TimeoutError) as e:
            raise OperatorError(f"WECHAT_API_BASE unreachable: {e}") from e

    return run_with_context(settings, go)


def register(main: click.Group) -> None:
    @main.group("card")
    def card_group() -> None:
        """The member card in WeChat's card wallet (docs/card.md)."""

    @card_group.command("create")
    def create() -> None:
        """Create the card from the rules file's [card] (once) and set its activation form."""
        async def go(members: Members, api: CardAPI, now: datetime) -> dict:
            res = await members.create_card(api, now)
            res["qr"] = await members.card_qr(api, "admin")
            return res

        r = _with_api(load_settings(), go)
        verb = "created" if r["created"] else "exists already (kept)"
        click.echo(f"card {r['card_id']} {verb}; activation form set: mobile and birthday "
                   f"required")
        if r.get("pay_gift"):
            click.echo(f"支付即会员 rule {r['pay_gift']} added")
        if r.get("qr"):
            click.echo(f"QR code: {r['qr']}")

    @card_group.command("show")
    def show() -> None:
        """The card id kept in the store and its status at WeChat."""
        async def go(members: Members, api: CardAPI, now: datetime) -> dict | None:
            known = await members.card_definition()
            if known is None:
                return None
            info = await api.get(known["card_id"])
            return {**known, "status": (info.get("card") or {}).get("status", "?"),
                    "qr": await members.card_qr(api, "admin")}

        r = _with_api(load_settings(), go)
        if r is None:
            raise OperatorError("no card yet: run memberbot card create")
        click.echo(f"card_id: {r['card_id']}\nstatus: {r['status']}\nQR code: {r['qr']}")

    @card_group.command("update")
    def update() -> None:
        """Push the rules file's changed [card] to WeChat (card/update)."""
        async def go(members: Members, api: CardAPI, now: datetime) -> dict:
            return await members.update_card(api)

        r = _with_api(load_settings(), go)
        check = " (WeChat reviews the change first)" if r["send_check"] else ""
        click.echo(f"card {r['card_id']} updated{check}")
