"""JSON answers as people and store systems read them: Chinese as itself (not ``\\uXXXX``),
and every time as ISO 8601 in the programme's zone."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web


def dumps(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()


def json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def iso(t: int | None, tz: ZoneInfo) -> str | None:
    """A unix instant as ISO 8601 in the calendar zone: the API's only way to say a time."""
    return None if t is None else datetime.fromtimestamp(t, tz).isoformat()
