"""What the object routes and the signed-URL routes share (not a route module): a download with
Range, If-Range, ETag and Content-Disposition once access is settled, and a raw body streamed
to storage through the gate, with its Content-Type and declared digest."""
from __future__ import annotations

import base64
import logging
import re
from datetime import timezone
from email.utils import format_datetime
from typing import AsyncIterator
from urllib.parse import quote

import http_sfv
from aiohttp import web

from .. import context, gate
from ..errors import BadRequest, NotFound, RangeNotSatisfiable
from ..storage import ChecksumMismatch, InvalidRange, Location, ObjectInfo, ObjectStream, PutResult, metadata_value
from .common import optional_media_type

log = logging.getLogger("sagestore.transfer")

WRITE_CHUNK = 256 * 1024  # download write size
DEFAULT_CONTENT_TYPE = "application/octet-stream"

KEY_PARAM = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "file key, may contain '/'; empty or ending in '/' names a folder. Keys with empty, "
                            "'.' or '..' segments, backslashes or control characters get 400"}

RANGE_PARAM = {"name": "Range", "in": "header", "schema": {"type": "string", "example": "bytes=0-1023"},
               "description": "one byte range (bytes=a-b, bytes=a-, bytes=-n); others are ignored"}

DOWNLOAD_HEADERS = {
    "Content-Length": {"schema": {"type": "integer"}}, "Content-Type": {"schema": {"type": "string"}},
    "ETag": {"schema": {"type": "string"}}, "Last-Modified": {"schema": {"type": "string"}},
    "Accept-Ranges": {"schema": {"type": "string", "enum": ["bytes"]}},
    "Repr-Digest": {"schema": {"type": "string", "example": "sha-256=:<base64>:"},
                    "description": "RFC 9530: the sha-256 of the whole file (also on 206 responses), sent "
                                   "whenever the server knows it (PUT uploads; tus, IETF and offset-chunk "
                                   "uploads, hashed as they arrive; other uploads completed with a declared "
                                   "sha256)"},
    "Content-Disposition": {"schema": {"type": "string"},
                            "description": "attachment; filename=\"ascii\"; filename*=UTF-8''percent-encoded"}}


# ------------------------------------------------------------------------------------------ downloads
def content_disposition(key: str) -> str:
    """RFC 6266: an ASCII fallback filename plus the exact name as RFC 5987 filename*."""
    name = key.rsplit("/", 1)[-1]
    fallback = "".join(char if 0x20 <= ord(char) < 0x7F and char not in '"\\%' else "_" for char in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='!#$&+-.^_`|~')}"


def object_headers(info: ObjectInfo, key: str) -> dict[str, str]:
    # nosniff: a browser must not turn a stored file into something it runs (HTML, script)
    headers = {"Content-Type": info.content_type or DEFAULT_CONTENT_TYPE, "Accept-Ranges": "bytes",
               "Content-Disposition": content_disposition(key), "X-Content-Type-Options": "nosniff"}
    if info.etag:
        headers["ETag"] = info.etag
    if info.last_modified:
        headers["Last-Modified"] = format_datetime(info.last_modified.astimezone(timezone.utc), usegmt=True)
    digest = repr_digest(info)
    if digest:
        headers["Repr-Digest"] = digest
    return headers


def repr_digest(info: ObjectInfo) -> str | None:
    """RFC 9530 Repr-Digest of the whole file (also on a 206: it digests the representation, not the
    range), from the sha256 kept in the object's metadata; None when it is not known."""
    value = (info.metadata or {}).get("sha256", "")
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        return None
    return f"sha-256=:{base64.b64encode(bytes.fromhex(value)).decode()}:"


def etag_matches(header: str | None, etag: str) -> bool:
    if not header or not etag:
        return False
    candidates = [item.strip() for item in header.split(",")]
    return "*" in candidates or etag in candidates or etag in (c.removeprefix("W/") for c in candidates)


def requested_range(request: web.Request) -> str | None:
    """The Range header as one S3 byte range, or None to send the whole file.

    aiohttp parses the header; a malformed or multi-range header is ignored, as RFC 9110 allows."""
    if "Range" not in request.headers:
        return None
    if re.fullmatch(r"\s*bytes=-0+\s*", request.headers["Range"], re.I):
        return "bytes=-0"  # an empty suffix can never be satisfied: S3 answers 416
    try:
        window = request.http_range
    except ValueError:
        return None
    start, stop = window.start, window.stop
    if start is not None and start < 0:
        return f"bytes={start}"  # suffix: the last -start bytes
    if stop is None:
        return f"bytes={start}-"
    return f"bytes={start}-{stop - 1}"


async def send_object(request: web.Request, key: str, location: Location) -> web.StreamResponse:
    """The download once the gate admitted the caller: Range, If-Range, If-None-Match."""
    store = request.app[context.STORE]
    byte_range = requested_range(request)
    if byte_range and request.headers.get("If-Range"):
        # If-Range: the range only applies to the version the client already has part of
        current = await store.head(location)
        if current is None:
            raise NotFound("file not found")
        if request.headers["If-Range"].strip() != current.etag:
            byte_range = None
    try:
        stream = await store.open(location, byte_range)
    except InvalidRange:
        current = await store.head(location)
        if current is None:
            raise NotFound("file not found") from None
        raise RangeNotSatisfiable(f"range {request.headers.get('Range')!r} is outside the file's "
                                  f"{current.size} bytes", headers={"Content-Range": f"bytes */{current.size}"}
                                  ) from None
    if stream is None:
        raise NotFound("file not found")
    headers = object_headers(stream.info, key)
    if etag_matches(request.headers.get("If-None-Match"), stream.info.etag):
        stream.close()
        return web.Response(status=304, headers={k: v for k, v in headers.items() if k in ("ETag", "Last-Modified")})
    return await stream_body(request, stream, headers)


