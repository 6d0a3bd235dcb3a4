"""Indexed resumable sessions, over the upload engine.

    POST /api/v1/attachment/initiate                               {bucket_id, key?, fileName, fileSize, ...}
    PUT  /api/v1/attachment/session/{sessionId}/upload/{chunkId}   one chunk, any order, in parallel
    GET  /api/v1/attachment/session/{sessionId}                    received and missing chunks
    POST /api/v1/attachment/session/{sessionId}/complete           {sha256?}
    POST /api/v1/attachment/session/{sessionId}/abort
    GET  /api/v1/attachment/sessions?bucket_id=&key=               the caller's unfinished uploads (resume)

The server picks chunkSize (>= 5 MiB, growing so that there are at most 10 000 chunks) and
chunk ids are 1..totalChunks: chunk n IS S3 part n, so chunks go to S3 as they arrive and
completion is one CompleteMultipartUpload. A chunk may carry Content-MD5, Digest (RFC 3230)
or Content-Digest (RFC 9530) with sha-256 or md5; they are verified before anything is stored.
A session that declares its sha256 at initiate hashes its chunks in order (uploads/ordered.py):
chunks still come in any order and in parallel; a hashed chunk cannot be replaced.
"""
from __future__ import annotations

from typing import Annotated, Any, AsyncIterator

import http_sfv
from aiohttp import web
from pydantic import Field

from .. import context, gate
from ..digits import is_decimal
from ..errors import BadRequest, Unauthorized
from ..openapi import ERROR, documented
from ..storage import parse_bucket_id, sanitize_filename, validate_key
from ..uploads import MissingParts, Upload
from ..uploads.checksums import b64
from ..uploads.ordered import hashes_in_order
from .bodies import BucketId, JsonBody, OptionalText, Says, Sha256, checked, read_body
from .common import identity, optional_media_type, query_int

routes = gate.Routes()

SESSION = "/api/v1/attachment/session/{session_id}"
# RFC 9530 / RFC 3230 algorithm names -> the engine's
DIGEST_ALGORITHMS = {"sha-256": "sha256", "md5": "md5"}


def _iso(upload: Upload) -> str:
    return upload.expires_at.isoformat().replace("+00:00", "Z")


def _session_url(upload: Upload) -> str:
    return SESSION.format(session_id=upload.id)


def _add_digest(digests: dict[str, str], algorithm: str, value: str) -> None:
    if digests.get(algorithm, value) != value:
        raise BadRequest(f"the request declares two different {algorithm} digests")
    digests[algorithm] = value


def chunk_digests(headers: Any) -> dict[str, str]:
    """{algorithm: base64 digest} from Content-MD5, Digest and Content-Digest; 400 when malformed or
    when a digest header names no algorithm we can verify."""
    digests: dict[str, str] = {}
    if "Content-MD5" in headers:
        _add_digest(digests, "md5", headers["Content-MD5"].strip())
    if "Content-Digest" in headers:
        parsed = http_sfv.Dictionary()
        try:
            parsed.parse(headers["Content-Digest"].encode())
        except ValueError:
            raise BadRequest("Content-Digest is not a valid structured field dictionary (RFC 9530)") from None
        usable = [(DIGEST_ALGORITHMS[name], member.value) for name, member in parsed.items()
                  if name in DIGEST_ALGORITHMS]
        if not usable:
            raise BadRequest(f"Content-Digest has no algorithm this server verifies ({', '.join(DIGEST_ALGORITHMS)})")
        for algorithm, value in usable:
            if not isinstance(value, bytes):
                raise BadRequest("a Content-Digest value must be a byte sequence, e.g. sha-256=:<base64>:")
            _add_digest(digests, algorithm, b64(value))
    if "Digest" in headers:
        usable = 0
        for member in headers["Digest"].split(","):
            name, _, value = member.strip().partition("=")
            algorithm = DIGEST_ALGORITHMS.get(name.strip().lower())
            if algorithm is not None and value:
                _add_digest(digests, algorithm, value.strip())
                usable += 1
        if not usable:
            raise BadRequest(f"Digest has no algorithm this server verifies ({', '.join(DIGEST_ALGORITHMS)})")
    return digests


async def _counted(request: web.Request) -> AsyncIterator[bytes]:
    """The chunk's body, counted into /metrics as it arrives (also the bytes of a chunk cut off)."""
    received = request.app[context.METRICS].session_bytes_received
    async for piece in gate.body(request):
        received.inc(len(piece))
        yield piece


def _chunk_id(request: web.Request) -> int:
    raw = request.match_info["chunk_id"]
    if not is_decimal(raw, 6):
        raise BadRequest(f"chunkId must be a chunk number (1 to totalChunks), got {raw!r}")
    return int(raw)


