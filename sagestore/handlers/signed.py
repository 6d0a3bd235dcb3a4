"""Signed URLs: GET/HEAD/PUT /api/v1/signed/{id}/{key}?method=&expires=&kid=&id=&sig=.

No Authorization header: the signature (auth/signing.py) says which method, bucket and key it
allows until when; the URL's row in signed_urls says whether it was revoked. A GET is the SAGE
download (objects.send_object: Range, If-Range, ETag, Content-Disposition). A PUT streams its
raw body through put_stream (memory bounded); the object appears only when the body is complete,
and a URL makes one upload: once it completed, another PUT is 409.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from .. import context
from ..auth.signing import MAX_EXPIRY, SIGNED_PREFIX
from ..db import cursor, transaction
from ..db import signed_urls as url_queries
from ..errors import BadRequest, Conflict, Forbidden, Locked, NotFound, PayloadTooLarge
from ..openapi import documented
from ..storage import ChecksumMismatch, parse_bucket_id, validate_key
from ..uploads.leases import new_token
from . import objects
from .common import body_pieces
from .schemas import BAD_REQUEST, BUCKET_ID_PARAM, NOT_FOUND, error, json_content

log = logging.getLogger("sagestore.signed")
routes = web.RouteTableDef()
SIGNED_PATH = SIGNED_PREFIX + "{id}/{key:.*}"


def base_url(request: web.Request) -> str:
    """Where clients reach this server: SAGESTORE_PUBLIC_URL, else the request's scheme and Host."""
    configured = request.app[context.SETTINGS].public_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


async def issue(request: web.Request, cur: Any, *, method: str, bucket_id: str, key: str, expires_in: int,
                purpose: str, created_by: str, file_id: str | None = None,
                partition_id: str | None = None) -> tuple[dict[str, Any], str]:
    """Record and sign one URL (inside the caller's transaction); returns (row, absolute URL)."""
    if not 1 <= expires_in <= MAX_EXPIRY:
        raise BadRequest(f"expires_in must be between 1 and {MAX_EXPIRY} seconds (7 days)")
    signer = request.app[context.SIGNER]
    url_id = str(uuid.uuid4())
    expires_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=expires_in)
    row = await url_queries.insert(cur, url_id=url_id, method=method, bucket_id=bucket_id, key=key, purpose=purpose,
                                   created_by=created_by, expires_at=expires_at, key_id=signer.current,
                                   file_id=file_id, partition_id=partition_id)
    path = signer.sign(method, bucket_id, key, int(expires_at.timestamp()), url_id)
    return row, base_url(request) + path


async def verified(request: web.Request) -> tuple[dict[str, Any], str]:
    """The URL's row once signature, expiry, method and revocation are checked; and the key."""
    bucket_id = parse_bucket_id(request.match_info["id"])
    key = validate_key(request.match_info["key"])
    target = request.app[context.SIGNER].verify(request.method, bucket_id, key, request.query)
    row = await request.app[context.SIGNED_URLS].get(target.url_id)
    if row is None or row["bucket_id"] != bucket_id or row["key"] != key or row["method"] != target.method:
        raise Forbidden("signed URL refused: it is no longer valid")
    if row["revoked_at"] is not None:
        raise Forbidden("signed URL refused: it has been revoked")
    return row, key


SIGNED_PARAMS = [BUCKET_ID_PARAM, objects.KEY_PARAM, *[
    {"name": name, "in": "query", "required": True, "schema": {"type": "string"}, "description": text}
    for name, text in (("method", "the method the URL is signed for: GET (also HEAD) or PUT"),
                       ("expires", "expiry, Unix seconds"), ("kid", "id of the signing key"),
                       ("id", "the URL's id (its revocation handle)"),
                       ("sig", "base64url HMAC-SHA256 over method, bucket, key, expires, kid and id"))]]

REFUSED = error("Tampered, expired, revoked, or signed with a key this server does not have")


@routes.get(SIGNED_PATH, allow_head=False)
@documented("Download through a signed URL (no Authorization header): Range, If-Range, ETag as the "
            "SAGE download",
            {"200": {"description": "The file's bytes", "headers": objects.DOWNLOAD_HEADERS},
             "206": {"description": "The requested range"}, "304": {"description": "Not modified"},
             "400": BAD_REQUEST, "403": REFUSED, "404": NOT_FOUND,
             "405": error("The URL is signed for another method"), "416": error("Range outside the file")},
            parameters=[*SIGNED_PARAMS, objects.RANGE_PARAM], security=[])
async def signed_get(request: web.Request) -> web.StreamResponse:
    row, key = await verified(request)
    location = request.app[context.MAPPING].object(row["bucket_id"], key)
    return await objects.send_object(request, key, location)


