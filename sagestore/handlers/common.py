"""Helpers every handler uses: the caller's identity, JSON bodies, query flags."""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..auth.identity import ANONYMOUS, Identity
from ..errors import BadRequest

IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)


def identity(request: web.Request) -> Identity:
    return request.get(IDENTITY, ANONYMOUS)


async def json_body(request: web.Request) -> dict[str, Any]:
    """A JSON object body, or 400 saying what is wrong."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    except RecursionError:  # nesting deeper than the parser's stack: not a 500
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    _reject_nul(body, "request body")
    return body


def _reject_nul(value: Any, what: str) -> None:
    """PostgreSQL cannot store NUL in text or jsonb: such input is 400 here, not a 500 later."""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest(f"{what} must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key, what)
            _reject_nul(item, what)
    elif isinstance(value, list):
        for item in value:
            _reject_nul(item, what)


def query_text(request: web.Request, name: str) -> str | None:
    """A text query parameter (None when absent or empty); NUL characters are 400."""
    value = request.query.get(name) or None
    if value is not None:
        _reject_nul(value, f"query parameter {name!r}")
    return value


def query_flag(request: web.Request, name: str, default: bool = False) -> bool:
    """?name, ?name=true/1/yes -> True; ?name=false/0/no -> False; anything else is 400."""
    if name not in request.query:
        return default
    value = request.query[name].strip().lower()
    if value in ("", "true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise BadRequest(f"query parameter {name!r} must be true or false, got {request.query[name]!r}")


def query_int(request: web.Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer") from None
    if not minimum <= value <= maximum:
        raise BadRequest(f"query parameter {name!r} must be between {minimum} and {maximum}")
    return value
