"""Share links: revocable signed URLs for one file (what `mc share` and `aws s3 presign` make).

POST /api/v1/shares creates one (GET needs READ on the bucket, PUT needs WRITE). A link works only
while its creator still holds that permission (the gate checks at each use). GET lists the caller's
own links; with ?bucket_id= and FULL_CONTROL on that bucket, every link on it, whoever made it.
DELETE /api/v1/shares/{id} revokes one (its creator, or FULL_CONTROL on the bucket).
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import ConfigDict, Field

from .. import context, gate
from ..acl import authorize, held_permissions, satisfies
from ..auth.signing import MAX_EXPIRY
from ..db import cursor, transaction
from ..db import signed_urls as url_queries
from ..errors import BadRequest, NotFound, Unauthorized
from ..openapi import documented
from ..storage import parse_bucket_id, validate_key
from .bodies import BucketId, JsonBody, Says, checked, read_body
from .common import identity
from .links import issue, url_of
from .schemas import BAD_REQUEST, FORBIDDEN, NOT_FOUND, UNAUTHORIZED, json_content

routes = gate.Routes()
DEFAULT_EXPIRES_IN = 3600


def _file_key(key: str) -> str:
    if key == "" or key.endswith("/"):
        raise BadRequest("key names a folder; a share link is for one file")
    return validate_key(key)


class NewShare(JsonBody):
    model_config = ConfigDict(extra="forbid")
    unknown_fields = "unknown field(s) {names}: send bucket_id, key, method, expires_in"

    bucket_id: Annotated[BucketId, Says("bucket_id is required: the bucket's UUID")]
    key: Annotated[str, checked(_file_key), Says("key is required: the file's key")]
    method: Annotated[Literal["GET", "PUT"], Says("method must be GET or PUT")] = "GET"
    expires_in: Annotated[int, Field(ge=1, le=MAX_EXPIRY), Says(
        f"expires_in must be an integer number of seconds between 1 and {MAX_EXPIRY} (7 days)")] = DEFAULT_EXPIRES_IN


def rfc3339(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def share_json(row: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    body = {"id": row["id"], "method": row["method"], "bucket_id": row["bucket_id"], "key": row["key"],
            "expires_at": rfc3339(row["expires_at"]), "created_by": row["created_by"],
            "created_at": rfc3339(row["created_at"])}
    if url is not None:
        body["url"] = url
    return body


SHARE = {"type": "object", "required": ["id", "method", "bucket_id", "key", "expires_at", "created_by", "created_at"],
         "properties": {"id": {"type": "string", "format": "uuid"},
                        "url": {"type": "string", "description": "absolute signed URL; works with no "
                                                                 "Authorization header; opaque to clients. "
                                                                 "Listings show it for the caller's own links "
                                                                 "only"},
                        "method": {"type": "string", "enum": ["GET", "PUT"]},
                        "bucket_id": {"type": "string", "format": "uuid"}, "key": {"type": "string"},
                        "expires_at": {"type": "string", "format": "date-time"},
                        "created_by": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"}}}

LISTED = {**SHARE, "properties": {**SHARE["properties"], "revoked": {"type": "boolean"}}}


@routes.post("/api/v1/shares", body=gate.SMALL)
@documented(
    "Create a share link for one file: a signed URL for GET (needs READ) or PUT (needs WRITE)",
    {"201": json_content("The share link", SHARE), "400": BAD_REQUEST, "401": UNAUTHORIZED, "403": FORBIDDEN,
     "404": NOT_FOUND},
    body=NewShare)
async def create_share(request: web.Request) -> web.Response:
    caller = identity(request)
    if caller.anonymous:
        raise Unauthorized("authentication required")
    body = await read_body(request, NewShare)
    bucket_id, key, method, expires_in = body.bucket_id, body.key, body.method, body.expires_in
    async with transaction(request.app[context.DB]) as cur:
        # fresh rows inside the transaction: a grant revoked a moment ago must not mint a link
        await authorize(cur, bucket_id, caller, "READ" if method == "GET" else "WRITE", writing=method == "PUT")
        row, url = await issue(request, cur, method=method, bucket_id=bucket_id, key=key, expires_in=expires_in,
                               purpose="share", creator=caller)
    return web.json_response(share_json(row, url), status=201)


@routes.get("/api/v1/shares")
@documented(
    "Share links, oldest first: the caller's own; with bucket_id, the caller's own on that bucket, or every "
    "link on it when the caller holds FULL_CONTROL there (the owner finds and revokes links others made)",
    {"200": json_content("Share links", {"type": "object", "properties": {
        "shares": {"type": "array", "items": LISTED}}}), "400": BAD_REQUEST, "401": UNAUTHORIZED},
    parameters=[{"name": "bucket_id", "in": "query", "schema": {"type": "string", "format": "uuid"},
                 "description": "only the links of this bucket (every creator's, for FULL_CONTROL holders)"}])
async def list_shares(request: web.Request) -> web.Response:
    caller = identity(request)
    if caller.anonymous:
        raise Unauthorized("authentication required")
    bucket_id = parse_bucket_id(request.query["bucket_id"]) if request.query.get("bucket_id") else None
    creator = caller.user
    if bucket_id is not None:
        bucket, grants = await request.app[context.ACL].bucket_with_grants(bucket_id)
        if bucket is not None and satisfies(held_permissions(caller, grants), "FULL_CONTROL"):
            creator = None
    async with cursor(request.app[context.DB]) as cur:
        rows = await url_queries.list_shares(cur, creator, bucket_id)
    shares = []
    for row in rows:
        # a link is a bearer credential acting as its creator: only its creator sees its URL again
        shown = share_json(row, url_of(request, row) if row["created_by"] == caller.user else None)
        shares.append({**shown, "revoked": row["revoked_at"] is not None})
    return web.json_response({"shares": shares})


@routes.delete("/api/v1/shares/{share_id}")
@documented(
    "Revoke a share link (its creator, or FULL_CONTROL on the bucket); its URL is refused on every instance",
    {"204": {"description": "Revoked"}, "400": BAD_REQUEST, "401": UNAUTHORIZED, "403": FORBIDDEN,
     "404": NOT_FOUND},
    parameters=[{"name": "share_id", "in": "path", "required": True,
                 "schema": {"type": "string", "format": "uuid"}}])
async def revoke_share(request: web.Request) -> web.Response:
    caller = identity(request)
    if caller.anonymous:
        raise Unauthorized("authentication required")
    try:
        share_id = str(uuid.UUID(request.match_info["share_id"]))
    except ValueError:
        raise BadRequest("share id must be a UUID") from None
    async with transaction(request.app[context.DB]) as cur:
        row = await url_queries.get(cur, share_id)
        if row is None or row["purpose"] != "share":
            raise NotFound("share not found")
        if row["created_by"] != caller.user:
            # anyone else needs FULL_CONTROL; who cannot read the bucket learns nothing (404)
            await authorize(cur, row["bucket_id"], caller, "FULL_CONTROL")
        await url_queries.revoke(cur, url_id=share_id)
    request.app[context.SIGNED_URLS].invalidate(share_id)
    return web.Response(status=204)
