"""Signed URLs: GET/HEAD/PUT /api/v1/signed/{id}/{key}?method=&expires=&kid=&id=&sig=.

No Authorization header: the signature (auth/signing.py) says which method, bucket and key it
allows until when; the URL's row in signed_urls says whether it was revoked. The gate then lets the
URL do only what its creator may do now (READ for GET, WRITE for PUT). A GET is the SAGE download
(Range, If-Range, ETag, Content-Disposition). A PUT streams its raw body to storage under the gate's
limit and budget, counted as an upload of the creator's; the object appears only when the body is
complete, and a URL makes one upload: once it completed, another PUT is 409.
"""
from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timezone

from aiohttp import web

from .. import context, gate
from ..auth.signing import SIGNED_PREFIX
from ..db import cursor, transaction
from ..db import osdu_files as osdu_queries
from ..db import signed_urls as url_queries
from ..errors import BadRequest, Conflict, Forbidden, Locked
from ..openapi import documented
from ..uploads.leases import new_token
from .schemas import BAD_REQUEST, BUCKET_ID_PARAM, NOT_FOUND, error, json_content
from .transfer import (DOWNLOAD_HEADERS, KEY_PARAM, RANGE_PARAM, declared_sha256, raw_body_content_type, send_head,
                       send_object, store_streamed)

log = logging.getLogger("sagestore.signed")
routes = gate.Routes()
SIGNED_PATH = SIGNED_PREFIX + "{id}/{key:.*}"


async def admitted(request: web.Request) -> tuple[dict, str]:
    """(the URL's row, the key) once the URL is valid and its creator may still do what it allows."""
    who, key = await gate.signed_caller(request)
    await gate.admit(request, who.link["bucket_id"], gate.LINK_PERMISSION[who.link["method"]])
    return who.link, key


SIGNED_PARAMS = [BUCKET_ID_PARAM, KEY_PARAM, *[
    {"name": name, "in": "query", "required": True, "schema": {"type": "string"}, "description": text}
    for name, text in (("method", "the method the URL is signed for: GET (also HEAD) or PUT"),
                       ("expires", "expiry, Unix seconds"), ("kid", "id of the signing key"),
                       ("id", "the URL's id (its revocation handle)"),
                       ("sig", "base64url HMAC-SHA256 over method, bucket, key, expires, kid and id"))]]

REFUSED = error("Tampered, expired, revoked, signed with a key this server does not have, or its creator no "
                "longer has the permission it needs (READ for GET, WRITE for PUT)")


@routes.get(SIGNED_PATH, allow_head=False)
@documented("Download through a signed URL (no Authorization header): Range, If-Range, ETag as the "
            "SAGE download",
            {"200": {"description": "The file's bytes", "headers": DOWNLOAD_HEADERS},
             "206": {"description": "The requested range"}, "304": {"description": "Not modified"},
             "400": BAD_REQUEST, "403": REFUSED, "404": NOT_FOUND,
             "405": error("The URL is signed for another method"), "416": error("Range outside the file")},
            parameters=[*SIGNED_PARAMS, RANGE_PARAM], security=[])
async def signed_get(request: web.Request) -> web.StreamResponse:
    row, key = await admitted(request)
    location = request.app[context.MAPPING].object(row["bucket_id"], key)
    return await send_object(request, key, location)


@routes.head(SIGNED_PATH)
@documented("A signed GET's headers", {"200": {"description": "The file exists"},
                                      "400": {"description": "a parameter is missing or malformed"},
                                      "403": {"description": "refused"},
                                      "404": {"description": "no such file"},
                                      "405": {"description": "the URL is signed for another method"}},
            parameters=SIGNED_PARAMS, security=[])
async def signed_head(request: web.Request) -> web.Response:
    row, key = await admitted(request)
    location = request.app[context.MAPPING].object(row["bucket_id"], key)
    return await send_head(request, key, location)


@routes.put(SIGNED_PATH, body=gate.STREAM)
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
    row, key = await admitted(request)
    gate.refuse_declared_length(request)
    if request.content_type == "multipart/form-data":
        raise BadRequest("a signed PUT takes the file as the raw body (curl -T file URL), not a form")
    expected_sha256 = declared_sha256(request)
    content_type = raw_body_content_type(request)

    pool = request.app[context.DB]
    token = new_token()
    async with cursor(pool) as cur:
        claimed = await url_queries.claim_upload(cur, row["id"], token, request.app[context.ENGINE].liveness.instance_id,
                                                 request.app[context.SETTINGS].upload_ttl)
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
    try:
        result = await store_streamed(request, location, content_type=content_type, owner=row["created_by"],
                                      expected_sha256=expected_sha256)
        async with transaction(pool) as cur:
            finished = await url_queries.finish_upload(cur, row["id"], token)
            if finished and row["purpose"] == "osdu":
                await osdu_queries.record_upload(cur, row["partition_id"], row["file_id"], result.size, result.sha256)
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
