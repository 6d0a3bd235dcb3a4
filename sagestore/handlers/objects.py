"""Files in a bucket: /api/v1/objects/{id}/{key}.

GET of a folder (key empty or ending in '/') lists it in the S3 ListObjectsV2 shape
the Go server returned; GET/HEAD of a file downloads it (Range, ETag, RFC 6266
Content-Disposition); PUT uploads a multipart form field 'file' or a raw body,
streamed to S3; DELETE removes one file.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, AsyncIterator
from urllib.parse import quote

import http_sfv
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from botocore.exceptions import ClientError

from .. import context
from ..acl import authorize
from ..db import buckets as bucket_queries
from ..db import cursor
from ..errors import BadRequest, NotFound, PayloadTooLarge, RangeNotSatisfiable
from ..openapi import documented
from ..storage import (ChecksumMismatch, Location, ObjectInfo, PartBody, error_code, metadata_value, part_size_for,
                       sanitize_filename, validate_key)
from ..uploads.limits import Reservation
from .buckets import bucket_id_of
from .common import body_pieces, identity, optional_media_type, query_flag, query_int
from .schemas import (BAD_REQUEST, BUCKET_ID_PARAM, FORBIDDEN, NOT_FOUND, UNAUTHORIZED, error, json_content)

log = logging.getLogger("sagestore.objects")
routes = web.RouteTableDef()

OBJECT_PATH = "/api/v1/objects/{id}/{key:.*}"
READ_CHUNK = 1024 * 1024  # request body read size; put_stream groups these into S3 parts
WRITE_CHUNK = 256 * 1024  # download write size
MAX_LIST_KEYS = 1000
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def is_folder(key: str) -> bool:
    return key == "" or key.endswith("/")


def checked_content_type(value: str | None) -> str:
    """A Content-Type to store with the object: what the client sent, if it is a valid media type."""
    if value is None or value.strip() == "":
        return DEFAULT_CONTENT_TYPE
    return optional_media_type(value, "Content-Type")


def form_filename(name: str | None) -> str:
    """The key segment a folder upload takes from the form part's filename.

    Directory parts of a path-like name are dropped (old browsers send C:\\dir\\file),
    but a '..' anywhere is an attempt to escape the folder and gets 400."""
    if not name:
        raise BadRequest("the key ends with '/' but the form part 'file' has no filename: "
                         "name the file in the key or send a filename")
    if ".." in re.split(r"[\\/]", name):
        raise BadRequest(f"the form filename {name!r} must not contain '..'")
    return sanitize_filename(name)


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


async def limited(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"the file is larger than the {limit}-byte limit")
        yield chunk


async def budgeted(chunks: AsyncIterator[bytes], reservation: Reservation, part_size: int,
                   parts_in_flight: int) -> AsyncIterator[bytes]:
    """The chunks, each once the budget covers what put_stream may then hold: the bytes received
    (in PartBody blocks), never more than its parts in flight and the part being filled."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        blocks = -(-received // PartBody.BLOCK) * PartBody.BLOCK
        if received >= part_size:  # several part buffers, each rounded up to a block
            blocks += parts_in_flight * PartBody.BLOCK
        largest_part = part_size_for(1 + received // part_size, part_size)  # parts grow for huge bodies
        await reservation.grow_to(min(blocks, (parts_in_flight + 1) * largest_part))
        yield chunk


def _short(problem: Exception) -> str:
    """An exception's message cut short: some quote the client's whole offending line."""
    text = str(problem)
    return text if len(text) <= 200 else text[:200] + "..."


async def part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    """A form part's bytes, chunk by chunk; a malformed body becomes 400."""
    while True:
        try:
            chunk = await part.read_chunk(READ_CHUNK)
        except (ValueError, AssertionError, HttpProcessingError) as problem:  # e.g. a part header over 8190 bytes
            raise BadRequest(f"malformed multipart body: {_short(problem)}") from None
        if not chunk:
            if not part.at_eof():  # the body ended before the part's closing boundary: truncated
                raise BadRequest("malformed multipart body: it ends before the closing boundary")
            return
        yield chunk


def go_time(value: datetime) -> str:
    """Go's time.Time JSON (RFC 3339, fraction without trailing zeros, 'Z' for UTC)."""
    text = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def encode_token(backend_token: str, bucket_id: str, folder: str, recursive: bool, name_prefix: str = "") -> str:
    """Wrap the backend's continuation token with the listing it belongs to. Some backends
    (SeaweedFS) use the raw S3 key as token, which would show clients the storage layout,
    and a token from another listing would silently give a wrong page."""
    scope = {"t": backend_token, "b": bucket_id, "f": folder, "r": recursive}
    if name_prefix:
        scope["p"] = name_prefix
    return base64.urlsafe_b64encode(json.dumps(scope, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str, bucket_id: str, folder: str, recursive: bool, name_prefix: str = "") -> str:
    try:
        scope = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        backend_token = scope["t"]
        matches = (scope["b"], scope["f"], scope["r"], scope.get("p", "")) == (bucket_id, folder, recursive,
                                                                               name_prefix)
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise BadRequest("ContinuationToken is not a token this server issued") from None
    if not matches or not isinstance(backend_token, str):
        raise BadRequest("ContinuationToken belongs to another listing (bucket, folder, recursive or prefix differ)")
    return backend_token


def listing_prefix(request: web.Request) -> str:
    """?prefix=: only entries of the folder whose names start with it (a name, not a path)."""
    value = request.query.get("prefix", "")
    if "/" in value or "\\" in value or any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise BadRequest("prefix filters names inside the folder: no '/', '\\' or control characters")
    if len(value.encode()) > 512:
        raise BadRequest("prefix is longer than 512 bytes")
    return value


async def listing(request: web.Request, bucket_id: str, folder: str) -> web.Response:
    validate_key(folder, folder=True)
    recursive = query_flag(request, "recursive")
    limit = query_int(request, "limit", MAX_LIST_KEYS, 0, MAX_LIST_KEYS) or MAX_LIST_KEYS  # Go: 0 = default
    name_prefix = listing_prefix(request)
    token = request.query.get("ContinuationToken") or None
    backend_token = decode_token(token, bucket_id, folder, recursive, name_prefix) if token else None
    await authorize(request.app[context.ACL], bucket_id, identity(request), "READ")
    prefix = request.app[context.MAPPING].folder(bucket_id, folder)
    try:
        page = await request.app[context.STORE].list(Location(prefix.bucket, prefix.key + name_prefix), delimiter=None if recursive else "/",
                                                     max_keys=limit, continuation_token=backend_token)
    except ClientError as problem:
        if error_code(problem) in ("InvalidArgument", "InvalidToken", "InvalidContinuationToken"):
            raise BadRequest("ContinuationToken is no longer valid; start the listing again") from None
        raise
    next_token = encode_token(page.next_token, bucket_id, folder, recursive, name_prefix) \
        if page.is_truncated and page.next_token else None
    start = len(prefix.key)
    # the Go server marshalled aws-sdk-go's ListObjectsV2Output: same names, nil slices as null
    return web.json_response({
        "CommonPrefixes": [{"Prefix": common[start:]} for common in page.common_prefixes] or None,
        "Contents": [{"ETag": item.etag, "Key": item.key[start:],
                      "LastModified": go_time(item.last_modified), "Owner": None, "Size": item.size,
                      "StorageClass": "STANDARD"} for item in page.contents] or None,
        "ContinuationToken": token,
        "Delimiter": None if recursive else "/",
        "EncodingType": None,
        "IsTruncated": page.is_truncated,
        "KeyCount": page.key_count,
        "MaxKeys": limit,
        "Name": bucket_id,
        "NextContinuationToken": next_token,
        "Prefix": None,
        "StartAfter": None,
    })


async def readable_object(request: web.Request) -> tuple[str, Location]:
    bucket_id = bucket_id_of(request)
    key = validate_key(request.match_info["key"])
    await authorize(request.app[context.ACL], bucket_id, identity(request), "READ")
    return key, request.app[context.MAPPING].object(bucket_id, key)


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

LISTING = {"type": "object", "description": "S3 ListObjectsV2 with the Go server's field names; keys are "
                                            "relative to the listed folder; empty lists are null",
           "properties": {
               "CommonPrefixes": {"type": "array", "nullable": True, "items": {
                   "type": "object", "properties": {"Prefix": {"type": "string"}}}},
               "Contents": {"type": "array", "nullable": True, "items": {"type": "object", "properties": {
                   "ETag": {"type": "string"}, "Key": {"type": "string"},
                   "LastModified": {"type": "string", "format": "date-time"},
                   "Owner": {"type": "object", "nullable": True}, "Size": {"type": "integer"},
                   "StorageClass": {"type": "string"}}}},
               "ContinuationToken": {"type": "string", "nullable": True},
               "Delimiter": {"type": "string", "nullable": True},
               "EncodingType": {"type": "string", "nullable": True},
               "IsTruncated": {"type": "boolean"}, "KeyCount": {"type": "integer"},
               "MaxKeys": {"type": "integer"}, "Name": {"type": "string", "format": "uuid"},
               "NextContinuationToken": {"type": "string", "nullable": True},
               "Prefix": {"type": "string", "nullable": True}, "StartAfter": {"type": "string", "nullable": True}}}

UPLOADED = {"type": "object", "required": ["bucket-id", "key"],
            "properties": {"bucket-id": {"type": "string", "format": "uuid"}, "key": {"type": "string"}}}


@routes.get(OBJECT_PATH, allow_head=False)
@documented(
    "Download a file (READ; anonymous on public buckets), or list a folder when the key is empty or ends "
    "in '/'",
    {"200": {"description": "The file's bytes, or for a folder a listing", "headers": DOWNLOAD_HEADERS,
             "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                         "application/json": {"schema": LISTING}}},
     "206": {"description": "The requested range", "headers": {
         **DOWNLOAD_HEADERS, "Content-Range": {"schema": {"type": "string"}}}},
     "304": {"description": "If-None-Match matched the ETag"},
     "400": BAD_REQUEST, "401": UNAUTHORIZED, "404": NOT_FOUND,
     "416": error("The range is outside the file; Content-Range: bytes */size")},
    parameters=[
        BUCKET_ID_PARAM, KEY_PARAM, RANGE_PARAM,
        {"name": "If-Range", "in": "header", "schema": {"type": "string"}},
        {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
        {"name": "recursive", "in": "query", "schema": {"type": "boolean"},
         "description": "listing: no delimiter, every key below the folder (recursive=false/0 mean false)"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LIST_KEYS},
         "description": "listing: MaxKeys, default and maximum 1000 (0 means the default)"},
        {"name": "ContinuationToken", "in": "query", "schema": {"type": "string"},
         "description": "listing: NextContinuationToken of the previous page"},
        {"name": "prefix", "in": "query", "schema": {"type": "string", "maxLength": 512},
         "description": "listing: only names in the folder that start with this (no '/')"},
    ])
async def get_object(request: web.Request) -> web.StreamResponse:
    if is_folder(request.match_info["key"]):
        return await listing(request, bucket_id_of(request), request.match_info["key"])
    key, location = await readable_object(request)
    return await send_object(request, key, location)


async def send_object(request: web.Request, key: str, location: Location) -> web.StreamResponse:
    """The download once access is settled (also signed GETs): Range, If-Range, If-None-Match."""
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
    except ClientError as problem:
        if error_code(problem) != "InvalidRange":
            raise
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
    except OSError as problem:  # ConnectionResetError when the client went away
        if request.transport is None or request.transport.is_closing():
            log.info("client went away after %d of %d bytes of %s", sent, stream.content_length, key)
            return response
        return abort_download(request, response, problem, sent, stream.content_length)
    except Exception as problem:  # noqa: BLE001 - headers are sent: the only honest signal left is a cut
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


@routes.head(OBJECT_PATH)
@documented(
    "A file's headers without its body (READ)",
    {"200": {"description": "The file exists", "headers": DOWNLOAD_HEADERS},
     "304": {"description": "If-None-Match matched the ETag"},
     "400": {"description": "bad key"}, "401": {"description": "authentication required"},
     "404": {"description": "no such file or bucket"}},
    parameters=[BUCKET_ID_PARAM, KEY_PARAM])
async def head_object(request: web.Request) -> web.Response:
    if is_folder(request.match_info["key"]):
        raise BadRequest("HEAD is for files; GET a folder to list it")
    key, location = await readable_object(request)
    return await send_head(request, key, location)


async def send_head(request: web.Request, key: str, location: Location) -> web.Response:
    info = await request.app[context.STORE].head(location)
    if info is None:
        raise NotFound("file not found")
    headers = object_headers(info, key)
    if etag_matches(request.headers.get("If-None-Match"), info.etag):
        return web.Response(status=304, headers={k: v for k, v in headers.items() if k in ("ETag", "Last-Modified")})
    headers["Content-Length"] = str(info.size)
    return web.Response(status=200, headers=headers)


@routes.put(OBJECT_PATH)
@documented(
    "Upload a file (WRITE), streamed to storage: a multipart form field 'file' (a key ending in '/' gets "
    "the form filename appended) or a raw body. The object keeps its Content-Type, owner and sha256",
    {"200": json_content("Where the file was stored", UPLOADED), "400": BAD_REQUEST, "401": UNAUTHORIZED,
     "403": FORBIDDEN, "404": NOT_FOUND, "413": error("Larger than the server's max upload size")},
    parameters=[BUCKET_ID_PARAM, KEY_PARAM, *[
        {"name": name, "in": "header", "schema": {"type": "string", "example": "sha-256=:<base64>:"},
         "description": "raw bodies: a declared sha-256 (RFC 9530), verified before the file is published; "
                        "a mismatch is 400 and stores nothing"} for name in ("Repr-Digest", "Content-Digest")]],
    requestBody={"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "*/*": {"schema": {"type": "string", "format": "binary"}}}})
async def upload(request: web.Request) -> web.Response:
    bucket_id = bucket_id_of(request)
    path_key = request.match_info["key"]
    validate_key(path_key, folder=is_folder(path_key))
    is_form = request.content_type == "multipart/form-data"
    # a digest header on a form describes the whole multipart body, not the file
    expected_sha256 = None if is_form else declared_sha256(request)
    settings = request.app[context.SETTINGS]
    if request.content_length is not None and request.content_length > settings.max_upload_size:
        raise PayloadTooLarge(f"the file is larger than the {settings.max_upload_size}-byte limit")
    caller = identity(request)
    pool = request.app[context.DB]
    await authorize(request.app[context.ACL], bucket_id, caller, "WRITE", writing=True)

    store = request.app[context.STORE]
    mapping = request.app[context.MAPPING]
    engine = request.app[context.ENGINE]
    metadata = {"owner": metadata_value(caller.user or "")}

    async def store_body(key: str, content_type: str, chunks: AsyncIterator[bytes],
                         expected_sha256: str | None = None) -> tuple[Location, Any]:
        location = mapping.object(bucket_id, validate_key(key))
        try:
            # under the same part-buffer budget and per-user cap as the upload engine's requests
            async with engine.slots.hold(caller.user):
                async with engine.memory.reserve() as reservation:
                    result = await store.put_stream(
                        location, budgeted(limited(chunks, settings.max_upload_size), reservation, store.part_size,
                                           store.parts_in_flight),
                        content_type=content_type, metadata=metadata, expected_sha256=expected_sha256)
        except ChecksumMismatch as mismatch:
            raise BadRequest(f"the body does not match its declared digest: {mismatch}; nothing was stored",
                             expected=mismatch.expected, actual=mismatch.actual) from None
        return location, result

    if is_form:
        key, location, result = await _store_form(request, path_key, store_body)
    else:
        if is_folder(path_key):
            raise BadRequest("the key ends with '/': a raw body needs the file name in the key "
                             "(or send a multipart form with a filename)")
        content_type = request.headers.get("Content-Type")
        if request.content_type == "application/x-www-form-urlencoded":
            content_type = None  # curl --data-binary's default, not a description of the file
        key = path_key
        location, result = await store_body(key, checked_content_type(content_type),
                                            body_pieces(request), expected_sha256)

    async with cursor(pool) as cur:
        still_there = await bucket_queries.get(cur, bucket_id)
    if still_there is None:  # the bucket was deleted while the body streamed: leave nothing behind
        await store.delete(location.bucket, [location.key])
        raise NotFound("bucket not found")
    metrics = request.app[context.METRICS]
    metrics.file_uploads.inc()
    metrics.bytes_uploaded.inc(result.size)
    return web.json_response({"bucket-id": bucket_id, "key": key})


async def _store_form(request: web.Request, path_key: str, store_body) -> tuple[str, Location, Any]:
    """Stream the first form field named 'file'; other fields are skipped."""
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, HttpProcessingError) as problem:
        raise BadRequest(f"malformed multipart request: {_short(problem)}") from None
    while True:
        try:
            part = await reader.next()
        except (ValueError, AssertionError, HttpProcessingError) as problem:  # e.g. a part header over 8190 bytes
            raise BadRequest(f"malformed multipart body: {_short(problem)}") from None
        if part is None:
            raise BadRequest("the multipart form has no field named 'file'")
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart parts are not supported")
        if part.name != "file":
            await part.release()
            continue
        encoding = part.headers.get("Content-Transfer-Encoding", "binary").lower()
        if encoding not in ("binary", "8bit", "7bit"):
            raise BadRequest(f"Content-Transfer-Encoding {encoding!r} is not supported; send the file as binary")
        key = path_key + form_filename(part.filename) if is_folder(path_key) else path_key
        content_type = checked_content_type(part.headers.get("Content-Type"))
        location, result = await store_body(key, content_type, part_chunks(part))
        return key, location, result


@routes.delete(OBJECT_PATH)
@documented(
    "Delete one file (WRITE)",
    {"200": json_content("The deleted key", {"type": "object", "properties": {
        "deleted": {"type": "array", "items": {"type": "string"}}}}),
     "400": BAD_REQUEST, "401": UNAUTHORIZED, "403": FORBIDDEN, "404": NOT_FOUND},
    parameters=[BUCKET_ID_PARAM, KEY_PARAM])
async def delete_object(request: web.Request) -> web.Response:
    bucket_id = bucket_id_of(request)
    if is_folder(request.match_info["key"]):
        raise BadRequest("DELETE needs a file key; DELETE /api/v1/objects/{id} deletes the whole bucket")
    key = validate_key(request.match_info["key"])
    await authorize(request.app[context.ACL], bucket_id, identity(request), "WRITE", writing=True)
    location = request.app[context.MAPPING].object(bucket_id, key)
    store = request.app[context.STORE]
    if await store.head(location) is None:
        raise NotFound("file not found")
    await store.delete(location.bucket, [location.key])
    return web.json_response({"deleted": [key]})