@routes.head(SIGNED_PATH)
@documented("A signed GET's headers", {"200": {"description": "The file exists"},
                                      "400": {"description": "a parameter is missing or malformed"},
                                      "403": {"description": "refused"},
                                      "404": {"description": "no such file"},
                                      "405": {"description": "the URL is signed for another method"}},
            parameters=SIGNED_PARAMS, security=[])
async def signed_head(request: web.Request) -> web.Response:
    row, key = await verified(request)
    location = request.app[context.MAPPING].object(row["bucket_id"], key)
    return await objects.send_head(request, key, location)


@routes.put(SIGNED_PATH)
@documented("Upload the raw body through a signed PUT URL (curl -T file URL), streamed to storage; the "
            "object appears when the body is complete. One upload per URL",
            {"201": json_content("Stored", {"type": "object", "properties": {
                "bucket-id": {"type": "string", "format": "uuid"}, "key": {"type": "string"},
                "size": {"type": "integer"}, "sha256": {"type": "string"}}}),
             "400": BAD_REQUEST, "403": REFUSED, "404": NOT_FOUND,
             "405": error("The URL is signed for another method"),
             "409": error("The upload through this URL has completed: a link cannot overwrite"),
             "413": error("Larger than the server's max upload size"),
             "423": error("Another upload through this URL is in progress")},
            parameters=SIGNED_PARAMS, security=[],
            requestBody={"required": True, "content": {"*/*": {"schema": {"type": "string",
                                                                         "format": "binary"}}}})
async def signed_put(request: web.Request) -> web.Response:
    row, key = await verified(request)
    settings = request.app[context.SETTINGS]
    if request.content_length is not None and request.content_length > settings.max_upload_size:
        raise PayloadTooLarge(f"the file is larger than the {settings.max_upload_size}-byte limit")
    if request.content_type == "multipart/form-data":
        raise BadRequest("a signed PUT takes the file as the raw body (curl -T file URL), not a form")
    expected_sha256 = objects.declared_sha256(request)
    content_type = None if request.content_type == "application/x-www-form-urlencoded" \
        else request.headers.get("Content-Type")
    content_type = objects.checked_content_type(content_type)
    bucket, _ = await request.app[context.ACL].bucket_with_grants(row["bucket_id"])
    if bucket is None or bucket["archived"]:
        raise NotFound("bucket not found")

    pool = request.app[context.DB]
    token = new_token()
    async with cursor(pool) as cur:
        claimed = await url_queries.claim_upload(cur, row["id"], token, request.app[context.ENGINE].liveness.instance_id,
                                                 settings.upload_ttl)
        if claimed is None:
            current = await url_queries.get(cur, row["id"])
    if claimed is None:
        if current is None or current["revoked_at"] is not None:
            raise Forbidden("signed URL refused: it has been revoked")
        if current["uploaded_at"] is not None:
            raise Conflict("the upload through this URL has completed; a signed URL cannot overwrite it")
        if current["expires_at"] <= datetime.now(timezone.utc):
            raise Forbidden("signed URL refused: it has expired")
        raise Locked("another upload through this URL is in progress")

    location = request.app[context.MAPPING].object(row["bucket_id"], key)
    store = request.app[context.STORE]
    try:
        try:
            result = await store.put_stream(location, objects.limited(body_pieces(request),
                                                                      settings.max_upload_size),
                                            content_type=content_type,
                                            metadata={"owner": objects.metadata_value(row["created_by"])},
                                            expected_sha256=expected_sha256)
        except ChecksumMismatch as mismatch:
            raise BadRequest(f"the body does not match its declared digest: {mismatch}; nothing was stored",
                             expected=mismatch.expected, actual=mismatch.actual) from None
        async with transaction(pool) as cur:
            finished = await url_queries.finish_upload(cur, row["id"], token)
            if finished and row["purpose"] == "osdu":
                await cur.execute("""UPDATE osdu_files SET uploaded_at = now(), size = %s, sha256 = %s
                                     WHERE partition_id = %s AND file_id = %s""",
                                  (result.size, result.sha256, row["partition_id"], row["file_id"]))
    except BaseException:
        with contextlib.suppress(Exception):
            async with cursor(pool) as cur:
                await url_queries.release_upload(cur, row["id"], token)
        raise
    if not finished:  # revoked or taken over while the body streamed; what we stored stays unannounced
        raise Conflict("the URL changed while the body was sent (revoked or used by another upload)")
    request.app[context.SIGNED_URLS].invalidate(row["id"])
    metrics = request.app[context.METRICS]
    metrics.file_uploads.inc()
    metrics.bytes_uploaded.inc(result.size)
    return web.json_response({"bucket-id": row["bucket_id"], "key": key, "size": result.size,
                              "sha256": result.sha256}, status=201)
