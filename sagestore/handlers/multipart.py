"""The S3 multipart proxy in Arkindex's shape (seed 000), over the upload engine.

The target is a file in a bucket: object_type (model_version -> model buckets, data_file ->
training-data buckets, file -> any bucket), object_id (the bucket UUID) and key. Parts are
either PUT straight to S3 through presigned URLs or proxied through us.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import context
from ..acl import authorize
from ..errors import BadRequest, Unauthorized
from ..openapi import ERROR, documented
from ..storage import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, parse_bucket_id, validate_key
from ..uploads import S3_CHECKSUM_ALGORITHMS, Upload
from .common import decimal_int, identity, json_body, optional_media_type

routes = web.RouteTableDef()

OBJECT_TYPES = {"model_version": "model", "data_file": "training-data", "file": None}
CHECKSUM_HEADERS = {f"x-amz-checksum-{name.lower()}": name.lower() for name in S3_CHECKSUM_ALGORITHMS}


async def resolve(request: web.Request, body: dict[str, Any], *, needed: str = "WRITE",
                  with_upload: bool = True) -> tuple[dict[str, Any], Upload | None]:
    """The shared validator: {object_type, object_id[, upload_id, key]} -> (bucket, upload).

    404: no such bucket, not readable, archived (writes), or an upload_id of another user,
    bucket or key; 403: readable but not writable; 400: object_type does not fit the bucket.
    """
    caller = identity(request)
    if caller.anonymous:
        raise Unauthorized("authentication required")
    object_type = body.get("object_type")
    if object_type not in OBJECT_TYPES:
        raise BadRequest(f"object_type must be one of {', '.join(OBJECT_TYPES)}")
    bucket_id = parse_bucket_id(body.get("object_id"))
    bucket, _ = await authorize(request.app[context.ACL], bucket_id, caller, needed, writing=needed == "WRITE")
    bucket_type = OBJECT_TYPES[object_type]
    if bucket_type is not None and bucket["type"] != bucket_type:
        raise BadRequest(f"object_type {object_type} needs a bucket of type {bucket_type}, "
                         f"this bucket is of type {bucket['type']}")
    if not with_upload:
        return bucket, None
    upload_id = body.get("upload_id")
    if not isinstance(upload_id, str) or not upload_id:
        raise BadRequest("upload_id is required")
    key = body.get("key")
    if key is not None and not isinstance(key, str):
        raise BadRequest("key must be a string")
    upload = await request.app[context.ENGINE].get(upload_id, caller.user, bucket_id=bucket_id, key=key)
    return bucket, upload


async def resolve_by_id(request: web.Request, needed: str, with_parts: bool = True) -> Upload:
    """For routes naming the upload in the path: the caller's upload, with the ACL of its bucket."""
    caller = identity(request)
    engine = request.app[context.ENGINE]
    if caller.anonymous:
        raise Unauthorized("authentication required")
    upload = await engine.get(request.match_info["upload_id"], caller.user, with_parts=with_parts)
    if upload.bucket_id is not None:
        await authorize(request.app[context.ACL], upload.bucket_id, caller, needed, writing=needed == "WRITE")
    return upload


