"""What every handler shares: the caller's identity, path and query parameters, JSON bodies, dates,
and the hand-offs between adapters that serve one another's requests (composed in app.py)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Awaitable, Callable

from aiohttp import web

from ..auth.identity import ANONYMOUS, Identity
from ..context import IDENTITY
from ..digits import is_decimal
from ..errors import BadRequest, Unauthorized
from ..storage import parse_bucket_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A request one adapter answers with another's handler, by name ("ietf PATCH", "permissions GET"):
# app.py fills this, so that route modules need not import one another.
HANDOFFS: web.AppKey[dict[str, Handler]] = web.AppKey("handoffs", dict)


async def hand_off(request: web.Request, name: str) -> web.StreamResponse:
    return await request.app[HANDOFFS][name](request)


def identity(request: web.Request) -> Identity:
    return request.get(IDENTITY, ANONYMOUS)


def bucket_id_of(request: web.Request) -> str:
    """The bucket UUID in the path ({id}), or 400."""
    return parse_bucket_id(request.match_info["id"])


def http_date(moment: datetime) -> str:
    """RFC 9110 IMF-fixdate."""
    return format_datetime(moment.astimezone(timezone.utc), usegmt=True)


def wants_html(request: web.Request) -> bool:
    """A browser navigating here: it prefers text/html (API clients send */* or application/json)."""
    accept = request.headers.get("Accept", "")
    return request.method in ("GET", "HEAD") and "text/html" in accept


# Our JSON bodies nest 3 levels ({"parts": [{...}]}); the size cap is the app's client_max_size.
MAX_JSON_DEPTH = 16


def _depth(value: Any, limit: int) -> bool:
    """True when value nests deeper than limit lists/objects."""
    if limit < 0:
        return True
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return any(_depth(child, limit - 1) for child in children if isinstance(child, (dict, list)))


async def json_body(request: web.Request) -> dict[str, Any]:
    """A JSON object body, or 400 saying what is wrong. Every JSON body belongs to an action that
    needs a user, so an anonymous caller gets 401 before a byte of it is read."""
    if identity(request).anonymous:
        raise Unauthorized("authentication required")
    try:
        text = await request.text()
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid JSON") from None
    return json_object(text)


def json_object(text: str | bytes) -> dict[str, Any]:
    """A JSON object of at most MAX_JSON_DEPTH levels and no NUL characters, or 400 saying why."""
    try:
        body = json.loads(text)
    except RecursionError:
        raise BadRequest(f"request body is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError, and numbers beyond int()'s digit limit
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    if _depth(body, MAX_JSON_DEPTH - 1):
        raise BadRequest(f"request body is nested more than {MAX_JSON_DEPTH} levels deep")
    _reject_nul(body, "request body")
    return body


# type/subtype, then parameters of printable ASCII: no CR/LF (header injection, and S3 retried
# such a value for seconds before failing), no other control characters
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;[\x20-\x7e]*)?$")


def optional_media_type(value: Any, name: str) -> str | None:
    """A Content-Type for a stored object: None when absent or empty, 400 unless a media type."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if not isinstance(value, str) or len(value.strip()) > 256 or not _MEDIA_TYPE.match(value.strip()):
        raise BadRequest(f"{name} {str(value)[:80]!r} is not a valid media type")
    return value.strip()


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
    if not is_decimal(raw.removeprefix("-")):
        raise BadRequest(f"query parameter {name!r} must be an integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise BadRequest(f"query parameter {name!r} must be between {minimum} and {maximum}")
    return value
