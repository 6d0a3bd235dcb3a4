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
from typing import AsyncIterator

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from .. import context, gate
from ..db import buckets as bucket_queries
from ..db import cursor
from ..errors import BadRequest, NotFound
from ..openapi import documented
from ..storage import Location, PutResult, StorageError, sanitize_filename, validate_key
from .common import bucket_id_of, query_flag, query_int
from .schemas import (BAD_REQUEST, BUCKET_ID_PARAM, FORBIDDEN, NOT_FOUND, UNAUTHORIZED, error, json_content)
from .transfer import (DOWNLOAD_HEADERS, KEY_PARAM, RANGE_PARAM, checked_content_type, declared_sha256,
                       raw_body_content_type, send_head, send_object, store_streamed)

log = logging.getLogger("sagestore.objects")
routes = gate.Routes()

OBJECT_PATH = "/api/v1/objects/{id}/{key:.*}"
READ_CHUNK = 1024 * 1024  # form body read size; put_stream groups these into S3 parts
MAX_LIST_KEYS = 1000


def is_folder(key: str) -> bool:
    return key == "" or key.endswith("/")


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
    await gate.admit(request, bucket_id, "READ")
    prefix = request.app[context.MAPPING].folder(bucket_id, folder)
    try:
        page = await request.app[context.STORE].list(Location(prefix.bucket, prefix.key + name_prefix), delimiter=None if recursive else "/",
                                                     max_keys=limit, continuation_token=backend_token)
    except StorageError as problem:
        if problem.code in ("InvalidArgument", "InvalidToken", "InvalidContinuationToken"):
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
    await gate.admit(request, bucket_id, "READ")
    return key, request.app[context.MAPPING].object(bucket_id, key)


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


@routes.put(OBJECT_PATH, body=gate.STREAM)
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
    gate.refuse_declared_length(request)
    admission = await gate.admit(request, bucket_id, "WRITE")
    owner = admission.caller.user or ""
    mapping = request.app[context.MAPPING]
    if is_form:
        key, result = await _store_form(request, bucket_id, path_key, owner)
    else:
        if is_folder(path_key):
            raise BadRequest("the key ends with '/': a raw body needs the file name in the key "
                             "(or send a multipart form with a filename)")
        key = path_key
        result = await store_streamed(request, mapping.object(bucket_id, key), owner=owner,
                                      content_type=raw_body_content_type(request), expected_sha256=expected_sha256)

    async with cursor(request.app[context.DB]) as cur:
        still_there = await bucket_queries.get(cur, bucket_id)
    if still_there is None:  # the bucket was deleted while the body streamed: leave nothing behind
        location = mapping.object(bucket_id, key)
        await request.app[context.STORE].delete(location.bucket, [location.key])
        raise NotFound("bucket not found")
    metrics = request.app[context.METRICS]
    metrics.file_uploads.inc()
    metrics.bytes_uploaded.inc(result.size)
    return web.json_response({"bucket-id": bucket_id, "key": key})


async def _store_form(request: web.Request, bucket_id: str, path_key: str, owner: str) -> tuple[str, PutResult]:
    """Stream the first form field named 'file'; other fields are skipped."""
    try:
        reader = await gate.form(request)
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
        location = request.app[context.MAPPING].object(bucket_id, validate_key(key))
        content_type = checked_content_type(part.headers.get("Content-Type"))
        result = await store_streamed(request, location, content_type=content_type, owner=owner,
                                      chunks=part_chunks(part))
        return key, result


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
    await gate.admit(request, bucket_id, "WRITE")
    location = request.app[context.MAPPING].object(bucket_id, key)
    store = request.app[context.STORE]
    if await store.head(location) is None:
        raise NotFound("file not found")
    await store.delete(location.bucket, [location.key])
    return web.json_response({"deleted": [key]})
