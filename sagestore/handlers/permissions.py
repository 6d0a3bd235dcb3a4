"""A bucket's ACL: `?permissions` on /api/v1/objects/{id} (GET, PUT, DELETE).

GET and DELETE share their route with the bucket itself: handlers.buckets hands those requests
to `show` and `revoke` ("permissions GET", "permissions DELETE", composed in app.py); PUT on a
bucket exists only for permissions, so its route lives here.
"""
from __future__ import annotations

import re
from typing import Annotated, Callable

from aiohttp import web
from pydantic import ConfigDict, Field

from .. import context, gate
from ..acl import GRANTEE_TYPES, PERMISSIONS, Grant, authorize, parse_grantee
from ..acl.model import can_grant, can_revoke, check_grant_change
from ..db import grants as grant_queries
from ..db import cursor, transaction
from ..errors import BadRequest, Forbidden
from ..openapi import documented
from .bodies import JsonBody, Says, checked
from .common import bucket_id_of, identity, json_body, query_flag
from .schemas import (BAD_REQUEST, BUCKET_ID_PARAM, FORBIDDEN, GRANT, MAX_GRANTEE_LENGTH, NOT_FOUND,
                      PERMISSIONS_PARAM, UNAUTHORIZED, json_content)

routes = gate.Routes()


def _one_of(choices: tuple[str, ...], name: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value.upper() not in choices:
            raise BadRequest(f"{name} must be one of {', '.join(choices)}")
        return value.upper()
    return check


def _grantee(grantee: str) -> str:
    if not grantee:
        raise BadRequest("grantee must be a non-empty string")
    if len(grantee) > MAX_GRANTEE_LENGTH:
        raise BadRequest(f"grantee is longer than {MAX_GRANTEE_LENGTH} characters")
    # ':' separates TYPE:NAME:PERM in ?grantee=, so a name with ':' could never be revoked
    if ":" in grantee or re.search(r"[\x00-\x1f\x7f]", grantee) or grantee != grantee.strip():
        raise BadRequest("grantee must not contain ':', control characters or surrounding spaces")
    return grantee


class NewGrant(JsonBody):
    """The PUT ?permissions body; types and permissions in any case."""
    model_config = ConfigDict(extra="forbid")
    missing_fields = "missing field(s): {names}"

    granteeType: Annotated[str, checked(_one_of(GRANTEE_TYPES, "granteeType")),
                           Says(f"granteeType must be one of {', '.join(GRANTEE_TYPES)}"),
                           Field(json_schema_extra={"enum": list(GRANTEE_TYPES)})]
    grantee: Annotated[str, checked(_grantee), Says("grantee must be a non-empty string"),
                       Field(description="user name, group name, or AllUsers (GROUP) for the public",
                             json_schema_extra={"maxLength": MAX_GRANTEE_LENGTH})]
    permission: Annotated[str, checked(_one_of(PERMISSIONS, "permission")),
                          Says(f"permission must be one of {', '.join(PERMISSIONS)}"),
                          Field(json_schema_extra={"enum": list(PERMISSIONS)})]

    def grant(self) -> Grant:
        return Grant(self.granteeType, self.grantee, self.permission)


def grantee_spec(grantee_type: str, grantee: str, permission: str | None) -> str:
    return f"{grantee_type}:{grantee}" + (f":{permission}" if permission else "")


async def show(request: web.Request) -> web.Response:
    bucket_id = bucket_id_of(request)
    async with cursor(request.app[context.DB]) as cur:
        await authorize(cur, bucket_id, identity(request), "READ_ACP")
        grants = await grant_queries.list_for_bucket(cur, bucket_id)
    return web.json_response([grant.as_json() for grant in grants])


@routes.put("/api/v1/objects/{id}", body=gate.SMALL)
@documented(
    "Grant a permission (?permissions, WRITE_ACP). The owner's grant is immutable, GROUP AllUsers gets READ "
    "only, and nobody grants a permission they do not hold (FULL_CONTROL holds all)",
    {"200": json_content("The grant, echoed", GRANT), "400": BAD_REQUEST, "401": UNAUTHORIZED,
     "403": FORBIDDEN, "404": NOT_FOUND},
    parameters=[BUCKET_ID_PARAM, {**PERMISSIONS_PARAM, "required": True}],
    body=NewGrant)
async def grant(request: web.Request) -> web.Response:
    bucket_id = bucket_id_of(request)
    if "permissions" not in request.query:
        raise BadRequest("PUT on a bucket needs ?permissions; to upload a file, PUT /api/v1/objects/{id}/{key}")
    if not query_flag(request, "permissions"):
        raise BadRequest("?permissions=false is not meaningful: leave the value out")
    body = await json_body(request)  # read before taking a database connection: clients may be slow
    async with transaction(request.app[context.DB]) as cur:
        bucket, held = await authorize(cur, bucket_id, identity(request), "WRITE_ACP")
        new_grant = NewGrant.parse(body).grant()  # after the ACL check, as a bucket PATCH
        check_grant_change(bucket["owner"], new_grant.grantee_type, new_grant.grantee, new_grant.permission)
        if not can_grant(held, new_grant.permission):
            raise Forbidden(f"you cannot grant {new_grant.permission}: you do not hold it yourself")
        await grant_queries.add(cur, bucket_id, new_grant)  # granting twice is not an error
    request.app[context.ACL].invalidate(bucket_id)  # committed: this instance sees it at once
    return web.json_response(new_grant.as_json())


async def revoke(request: web.Request) -> web.Response:
    """?grantee=TYPE:NAME[:PERM] (repeatable); answers the specs that removed something."""
    bucket_id = bucket_id_of(request)
    specs = request.query.getall("grantee", [])
    if not specs:
        raise BadRequest("query parameter 'grantee' is required: TYPE:NAME or TYPE:NAME:PERMISSION")
    targets = [parse_grantee(spec) for spec in specs]
    deleted: list[str] = []
    async with transaction(request.app[context.DB]) as cur:
        bucket, held = await authorize(cur, bucket_id, identity(request), "WRITE_ACP")
        for grantee_type, grantee, permission in targets:
            check_grant_change(bucket["owner"], grantee_type, grantee, None)
            existing = await grant_queries.list_for_grantee(cur, bucket_id, grantee_type, grantee)
            matched = [g for g in existing if permission is None or g.permission == permission]
            for match in matched:
                if not can_revoke(held, match.permission):
                    raise Forbidden(f"you cannot revoke {match.permission}: you do not hold it yourself")
            if matched:
                await grant_queries.remove(cur, bucket_id, grantee_type, grantee, permission)
                deleted.append(grantee_spec(grantee_type, grantee, permission))
    request.app[context.ACL].invalidate(bucket_id)  # committed: this instance sees it at once
    return web.json_response({"deleted": deleted})
