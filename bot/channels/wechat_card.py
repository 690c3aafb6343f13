"""WeChat's card API (卡券, ``card/…`` under ``WECHAT_API_BASE``) for the member card.

The paths and fields are wechatpy's ``WeChatCard`` (``client.card``); the calls go through
the OA client's :meth:`WeChatClient.call`, so they share its token cache and its one refresh
on 40014/42001.
"""

from __future__ import annotations

from typing import Any

from ..rules.card import FORM_FIELDS, CardDef, prerogative
from .wechat import WeChatClient

CODE_INVALID = (40056, 40127)  # the code is not (or no longer) a card of this account
CARD_RATE_LIMITED = (45009,)


def card_payload(card: CardDef, tiers: Any, *, for_update: bool = False) -> dict:
    """The ``member_card`` of ``card/create`` (or of ``card/update``, which takes fewer fields)."""
    base: dict[str, Any] = {
        "logo_url": card.logo_url, "brand_name": card.brand_name, "title": card.title,
        "color": card.color, "notice": card.notice, "description": card.description,
    }
    if card.service_phone:
        base["service_phone"] = card.service_phone
    if not for_update:
        base.update({
            "code_type": "CODE_TYPE_QRCODE", "date_info": {"type": "DATE_TYPE_PERMANENT"},
            "sku": {"quantity": card.quantity}, "get_limit": 1, "use_custom_code": True,
            "can_give_friend": False,
        })
    member: dict[str, Any] = {
        "base_info": base, "prerogative": prerogative(card, tiers),
        "bonus_rules": card.bonus_rules, "wx_activate": True,
        "custom_field1": {"name_type": "FIELD_NAME_TYPE_LEVEL", "name": card.custom_field_name},
    }
    if card.pending_field_name:  # pending purchase points (points.pending_days)
        member["custom_field2"] = {"name": card.pending_field_name}
    if card.background_url:
        member["background_pic_url"] = card.background_url
    if card.bonus_cleared:
        member["bonus_cleared"] = card.bonus_cleared
    if not for_update:
        member.update({"supply_bonus": True, "supply_balance": False})
    return member


def form_payload(card: CardDef, card_id: str) -> dict:
    """``card/membercard/activateuserform/set``: the one-click activation form."""
    return {
        "card_id": card_id,
        # the birthday cannot be changed later (PRODUCT 2.3): the required form is fixed
        "required_form": {"can_modify": False, "common_field_id_list": [
            FORM_FIELDS[f] for f in card.required_form]},
        "optional_form": {"can_modify": True, "common_field_id_list": [
            FORM_FIELDS[f] for f in card.optional_form]},
    }


class CardAPI:
    """The card calls memberbot makes, over one OA client."""

    def __init__(self, client: WeChatClient) -> None:
        self.client = client

    async def _post(self, path: str, body: dict) -> dict:
        return await self.client.call("POST", "/card/" + path, body=body)

    async def create(self, card: CardDef, tiers: Any) -> str:
        data = await self._post("create", {"card": {
            "card_type": "MEMBER_CARD", "member_card": card_payload(card, tiers)}})
        return str(data["card_id"])

    async def set_form(self, card: CardDef, card_id: str) -> dict:
        return await self._post("membercard/activateuserform/set", form_payload(card, card_id))

    async def update(self, card: CardDef, tiers: Any, card_id: str) -> dict:
        return await self._post("update", {"card_id": card_id, "member_card": card_payload(
            card, tiers, for_update=True)})

    async def get(self, card_id: str) -> dict:
        return await self._post("get", {"card_id": card_id})

    async def qrcode(self, card_id: str, *, outer_str: str, code: str | None = None) -> dict:
        """A QR code that gives the card; ``code`` fixes the card code (the member code)."""
        c: dict[str, Any] = {"card_id": card_id, "outer_str": outer_str[:128]}
        if code:
            c["code"] = code
        return await self._post("qrcode/create", {"action_name": "QR_CARD",
                                                  "action_info": {"card": c}})

    async def pay_gift(self, card: CardDef, card_id: str) -> dict:
        """支付即会员: WeChat Pay payers at the configured merchants are offered the card."""
        g = card.pay_gift
        assert g is not None
        rule = {"card_id": card_id, "least_cost": g.min_cost_fen, "jump_url": ""}
        if g.max_cost_fen:
            rule["max_cost"] = g.max_cost_fen
        return await self._post("paygiftcard/add", {"rule_info": {
            "type": "RULE_TYPE_PAY_MEMBER_CARD",
            "base_info": {"mchid_list": list(g.mchids), "begin_time": g.begin_time,
                          "end_time": g.end_time},
            "member_rule": rule}})

    async def user_info(self, card_id: str, code: str) -> dict:
        return await self._post("membercard/userinfo/get", {"card_id": card_id, "code": code})

    async def activate(self, body: dict) -> dict:
        return await self._post("membercard/activate", body)

    async def update_user(self, body: dict) -> dict:
        return await self._post("membercard/updateuser", body)
