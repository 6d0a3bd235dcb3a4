"""Offset chunks in Pulp's / Dropbox's shape, over the upload engine.

    PUT  /api/v1/upload?bucket_id=&key=      first chunk (raw body): creates the upload
    PUT  /api/v1/upload?upload_id=&offset=   further chunks, appended at `offset`
    GET  /api/v1/upload?upload_id=           where the upload stands (for resuming)
    POST /api/v1/import_upload               publish it: {upload_id, bucket_id?, key?, sha256?}

Every answer carries {"upload_id", "offset", "expires"} (expires: RFC 9110 date). A wrong offset
gives 400 with the stored offset and changes nothing, so a chunk re-sent after a lost response
is answered with 400 and offset == its end: the client seeks there and goes on (the seed's and
Dropbox's contract), nothing is stored twice.

Uploads are retained: the engine hashes the chunks as they come and assembles the upload at
the bucket and key its first chunk named, so import_upload to that target publishes without
copying, after checking a declared sha256; later imports (or an import elsewhere) copy the
published object server-side while it is unchanged, until the upload expires.
"""
from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

import http_sfv
from aiohttp import web
from pydantic import Field

from .. import context, gate
from ..digits import decimal_int
from ..errors import BadRequest, PayloadTooLarge
from ..openapi import ERROR, documented
from ..uploads import OffsetMismatch, Upload
from .bodies import BucketId, JsonBody, Says, Sha256, read_body
from .common import http_date, identity, optional_media_type

routes = gate.Routes()

# how long import_upload waits for the copy before answering 202 (Prefer: wait=N may shorten it)
IMPORT_WAIT = 10.0

async def owned_upload(request: web.Request, upload_id: Any) -> Upload:
    """The caller's upload, with WRITE on its bucket: every route of this API needs WRITE, status
    included (a write-only grantee must be able to resume; an upload shows nothing of the bucket)."""
    return await gate.admit_upload(request, upload_id, "WRITE")


# ---------------------------------------------------------------- chunks


def _offset_answer(upload: Upload) -> dict[str, Any]:
    return {"upload_id": upload.id, "offset": upload.offset, "expires": http_date(upload.expires_at)}


def _offset_param(request: web.Request) -> int:
    raw = request.query.get("offset")
    if raw is None or raw == "":
        raise BadRequest("offset is required with upload_id")
    return decimal_int(raw, "offset")


