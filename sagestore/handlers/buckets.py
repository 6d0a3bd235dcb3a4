"""SAGE buckets: create, list, show, rename/retype/archive, delete (with all their files).

`?permissions` on /api/v1/objects/{id} is the bucket's ACL sub-resource; those
requests are handed to the permissions adapter ("permissions GET" / "permissions DELETE").
"""
from __future__ import annotations

import base64
import functools
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any

from aiohttp import web
from pydantic import ConfigDict, Field, model_validator

from .. import context, gate
from ..acl import authorize
from ..db import buckets as bucket_queries
from ..db import cursor, transaction
from ..errors import BadRequest, Conflict, NotFound, Unauthorized
from ..openapi import documented
from .bodies import JsonBody, Says, checked, refusal
from .common import bucket_id_of, hand_off, identity, json_body, query_flag, query_int, query_text
from .schemas import (BAD_REQUEST, BUCKET, BUCKET_ID_PARAM, BUCKET_SUMMARY, DELETED, FORBIDDEN, GRANT, GRANTEE_PARAM,
                      NOT_FOUND, PERMISSIONS_PARAM, UNAUTHORIZED, error, json_content)

routes = gate.Routes()

BUCKET_TYPES = ("model", "training-data", "profile", "none")
MAX_NAME_LENGTH = 256


@functools.lru_cache(maxsize=4096)  # a bucket's times rarely change; astimezone + strftime were 6% of a bucket GET
def rfc3339(value: datetime) -> str:
    """The Go server's time format: UTC, whole seconds, 'Z'."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def bucket_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "owner": row["owner"], "type": row["type"],
            "time_created": rfc3339(row["time_created"]),
            "time_last_updated": rfc3339(row["time_last_updated"]), "archived": row["archived"]}


def bucket_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "owner": row["owner"], "type": row["type"]}


def parse_type(value: Any) -> str:
    if value is None or value == "":
        raise BadRequest(f"bucket type is required: one of {', '.join(BUCKET_TYPES)}")
    if value not in BUCKET_TYPES:
        raise BadRequest(f"bucket type {value!r} is not one of {', '.join(BUCKET_TYPES)}")
    return value


def parse_name(value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest("bucket name must be a string")
    if len(value) > MAX_NAME_LENGTH:
        raise BadRequest(f"bucket name is longer than {MAX_NAME_LENGTH} characters")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise BadRequest("bucket name must not contain control characters")
    return value


class BucketChanges(JsonBody):
    """The PATCH body: any of name, type, archived; nothing else."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})
    unknown_fields = "cannot change {names}: only name, type and archived can be changed"

    name: Annotated[str, checked(parse_name), Says("bucket name must be a string"),
                    Field(json_schema_extra={"maxLength": MAX_NAME_LENGTH})] = None
    type: Annotated[str, checked(parse_type),
                    Says(f"bucket type must be one of {', '.join(BUCKET_TYPES)}",
                         missing=f"bucket type is required: one of {', '.join(BUCKET_TYPES)}"),
                    Field(json_schema_extra={"enum": list(BUCKET_TYPES)})] = None
    archived: Annotated[bool, Says("archived must be true or false")] = None

    @model_validator(mode="after")
    def _something(self) -> BucketChanges:
        if not self.model_fields_set:
            raise refusal("nothing to change: send any of name, type, archived")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)


def wants_permissions(request: web.Request) -> bool:
    """`?permissions`, `?permissions=True` select the ACL; `?permissions=false` is a mistake, not a bucket op."""
    if "permissions" not in request.query:
        return False
    if not query_flag(request, "permissions"):
        raise BadRequest("?permissions=false is not meaningful: leave the parameter out")
    return True


@routes.post("/api/v1/objects", body=gate.SMALL)
@documented(
    "Create a bucket (any authenticated user); the caller becomes its owner with FULL_CONTROL",
    {"200": json_content("The new bucket", BUCKET), "400": BAD_REQUEST, "401": UNAUTHORIZED},
    parameters=[
        {"name": "type", "in": "query", "required": True,
         "schema": {"type": "string", "enum": list(BUCKET_TYPES)}},
        {"name": "name", "in": "query", "schema": {"type": "string", "maxLength": MAX_NAME_LENGTH}},
        {"name": "public", "in": "query", "description": "true/1: grant GROUP AllUsers READ",
         "schema": {"type": "boolean"}},
    ])
async def create_bucket(request: web.Request) -> web.Response:
    caller = identity(request)
    metrics = request.app[context.METRICS]
    if caller.anonymous:
        metrics.bucket_creation_errors.labels("unauthenticated").inc()
        raise Unauthorized("authentication required to create a bucket")
    try:
        bucket_type = parse_type(request.query.get("type"))
        name = parse_name(request.query.get("name", ""))
        public = query_flag(request, "public")
    except BadRequest:
        metrics.bucket_creation_errors.labels("bad_request").inc()
        raise
    try:
        async with transaction(request.app[context.DB]) as cur:
            row = await bucket_queries.create(cur, str(uuid.uuid4()), name, bucket_type, caller.user, public)
    except Exception:
        metrics.bucket_creation_errors.labels("backend").inc()
        raise
    metrics.bucket_creations.inc()
    return web.json_response(bucket_json(row))


# An anonymous listing (every public bucket) is paged; the body keeps the Go server's shape,
# a JSON array, and a `Link: <...>; rel="next"` header names the next page.
ANONYMOUS_PAGE = 1000


