"""What the tus and IETF resumable-upload adapters share: the upload target, header parsing,
the caller's upload, and completion with its access check. State lives in the engine only."""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from aiohttp import web

from .. import context, gate
from ..digits import MAX_DIGITS, is_decimal
from ..errors import BadRequest, Unauthorized
from ..storage import parse_bucket_id, sanitize_filename, validate_key
from ..uploads import SEQUENTIAL_PROTOCOLS, Upload
from .common import Handler, identity

_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
_METADATA_KEY = re.compile(r"^[^\s,]+$")


# The IETF draft's handlers that also answer on the tus endpoint (tus.or_ietf), by method; app.py
# composes it, so that the two route modules need not import each other.
IETF_ON_TUS: web.AppKey[dict[str, Handler]] = web.AppKey("ietf_on_tus", dict)


def max_upload_size(request: web.Request) -> int:
    return gate.max_upload_size(request.app[context.SETTINGS])


def non_negative_int(value: str | None, name: str) -> int | None:
    """A header that must be a plain non-negative decimal integer; None when absent."""
    if value is None:
        return None
    text = value.strip()
    if not is_decimal(text, MAX_DIGITS):
        raise BadRequest(f"{name} must be a non-negative integer, got {value[:40]!r}")
    return int(text)


def parse_tus_metadata(header: str | None) -> dict[str, str | None]:
    """tus Upload-Metadata: 'key base64,key2 base64,flag' -> {key: text or None}; 400 when malformed."""
    if header is None or not header.strip():
        return {}
    result: dict[str, str | None] = {}
    for item in header.split(","):
        pieces = item.strip().split(" ")
        if len(pieces) > 2 or not pieces[0] or not _METADATA_KEY.match(pieces[0]):
            raise BadRequest(f"Upload-Metadata entry {item.strip()!r} is not 'key base64-value'")
        key = pieces[0]
        if key in result:
            raise BadRequest(f"Upload-Metadata key {key!r} appears twice")
        if len(pieces) == 1 or pieces[1] == "":
            result[key] = None
            continue
        try:
            result[key] = base64.b64decode(pieces[1], validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise BadRequest(f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text") from None
    return result


def media_type(value: str | None) -> str | None:
    """The media type (without parameters) of a Content-Type-like value, or None when absent."""
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def content_type_for(filetype: str | None) -> str | None:
    if filetype is None or filetype == "":
        return None
    if not _MEDIA_TYPE.match(filetype.split(";", 1)[0].strip()) or any(ord(c) < 32 for c in filetype):
        raise BadRequest(f"filetype {filetype!r} is not a media type")
    return filetype.strip()


def require_user(request: web.Request) -> str:
    caller = identity(request)
    if caller.anonymous:
        raise Unauthorized("authentication required")
    return caller.user


async def resolve_target(request: web.Request, bucket: str | None, key: str | None,
                         filename: str | None) -> tuple[str, str]:
    """(bucket_id, key) of a new upload after checking WRITE: 400 for a missing or bad bucket or key,
    401 anonymous, 404 missing or invisible bucket, 403 readable but not writable."""
    require_user(request)
    if not bucket:
        raise BadRequest("the upload needs a target: 'bucket' (the bucket UUID) and 'key' or 'filename'")
    bucket_id = parse_bucket_id(bucket)
    if key:
        validate_key(key)
    elif filename:
        key = sanitize_filename(filename)
        validate_key(key)
    else:
        raise BadRequest("the upload needs a 'key' or a 'filename'")
    await check_write(request, bucket_id)
    return bucket_id, key


async def check_write(request: web.Request, bucket_id: str) -> None:
    await gate.admit(request, bucket_id, "WRITE")


async def callers_upload(request: web.Request) -> Upload:
    """The caller's sequential upload named in the path; 404 for anyone else's or another protocol's."""
    return await gate.admit_upload(request, request.match_info["upload_id"], None, with_parts=False,
                                   protocols=SEQUENTIAL_PROTOCOLS)


async def callers_writable_upload(request: web.Request) -> Upload:
    """callers_upload for an append: WRITE on the bucket (not archived) is checked on every
    append, as the other protocols do, not only at creation and completion (a tus partial upload
    has no bucket until a final names it: its owner's alone)."""
    return await gate.admit_upload(request, request.match_info["upload_id"], "WRITE", with_parts=False,
                                   protocols=SEQUENTIAL_PROTOCOLS)


async def complete(request: web.Request, upload: Upload) -> dict[str, Any]:
    """Publish a fully received upload, checking WRITE on its bucket again first."""
    if upload.bucket_id is not None:
        await check_write(request, upload.bucket_id)
    return await request.app[context.ENGINE].complete(upload)


def body_chunks(request: web.Request):
    return gate.body(request)


def has_body(request: web.Request) -> bool:
    return bool(request.content_length) or (request.content_length is None and request.body_exists)