def _int_field(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer")
    return value


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value or None


_TARGET = {"object_type": {"type": "string", "enum": list(OBJECT_TYPES)},
           "object_id": {"type": "string", "format": "uuid"}}

_SHARED = {**_TARGET, "upload_id": {"type": "string"}}


def _json(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


_ERRORS = {"400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR, "502": ERROR, "503": ERROR}


@routes.post("/api/v1/multipart/")
@documented(
    "Start an S3 multipart upload of a file (Arkindex CreateMultipartUpload)",
    {"201": {"description": "upload_id, expires, part size rules"}, **_ERRORS},
    requestBody=_json({**_TARGET, "key": {"type": "string"},
                       "checksum_algorithm": {"type": "string", "nullable": True,
                                              "enum": list(S3_CHECKSUM_ALGORITHMS)}},
                      ["object_type", "object_id", "key"]))
async def create_multipart(request: web.Request) -> web.Response:
    body = await json_body(request)
    bucket, _ = await resolve(request, body, with_upload=False)
    key = body.get("key")
    if not isinstance(key, str):
        raise BadRequest("key is required")
    validate_key(key)
    algorithm = body.get("checksum_algorithm")
    if algorithm is not None and algorithm not in S3_CHECKSUM_ALGORITHMS:
        raise BadRequest(f"checksum_algorithm must be null or one of {', '.join(S3_CHECKSUM_ALGORITHMS)}")
    content_type = optional_media_type(_optional_str(body, "content_type"), "content_type")
    upload = await request.app[context.ENGINE].create(
        "multipart", bucket["id"], key, identity(request).user, content_type=content_type,
        checksum_algorithm=algorithm)
    return web.json_response({"upload_id": upload.id, "expires": upload.expires_at.isoformat(),
                              "part_size_min": MIN_PART_SIZE, "part_size_max": MAX_PART_SIZE,
                              "max_parts": MAX_PARTS, "checksum_algorithm": upload.checksum_algorithm},
                             status=201)


@routes.post("/api/v1/multipart/part/")
@documented(
    "A presigned S3 UploadPart URL (Arkindex CreateMultipartUploadPart)",
    {"200": {"description": "{url}"}, **_ERRORS},
    requestBody=_json({**_SHARED, "part_number": {"type": "integer"}, "checksum": {"type": "string"},
                       "md5_hash": {"type": "string"}}, ["object_type", "object_id", "upload_id",
                                                          "part_number"]))
async def create_part_url(request: web.Request) -> web.Response:
    body = await json_body(request)
    _, upload = await resolve(request, body)
    url = await request.app[context.ENGINE].presign_part(
        upload, _int_field(body, "part_number"), md5=_optional_str(body, "md5_hash"),
        checksum=_optional_str(body, "checksum"))
    return web.json_response({"url": url})


@routes.put(r"/api/v1/multipart/{upload_id}/parts/{part_number:\d+}")
@documented(
    "Upload one part through the server (Content-MD5 and x-amz-checksum-* verified)",
    {"200": {"description": "{part_number, etag, size}; ETag header"}, **_ERRORS, "413": ERROR,
     "423": ERROR},
    parameters=[{"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "part_number", "in": "path", "required": True, "schema": {"type": "integer"}}])
async def put_part(request: web.Request) -> web.Response:
    upload = await resolve_by_id(request, "WRITE", with_parts=False)
    checksums = {name: request.headers[header] for header, name in CHECKSUM_HEADERS.items()
                 if header in request.headers}
    part = await request.app[context.ENGINE].put_part(
        upload, decimal_int(request.match_info["part_number"], "part number"), request.content.iter_any(),
        size_hint=request.content_length, md5=request.headers.get("Content-MD5"), checksums=checksums)
    headers = {"ETag": part.etag}
    if part.checksum and upload.checksum_algorithm:
        headers[f"x-amz-checksum-{upload.checksum_algorithm.lower()}"] = part.checksum
    return web.json_response(part.as_json(), headers=headers)


@routes.get("/api/v1/multipart/{upload_id}/")
@documented(
    "State of an upload and its parts (any protocol)", {"200": {"description": "status"}, **_ERRORS,
                                                        "410": ERROR},
    parameters=[{"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}])
async def get_upload(request: web.Request) -> web.Response:
    upload = await resolve_by_id(request, "READ")
    return web.json_response(request.app[context.ENGINE].status(upload))


@routes.post("/api/v1/multipart/complete/")
@documented(
    "Complete a multipart upload (Arkindex CompleteMultipartUpload)",
    {"201": {"description": "file info"}, **_ERRORS, "409": ERROR, "423": ERROR},
    requestBody=_json({**_SHARED, "parts": {"type": "array", "items": {"type": "object"}}},
                      ["object_type", "object_id", "upload_id", "parts"]))
async def complete_multipart(request: web.Request) -> web.Response:
    body = await json_body(request)
    _, upload = await resolve(request, body)
    parts = body.get("parts")
    if not isinstance(parts, list) or not parts:
        raise BadRequest("parts must be a non-empty list of {part_number, etag}")
    info = await request.app[context.ENGINE].complete(upload, parts=parts)
    return web.json_response(info, status=201)


@routes.post("/api/v1/multipart/abort/")
@documented(
    "Abort a multipart upload (Arkindex AbortMultipartUpload)", {"204": {"description": "aborted"}, **_ERRORS},
    requestBody=_json(_SHARED, ["object_type", "object_id", "upload_id"]))
async def abort_multipart(request: web.Request) -> web.Response:
    body = await json_body(request)
    _, upload = await resolve(request, body)
    await request.app[context.ENGINE].abort(upload)
    return web.Response(status=204)