def _page_token(row: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(f"{row['time_created'].isoformat()}|{row['id']}".encode()).decode()


def _after(token: str | None) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        created, _, bucket_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        return datetime.fromisoformat(created), str(uuid.UUID(bucket_id))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("after is not a page token of this listing") from None


@routes.get("/api/v1/objects")
@documented(
    "Buckets the caller can read (USER or GROUP grants) plus public ones, oldest first",
    {"200": json_content("Bucket summaries", {"type": "array", "items": BUCKET_SUMMARY}),
     "400": BAD_REQUEST},
    parameters=[
        {"name": "owner", "in": "query", "schema": {"type": "string"}, "description": "only this owner's"},
        {"name": "name", "in": "query", "schema": {"type": "string"}, "description": "only this name"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0},
         "description": "page size (anonymous callers: at most and by default 1000); a Link rel=next "
                        "header names the next page"},
        {"name": "after", "in": "query", "schema": {"type": "string"},
         "description": "page token from the Link header of the previous page"},
    ])
async def list_buckets(request: web.Request) -> web.Response:
    caller = identity(request)
    owner = query_text(request, "owner")
    name = query_text(request, "name")
    default = ANONYMOUS_PAGE if caller.anonymous else None
    limit = query_int(request, "limit", default or 0, 0, ANONYMOUS_PAGE if caller.anonymous else 10**6) or default
    after = _after(request.query.get("after"))
    async with cursor(request.app[context.DB]) as cur:
        rows = await bucket_queries.list_visible(cur, caller.user, sorted(caller.groups), owner=owner, name=name,
                                                 after=after, limit=limit + 1 if limit else None)
    headers = {}
    if limit and len(rows) > limit:
        rows = rows[:limit]
        query = {**request.query, "after": _page_token(rows[-1])}
        headers["Link"] = f'<{request.rel_url.with_query(query)}>; rel="next"'
    return web.json_response([bucket_summary(row) for row in rows], headers=headers)


@routes.get("/api/v1/objects/{id}")
@documented(
    "Show a bucket (READ); with ?permissions its grants (READ_ACP)",
    {"200": json_content("The bucket, or with ?permissions a list of grants",
                         {"oneOf": [BUCKET, {"type": "array", "items": GRANT}]}),
     "400": BAD_REQUEST, "401": UNAUTHORIZED, "403": FORBIDDEN, "404": NOT_FOUND},
    parameters=[BUCKET_ID_PARAM, PERMISSIONS_PARAM])
async def show_bucket(request: web.Request) -> web.Response:
    bucket_id = bucket_id_of(request)
    if wants_permissions(request):
        return await hand_off(request, "permissions GET")
    bucket, _ = await authorize(request.app[context.ACL], bucket_id, identity(request), "READ")
    return web.json_response(bucket_json(bucket))


@routes.patch("/api/v1/objects/{id}", body=gate.SMALL)
@documented(
    "Change name, type or archived (FULL_CONTROL). Archived buckets refuse uploads and deletions",
    {"200": json_content("The updated bucket", BUCKET), "400": BAD_REQUEST, "401": UNAUTHORIZED,
     "403": FORBIDDEN, "404": NOT_FOUND},
    parameters=[BUCKET_ID_PARAM], body=BucketChanges)
async def patch_bucket(request: web.Request) -> web.Response:
    bucket_id = bucket_id_of(request)
    body = await json_body(request)
    async with transaction(request.app[context.DB]) as cur:
        # not writing=True: an archived bucket must stay patchable, or it could never be un-archived
        await authorize(cur, bucket_id, identity(request), "FULL_CONTROL")
        changes = BucketChanges.parse(body).changes()  # after the ACL check: only its holder learns more
        row = await bucket_queries.update(cur, bucket_id, changes)
    request.app[context.ACL].invalidate(bucket_id)  # committed: this instance sees it at once
    if row is None:
        raise NotFound("bucket not found")
    return web.json_response(bucket_json(row))


@routes.delete("/api/v1/objects/{id}")
@documented(
    "Delete the bucket with all its files, grants and unfinished uploads (FULL_CONTROL); "
    "with ?permissions&grantee=... revoke grants instead (WRITE_ACP)",
    {"200": json_content("What was deleted: the bucket id, or the revoked grantee specs", DELETED),
     "400": BAD_REQUEST, "401": UNAUTHORIZED, "403": FORBIDDEN, "404": NOT_FOUND,
     "409": error("The bucket is archived; un-archive it first")},
    parameters=[BUCKET_ID_PARAM, PERMISSIONS_PARAM, GRANTEE_PARAM])
async def delete_bucket(request: web.Request) -> web.Response:
    bucket_id = bucket_id_of(request)
    if wants_permissions(request):
        return await hand_off(request, "permissions DELETE")
    pool = request.app[context.DB]
    async with cursor(pool) as cur:  # destructive: decide on fresh data, not the ACL cache
        bucket, _ = await authorize(cur, bucket_id, identity(request), "FULL_CONTROL")
    if bucket["archived"]:
        raise Conflict('the bucket is archived: un-archive it (PATCH {"archived": false}) before deleting it')
    # unfinished resumable uploads first: their S3 multipart uploads and staging objects live
    # outside the bucket's prefix, and their rows would otherwise cascade away unreleased
    await request.app[context.ENGINE].abort_bucket(bucket_id)
    store = request.app[context.STORE]
    folder = request.app[context.MAPPING].folder(bucket_id)
    await store.delete_prefix(folder)
    async with transaction(pool) as cur:
        if not await bucket_queries.delete(cur, bucket_id):  # grants go with it (ON DELETE CASCADE)
            raise NotFound("bucket not found")
    request.app[context.ACL].invalidate(bucket_id)  # committed: this instance sees it at once
    # an upload that passed its ACL check before the row went may have landed meanwhile;
    # uploads also re-check the bucket when they finish and remove what they stored
    await store.delete_prefix(folder)
    return web.json_response({"deleted": [bucket_id]})