def _status(engine: Any, upload: Upload) -> dict[str, Any]:
    status = engine.status(upload)
    return {
        "sessionId": upload.id, "state": upload.state, "bucket_id": upload.bucket_id, "key": upload.key,
        "fileName": upload.metadata.get("fileName"), "fileSize": upload.length, "chunkSize": upload.part_size,
        "totalChunks": upload.total_parts, "receivedChunks": [part["part_number"] for part in status["parts"]],
        "missingChunks": status.get("missing_parts", []), "bytesReceived": status["received"],
        "expiresAt": _iso(upload), **_hashed_prefix(upload)}


def _hashed_prefix(upload: Upload) -> dict[str, Any]:
    """A session hashed in order: how far, and the sha256 of those bytes (a client resumes only
    when its file has the same first bytes)."""
    if not hashes_in_order(upload):
        return {}
    return {"bytesHashed": upload.offset, "sha256SoFar": upload.sha256_so_far}


# ---------------------------------------------------------------- the JSON bodies
class InitiateSession(JsonBody):
    bucket_id: BucketId
    key: str | None = Field(None, description="default: fileName, made safe")
    fileName: Annotated[str, Field(min_length=1), Says("fileName is required")]
    fileSize: Annotated[int, Field(ge=0), Says("fileSize must be a non-negative integer")]
    contentType: Annotated[OptionalText | None, checked(lambda value: optional_media_type(value, "contentType"))] \
        = None
    sha256: Sha256 | None = None
    verifySha256: bool = Field(False, description="hash the chunks in order, as with a declared sha256, and take "
                                                  "the sha256 at completion: the client needs no read of the file "
                                                  "before its first chunk")


class CompleteSession(JsonBody):
    sha256: Sha256 | None = Field(None, description="if given, must be the one declared at initiate, or that of "
                                                    "the chunks hashed in order (verifySha256)")


