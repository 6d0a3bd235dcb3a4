"""S3 access keys of the caller: create (the secret is shown once), list, revoke.

/api/v1/s3/keys is reached with a SAGE token; the keys it makes sign requests to the S3 door
(s3api/). A key expires at the latest when the token it was made with does (see
s3api/credentials.py for the whole model).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from .. import context, gate
from ..db import access_keys as key_queries
from ..db import cursor, transaction
from ..errors import BadRequest, NotFound, Unauthorized
from ..openapi import documented
from ..s3api.credentials import new_key_id
from .bodies import JsonBody, Says, read_body
from .common import identity
from .schemas import BAD_REQUEST, NOT_FOUND, UNAUTHORIZED, json_content

routes = gate.Routes()
DEFAULT_LIFETIME = 7 * 86400  # seconds, when the request names none
MIN_LIFETIME = 60
MAX_DESCRIPTION = 256

KEY = {"type": "object", "required": ["access_key_id", "owner", "created_at", "expires_at", "state"], "properties": {
    "access_key_id": {"type": "string"}, "owner": {"type": "string"}, "description": {"type": "string"},
    "created_at": {"type": "string", "format": "date-time"}, "expires_at": {"type": "string", "format": "date-time"},
    "revoked_at": {"type": "string", "format": "date-time", "nullable": True},
    "state": {"type": "string", "enum": ["active", "expired", "revoked"]}}}
NEW_KEY = {"type": "object", "required": [*KEY["required"], "secret_access_key"],
           "properties": {**KEY["properties"], "secret_access_key": {
               "type": "string", "description": "shown only in this answer; keep it secret"}}}


class NewKey(JsonBody):
    expires_in: Annotated[int | None, Field(ge=MIN_LIFETIME), Says(
        f"expires_in must be a number of seconds, at least {MIN_LIFETIME}")] = None
    description: Annotated[str | None, Field(max_length=MAX_DESCRIPTION)] = None  # "" stores no description


def key_json(row: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    state = "revoked" if row["revoked_at"] is not None else "expired" if row["expires_at"] <= now else "active"
    return {"access_key_id": row["id"], "owner": row["owner"], "description": row["description"],
            "created_at": row["created_at"].isoformat(), "expires_at": row["expires_at"].isoformat(),
            "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None, "state": state}


def token_user(request: web.Request):
    caller = identity(request)
    if caller.anonymous:
        raise Unauthorized("S3 access keys are made and managed with a SAGE token")
    return caller


@routes.post("/api/v1/s3/keys", body=gate.SMALL)
@documented(
    "Create an S3 access key acting as the caller (the secret is in this answer only). It expires after "
    "expires_in seconds (default 7 days), never past the server's maximum nor the caller's token",
    {"201": json_content("The new key and its secret", NEW_KEY), "400": BAD_REQUEST, "401": UNAUTHORIZED},
    body=NewKey, body_required=False)
async def create_key(request: web.Request) -> web.Response:
    caller = token_user(request)
    body = await read_body(request, NewKey, optional=True)
    settings = request.app[context.SETTINGS]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    lifetime = min(body.expires_in or DEFAULT_LIFETIME, settings.s3_key_max_lifetime)
    expires_at = now + timedelta(seconds=lifetime)
    if caller.expires_at is not None:  # never past the token it was made with
        expires_at = min(expires_at, datetime.fromtimestamp(caller.expires_at, timezone.utc))
        if expires_at <= now:
            raise BadRequest("the token has expired")
    credentials = request.app[context.S3_CREDENTIALS]
    key_id = new_key_id()
    async with transaction(request.app[context.DB]) as cur:
        await key_queries.drop_expired(cur, caller.user)
        row = await key_queries.insert(cur, key_id=key_id, owner=caller.user, description=body.description or "",
                                       signing_key_id=credentials.current_signing_key_id, expires_at=expires_at)
        await key_queries.record_groups(cur, caller.user, sorted(caller.groups))
    answer = key_json(row)
    answer["secret_access_key"] = credentials.secret_for(key_id, row["signing_key_id"])
    return web.json_response(answer, status=201, headers={"Cache-Control": "no-store"})


@routes.get("/api/v1/s3/keys")
@documented("The caller's S3 access keys (never their secrets)",
            {"200": json_content("The keys, oldest first", {"type": "object", "properties": {
                "keys": {"type": "array", "items": KEY}}}), "401": UNAUTHORIZED})
async def list_keys(request: web.Request) -> web.Response:
    caller = token_user(request)
    async with cursor(request.app[context.DB]) as cur:
        rows = await key_queries.list_for(cur, caller.user)
    return web.json_response({"keys": [key_json(row) for row in rows]})


@routes.delete("/api/v1/s3/keys/{key_id}")
@documented("Revoke one of the caller's S3 access keys; every instance refuses it within the ACL cache's bound",
            {"200": json_content("The revoked key", KEY), "401": UNAUTHORIZED, "404": NOT_FOUND},
            parameters=[{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}])
async def revoke_key(request: web.Request) -> web.Response:
    caller = token_user(request)
    key_id = request.match_info["key_id"]
    if not (key_id.isascii() and key_id.isalnum() and len(key_id) <= 128):
        raise NotFound("no such access key")
    async with cursor(request.app[context.DB]) as cur:
        row = await key_queries.revoke(cur, key_id, caller.user)
    if row is None:
        raise NotFound("no such access key")
    request.app[context.S3_CACHE].forget_key(key_id)  # committed: this instance refuses it at once
    return web.json_response(key_json(row))