# ---------------------------------------------------------------- OpenAPI
_ANSWER = {"description": "{upload_id, offset, expires (RFC 9110 date)}"}
_ERRORS = {"400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR, "410": ERROR}
_QUERY = [{"name": name, "in": "query", "required": False, "schema": {"type": kind}, "description": text}
          for name, kind, text in (
              ("bucket_id", "string", "target bucket (first chunk only)"),
              ("key", "string", "target key (first chunk only)"),
              ("content_type", "string", "content type of the file (first chunk only)"),
              ("upload_id", "string", "the upload to append to (further chunks)"),
              ("offset", "integer", "bytes stored so far, as the last answer said (further chunks)"))]


class ImportUpload(JsonBody):
    """Publish an offset upload; the target defaults to the upload's own bucket and key."""
    upload_id: Annotated[str, Field(min_length=1), Says("upload_id is required")]
    bucket_id: BucketId | None = None
    key: str | None = None
    sha256: Sha256 | None = Field(None, description="verified before anything is published")


@routes.put("/api/v1/upload", body=gate.STREAM)
@documented(
    "Upload a chunk: without upload_id the first chunk starts an upload to bucket_id/key; with "
    "upload_id and offset it is appended. A wrong offset answers 400 with the stored offset.",
    {"200": _ANSWER, "201": _ANSWER, **_ERRORS, "409": ERROR, "413": ERROR, "423": ERROR},
    parameters=_QUERY,
    requestBody={"required": True, "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}})
async def put_chunk(request: web.Request) -> web.Response:
    engine = request.app[context.ENGINE]
    max_chunk = request.app[context.SETTINGS].max_chunk_size
    if request.content_length is not None and request.content_length > max_chunk:
        raise PayloadTooLarge(f"a chunk is at most {max_chunk} bytes", max_chunk_size=max_chunk)
    upload_id = request.query.get("upload_id")
    if upload_id is None:
        if request.query.get("offset", "0") != "0":
            raise BadRequest("a new upload starts at offset 0", offset=0)
        bucket_id, key = await gate.admit_target(request, request.query.get("bucket_id"), request.query.get("key"))
        body = gate.body(request)
        upload = await engine.create("offset", bucket_id, key, identity(request).user, retain=True,
                                     content_type=optional_media_type(request.query.get("content_type"), "content_type"))
        try:
            upload = await engine.append(upload, 0, body, max_bytes=max_chunk, body_length=request.content_length)
        except BaseException:
            # the client never learns this upload's id: release it now rather than at expiry
            with contextlib.suppress(Exception):
                await asyncio.shield(engine.abort(upload))
            raise
        return web.json_response(_offset_answer(upload), status=201)
    if "bucket_id" in request.query or "key" in request.query:
        raise BadRequest("give either upload_id and offset, or bucket_id and key (to start an upload)")
    offset = _offset_param(request)
    upload = await owned_upload(request, upload_id)
    body = gate.body(request)
    try:
        upload = await engine.append(upload, offset, body, max_bytes=max_chunk, body_length=request.content_length)
    except OffsetMismatch as mismatch:
        # the seed's contract: 400 with the stored offset; the client seeks there
        raise BadRequest(f"offset {offset} does not match the upload's offset {mismatch.offset}",
                         offset=mismatch.offset, upload_id=upload.id, expires=http_date(upload.expires_at)) from None
    return web.json_response(_offset_answer(upload))


@routes.get("/api/v1/upload")
@documented("Where an offset upload stands: {upload_id, offset, expires, state}",
            {"200": _ANSWER, **_ERRORS}, parameters=[_QUERY[3]])
async def get_offset(request: web.Request) -> web.Response:
    upload = await owned_upload(request, request.query.get("upload_id"))
    return web.json_response({**_offset_answer(upload), "state": upload.state, "bucket_id": upload.bucket_id,
                              "key": upload.key})


# ---------------------------------------------------------------- import


def _prefer_wait(request: web.Request) -> float:
    """RFC 7240: `Prefer: wait=N` caps the wait for the copy; `respond-async` alone answers 202 at
    once unless the import is already done."""
    header = request.headers.get("Prefer")
    if not header:
        return IMPORT_WAIT
    preferences = http_sfv.Dictionary()
    try:
        preferences.parse(header.encode())
    except ValueError:
        return IMPORT_WAIT  # preferences are hints: an unreadable one is ignored
    wait = preferences.get("wait")
    if wait is not None and isinstance(wait.value, (int, Decimal)) and not isinstance(wait.value, bool) \
            and wait.value >= 0:
        return min(IMPORT_WAIT, float(wait.value))
    return 0.0 if "respond-async" in preferences else IMPORT_WAIT


def _status_url(upload_id: str, bucket_id: str, key: str, sha256: str | None) -> str:
    query = {"bucket_id": bucket_id, "key": key}
    if sha256:
        query["sha256"] = sha256
    return f"/api/v1/import_upload/{upload_id}?{urlencode(query)}"


async def _run_import(request: web.Request, upload: Upload, bucket_id: str, key: str,
                      sha256: str | None, *, ok_status: int) -> web.Response:
    """Join or start the engine's job publishing this (upload, target, sha256); answer its result
    within the wait, else 202 with a status URL."""
    info = await request.app[context.ENGINE].publish(upload, bucket_id, key, sha256, wait=_prefer_wait(request))
    if info is not None:
        return web.json_response({**info, "expires": http_date(upload.expires_at)}, status=ok_status)
    url = _status_url(upload.id, bucket_id, key, sha256)
    return web.json_response({"upload_id": upload.id, "status": "running", "status_url": url,
                              "expires": http_date(upload.expires_at)},
                             status=202, headers={"Location": url, "Retry-After": "1"})


def _import_target(upload: Upload, bucket_id: Any, key: Any) -> tuple[Any, Any]:
    """Missing parts of the target default to the upload's own bucket and key."""
    return (bucket_id if bucket_id is not None else upload.bucket_id,
            key if key is not None else upload.key)


def _sha256_param(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadRequest("sha256 must be a string of 64 hexadecimal digits")
    return value.lower() if value else None


@routes.post("/api/v1/import_upload", body=gate.SMALL)
@documented(
    "Publish an offset upload to its own target (assembled in place, no copy) or another one "
    "(server-side copy of the published object; repeatable until the upload expires). sha256, when "
    "given, is verified before anything is published. Prefer: respond-async or wait=N are honoured.",
    {"201": {"description": "file info"}, "202": {"description": "still running; Location: status URL"},
     **_ERRORS, "409": ERROR, "423": ERROR}, body=ImportUpload)
async def import_upload(request: web.Request) -> web.Response:
    body = await read_body(request, ImportUpload)
    upload = await owned_upload(request, body.upload_id)
    bucket_id, key = await gate.admit_target(request, *_import_target(upload, body.bucket_id, body.key))
    return await _run_import(request, upload, bucket_id, key, body.sha256, ok_status=201)


@routes.get("/api/v1/import_upload/{upload_id}")
@documented(
    "Status of an import answered with 202: the file info once published, 202 while it runs",
    {"200": {"description": "file info"}, "202": {"description": "still running"}, **_ERRORS},
    parameters=[{"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "bucket_id", "in": "query", "schema": {"type": "string"}},
                {"name": "key", "in": "query", "schema": {"type": "string"}},
                {"name": "sha256", "in": "query", "schema": {"type": "string"}}])
async def import_status(request: web.Request) -> web.Response:
    """The status URL of a 202: the file info once published; while the import runs, 202 again.
    An import whose instance died is started again here (the engine makes that safe)."""
    upload = await owned_upload(request, request.match_info["upload_id"])
    bucket_id, key = await gate.admit_target(
        request, *_import_target(upload, request.query.get("bucket_id"), request.query.get("key")))
    sha256 = _sha256_param(request.query.get("sha256"))
    if not request.app[context.ENGINE].publishing(upload.id, bucket_id, key, sha256):
        for info in (upload.result or {}).get("published", []):
            if (info.get("bucket_id"), info.get("key")) == (bucket_id, key) and \
                    (sha256 is None or info.get("sha256") == sha256):
                return web.json_response({**info, "expires": http_date(upload.expires_at)})
    return await _run_import(request, upload, bucket_id, key, sha256, ok_status=200)