_ERRORS = {"400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR, "410": ERROR}
_SESSION_ID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


@routes.post("/api/v1/attachment/initiate", body=gate.SMALL)
@documented(
    "Start an indexed upload session; the server picks chunkSize (>= 5 MiB, <= 10 000 chunks)",
    {"201": {"description": "{sessionId, chunkSize, totalChunks, expiresAt, uploadUrl}"}, **_ERRORS, "413": ERROR},
    body=InitiateSession)
async def initiate(request: web.Request) -> web.Response:
    body = await read_body(request, InitiateSession)
    key = sanitize_filename(body.fileName) if body.key is None else body.key
    bucket_id, key = await gate.admit_target(request, body.bucket_id, key)
    upload = await request.app[context.ENGINE].create(
        "session", bucket_id, key, identity(request).user, length=body.fileSize, content_type=body.contentType,
        sha256=body.sha256, verify_sha256=body.verifySha256, metadata={"fileName": body.fileName})
    return web.json_response({
        "sessionId": upload.id, "chunkSize": upload.part_size, "totalChunks": upload.total_parts,
        "expiresAt": _iso(upload), "uploadUrl": _session_url(upload) + "/upload/{chunkId}",
        "bucket_id": bucket_id, "key": key}, status=201)


@routes.put(SESSION + "/upload/{chunk_id}", body=gate.STREAM)
@documented(
    "Upload chunk chunkId (1..totalChunks) in any order; exactly chunkSize bytes except the last; a retry "
    "replaces it. Content-MD5, Digest or Content-Digest (sha-256, md5) are verified. In a session that "
    "declared a sha256, chunks are hashed in order: a chunk may wait (at most a minute) while the chunk "
    "before it is in flight, and a chunk answered already cannot be replaced: sent again it must have the "
    "same bytes (else 409 ChunkChanged, nothing stored).",
    {"200": {"description": "{sessionId, chunkId, size, etag, expiresAt}"}, **_ERRORS, "409": ERROR,
     "423": ERROR},
    parameters=[_SESSION_ID, {"name": "chunk_id", "in": "path", "required": True,
                              "schema": {"type": "integer", "minimum": 1}}],
    requestBody={"required": True, "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}})
async def put_chunk(request: web.Request) -> web.Response:
    engine = request.app[context.ENGINE]
    upload = await gate.admit_upload(request, request.match_info["session_id"], "WRITE")
    if upload.protocol != "session":
        raise BadRequest(f"this is a {upload.protocol} upload, not an indexed session: it takes no chunks here")
    chunk_id = _chunk_id(request)
    expected = upload.expected_part_size(chunk_id)
    digests = chunk_digests(request.headers)
    part = await engine.put_part(upload, chunk_id, _counted(request), expected_size=expected,
                                 size_hint=request.content_length, md5=digests.pop("md5", None), checksums=digests)
    upload = await engine.get(upload.id, upload.owner, with_parts=False)  # the write extended the expiry
    return web.json_response({"sessionId": upload.id, "chunkId": part.part_number, "size": part.size,
                              "etag": part.etag, "expiresAt": _iso(upload)})


@routes.get(SESSION)
@documented(
    "Session status: receivedChunks, missingChunks, bytesReceived, expiresAt; bytesHashed and sha256SoFar for "
    "a session hashed in order (declared sha256 or verifySha256)",
    {"200": {"description": "status"}, **_ERRORS}, parameters=[_SESSION_ID])
async def session_status(request: web.Request) -> web.Response:
    upload = await gate.admit_upload(request, request.match_info["session_id"], "WRITE")
    return web.json_response(_status(request.app[context.ENGINE], upload))


@routes.post(SESSION + "/complete", body=gate.SMALL)
@documented(
    "Complete: every chunk present, sizes add up, the sha256 declared at initiate verified; the object "
    "appears atomically",
    {"201": {"description": "file info"}, **_ERRORS, "409": ERROR, "423": ERROR},
    parameters=[_SESSION_ID], body=CompleteSession, body_required=False)
async def complete(request: web.Request) -> web.Response:
    upload = await gate.admit_upload(request, request.match_info["session_id"], "WRITE")
    body = await read_body(request, CompleteSession, optional=True)
    try:
        info = await request.app[context.ENGINE].complete(upload, sha256=body.sha256)
    except MissingParts as missing:
        raise BadRequest(f"{len(missing.part_numbers)} chunks are missing", missingChunks=missing.part_numbers) \
            from None
    return web.json_response({**info, "sessionId": upload.id, "expiresAt": _iso(upload)}, status=201)


@routes.get("/api/v1/attachment/sessions")
@documented(
    "The caller's unfinished uploads (any protocol), newest first: what a client needs to resume one "
    "with no local state. Filter by bucket_id (needs WRITE on it) and key",
    {"200": {"description": "{sessions: [{sessionId, protocol, state, bucket_id, key, fileName, fileSize, "
                            "chunkSize, totalChunks, receivedChunks, missingChunks, bytesReceived, sha256, "
                            "bytesHashed?, sha256SoFar?, createdAt, expiresAt}]}",
             "content": {"application/json": {"schema": {"type": "object", "properties": {
                 "sessions": {"type": "array", "items": {"type": "object", "properties": {
                     "sessionId": {"type": "string", "format": "uuid"}, "protocol": {"type": "string"},
                     "bucket_id": {"type": "string", "format": "uuid"}, "key": {"type": "string"},
                     "fileSize": {"type": "integer", "nullable": True}, "chunkSize": {"type": "integer"},
                     "totalChunks": {"type": "integer", "nullable": True},
                     "receivedChunks": {"type": "array", "items": {"type": "integer"}},
                     "missingChunks": {"type": "array", "items": {"type": "integer"}},
                     "bytesReceived": {"type": "integer"},
                     "sha256": {"type": "string", "nullable": True},
                     "bytesHashed": {"type": "integer", "description": "sessions hashed in order: the chunks "
                                                                         "1..n hashed so far, in bytes"},
                     "sha256SoFar": {"type": "string", "description": "the sha256 of those bytes"},
                     "createdAt": {"type": "string", "format": "date-time"},
                     "expiresAt": {"type": "string", "format": "date-time"}}}}}}}}},
     "400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR},
    parameters=[{"name": "bucket_id", "in": "query", "schema": {"type": "string", "format": "uuid"}},
                {"name": "key", "in": "query", "schema": {"type": "string"}, "description": "needs bucket_id"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                                             "default": 100}}])
async def unfinished_uploads(request: web.Request) -> web.Response:
    """The caller's open uploads, newest first, of every protocol (an upload started by tus can be
    aborted here too), filtered by bucket and key: a client finds the session it can resume from
    these, with no local state. A bucket filter needs WRITE on it, like every route of this API."""
    caller = identity(request)
    if caller.anonymous:
        raise Unauthorized("authentication required")
    bucket_id = request.query.get("bucket_id") or None
    key = request.query.get("key") or None
    if key is not None and bucket_id is None:
        raise BadRequest("key needs bucket_id")
    if bucket_id is not None:
        bucket_id = parse_bucket_id(bucket_id)
        await gate.admit(request, bucket_id, "WRITE")
    if key is not None:
        key = validate_key(key)
    limit = query_int(request, "limit", 100, 1, 1000)
    engine = request.app[context.ENGINE]
    uploads = await engine.unfinished(caller.user, bucket_id=bucket_id, key=key, limit=limit)
    return web.json_response({"sessions": [{**_status(engine, upload), "protocol": upload.protocol,
                                            "sha256": upload.sha256, "createdAt": _iso_time(upload.created_at)}
                                           for upload in uploads]})


def _iso_time(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z")


@routes.post(SESSION + "/abort", body=gate.SMALL)
@documented(
    "Abort: every stored chunk is removed (works for any of the caller's unfinished uploads, whatever "
    "protocol started it)", {"204": {"description": "aborted"}, **_ERRORS, "409": ERROR},
    parameters=[_SESSION_ID])
async def abort(request: web.Request) -> web.Response:
    upload = await gate.admit_upload(request, request.match_info["session_id"], "WRITE")
    await request.app[context.ENGINE].abort(upload)
    return web.Response(status=204)