async def stream_body(request: web.Request, stream: ObjectStream, headers: dict[str, str]) -> web.StreamResponse:
    """Send an opened object stream (206 when it is a range), for the SAGE API and the S3 door.
    Once the status line is out, a failure can only cut the connection: the client then sees a body
    shorter than Content-Length, never a clean 200 with a corrupt body."""
    response = web.StreamResponse(status=206 if stream.content_range else 200, headers=headers)
    if stream.content_range:
        response.headers["Content-Range"] = stream.content_range
    response.content_length = stream.content_length
    downloaded = request.app[context.METRICS].bytes_downloaded
    sent = 0
    try:
        await response.prepare(request)
        async for chunk in stream.chunks(WRITE_CHUNK):
            await response.write(chunk)
            sent += len(chunk)
            downloaded.inc(len(chunk))
    except Exception as problem:  # noqa: BLE001 - ConnectionResetError when the client went away, else a backend
        if request.transport is None or request.transport.is_closing():
            log.info("client went away after %d of %d bytes of %s", sent, stream.content_length, request.path)
            return response
        return abort_download(request, response, problem, sent, stream.content_length)
    finally:
        stream.close()
    await response.write_eof()
    return response


def abort_download(request: web.Request, response: web.StreamResponse, problem: BaseException, sent: int,
                   expected: int) -> web.StreamResponse:
    """S3 failed after the status line went out. Cut the connection so the client sees a
    body shorter than Content-Length, instead of a clean 200 with a corrupt body."""
    log.warning("download of %s aborted after %d of %d bytes: %s: %s", request.path, sent, expected,
                type(problem).__name__, problem)
    if request.transport is not None:
        request.transport.abort()
    return response


async def send_head(request: web.Request, key: str, location: Location) -> web.Response:
    info = await request.app[context.STORE].head(location)
    if info is None:
        raise NotFound("file not found")
    headers = object_headers(info, key)
    if etag_matches(request.headers.get("If-None-Match"), info.etag):
        return web.Response(status=304, headers={k: v for k, v in headers.items() if k in ("ETag", "Last-Modified")})
    headers["Content-Length"] = str(info.size)
    return web.Response(status=200, headers=headers)


# ------------------------------------------------------------------------------------------ raw bodies
def checked_content_type(value: str | None) -> str:
    """A Content-Type to store with the object: what the client sent, if it is a valid media type."""
    if value is None or value.strip() == "":
        return DEFAULT_CONTENT_TYPE
    return optional_media_type(value, "Content-Type")


def raw_body_content_type(request: web.Request) -> str:
    """The stored Content-Type of a raw body; curl --data-binary's default form type describes no file."""
    if request.content_type == "application/x-www-form-urlencoded":
        return DEFAULT_CONTENT_TYPE
    return checked_content_type(request.headers.get("Content-Type"))


def declared_sha256(request: web.Request) -> str | None:
    """The sha-256 a raw upload declares in Repr-Digest or Content-Digest (RFC 9530), as hex.
    Without content coding both digest the file itself. Other algorithms are ignored."""
    found: set[str] = set()
    for header in ("Repr-Digest", "Content-Digest"):
        if header not in request.headers:
            continue
        members = http_sfv.Dictionary()
        try:
            members.parse(request.headers[header].encode("latin-1"))
        except (ValueError, UnicodeEncodeError):
            raise BadRequest(f"{header} is not a valid structured field dictionary (RFC 9530)") from None
        if "sha-256" not in members:
            continue
        value = members["sha-256"].value
        if not isinstance(value, bytes) or len(value) != 32:
            raise BadRequest(f"{header} sha-256 must be a 32-byte byte sequence, e.g. sha-256=:<base64>:")
        found.add(value.hex())
    if len(found) > 1:
        raise BadRequest("Repr-Digest and Content-Digest declare different sha-256 digests")
    return found.pop() if found else None


async def store_streamed(request: web.Request, location: Location, *, content_type: str, owner: str,
                         chunks: AsyncIterator[bytes] | None = None,
                         expected_sha256: str | None = None) -> PutResult:
    """Stream the admitted request's body (or `chunks`, e.g. a form field) to one object, under the
    gate's limit and budget; the object appears only once the whole body is stored. A declared
    sha256 that does not match stores nothing (400)."""
    try:
        async with gate.streamed(request, chunks) as body:
            return await request.app[context.STORE].put_stream(
                location, body, content_type=content_type, metadata={"owner": metadata_value(owner)},
                expected_sha256=expected_sha256)
    except ChecksumMismatch as mismatch:
        raise BadRequest(f"the body does not match its declared digest: {mismatch}; nothing was stored",
                         expected=mismatch.expected, actual=mismatch.actual) from None
