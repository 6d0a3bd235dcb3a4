"""The S3 multipart proxy in Arkindex's shape, over the upload engine.

The target is a file in a bucket: object_type (model_version -> model buckets, data_file ->
training-data buckets, file -> any bucket), object_id (the bucket UUID) and key. Parts are
either PUT straight to S3 through presigned URLs or proxied through us.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field

from .. import context, gate
from ..digits import decimal_int
from ..errors import BadRequest
from ..openapi import ERROR, documented
from ..storage import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, validate_key
from ..uploads import S3_CHECKSUM_ALGORITHMS, Upload
from .bodies import BucketId, JsonBody, OptionalText, Says, checked, read_body
from .common import identity, optional_media_type

routes = gate.Routes()

OBJECT_TYPES = {"model_version": "model", "data_file": "training-data", "file": None}
CHECKSUM_HEADERS = {f"x-amz-checksum-{name.lower()}": name.lower() for name in S3_CHECKSUM_ALGORITHMS}
ObjectType = Literal[tuple(OBJECT_TYPES)]


# ---------------------------------------------------------------- the JSON bodies (Arkindex's fields)
class Target(JsonBody):
    """Which bucket: object_type must fit its type (model_version: model, data_file: training-data)."""
    object_type: Annotated[ObjectType, Says(f"object_type must be one of {', '.join(OBJECT_TYPES)}")]
    object_id: BucketId


class CreateMultipartUpload(Target):
    key: Annotated[str, checked(validate_key), Says("key must be a string", missing="key is required")]
    checksum_algorithm: Annotated[Literal[S3_CHECKSUM_ALGORITHMS] | None, Says(
        f"checksum_algorithm must be null or one of {', '.join(S3_CHECKSUM_ALGORITHMS)}")] = None
    content_type: Annotated[OptionalText | None, checked(lambda value: optional_media_type(value, "content_type"))] \
        = None


class UploadRef(Target):
    """An upload of the caller's in that bucket (and, when given, of that key)."""
    upload_id: Annotated[str, Field(min_length=1), Says("upload_id is required")]
    key: str | None = None


class AbortMultipartUpload(UploadRef):
    pass


class CreateMultipartUploadPart(UploadRef):
    part_number: Annotated[int, Field(ge=1, le=MAX_PARTS),
                           Says(f"part_number must be an integer between 1 and {MAX_PARTS}")]
    md5_hash: OptionalText | None = Field(None, description="base64 Content-MD5 the part will carry")
    checksum: OptionalText | None = Field(None, description="base64 x-amz-checksum-<algorithm> the part will carry")


_EACH_PART = "each part needs an integer part_number and a string etag"


class CompletedPart(JsonBody):
    part_number: Annotated[int, Says(_EACH_PART)]
    etag: Annotated[str, Says(_EACH_PART)]
    checksum: str | None = None
    md5_hash: str | None = None


class CompleteMultipartUpload(UploadRef):
    parts: Annotated[list[CompletedPart], Field(min_length=1),
                     Says("parts must be a non-empty list of {part_number, etag}")]


async def resolve(request: web.Request, body: Target, *,
                  needed: str = "WRITE") -> tuple[dict[str, Any], Upload | None]:
    """A validated body's bucket and (for an UploadRef) upload: (bucket, upload).

    404: no such bucket, not readable, archived (writes), or an upload_id of another user,
    bucket or key; 403: readable but not writable; 400: object_type does not fit the bucket.
    """
    bucket = (await gate.admit(request, body.object_id, needed)).bucket
    bucket_type = OBJECT_TYPES[body.object_type]
    if bucket_type is not None and bucket["type"] != bucket_type:
        raise BadRequest(f"object_type {body.object_type} needs a bucket of type {bucket_type}, "
                         f"this bucket is of type {bucket['type']}")
    if not isinstance(body, UploadRef):
        return bucket, None
    # the bucket was admitted above; the upload must be the caller's in it
    upload = await gate.admit_upload(request, body.upload_id, None, bucket_id=body.object_id, key=body.key)
    return bucket, upload


_ERRORS = {"400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR, "502": ERROR, "503": ERROR}


@routes.post("/api/v1/multipart/", body=gate.SMALL)
@documented(
    "Start an S3 multipart upload of a file (Arkindex CreateMultipartUpload)",
    {"201": {"description": "upload_id, expires, part size rules"}, **_ERRORS}, body=CreateMultipartUpload)
async def create_multipart(request: web.Request) -> web.Response:
    body = await read_body(request, CreateMultipartUpload)
    bucket, _ = await resolve(request, body)
    upload = await request.app[context.ENGINE].create(
        "multipart", bucket["id"], body.key, identity(request).user, content_type=body.content_type,
        checksum_algorithm=body.checksum_algorithm)
    return web.json_response({"upload_id": upload.id, "expires": upload.expires_at.isoformat(),
                              "part_size_min": MIN_PART_SIZE, "part_size_max": MAX_PART_SIZE,
                              "max_parts": MAX_PARTS, "checksum_algorithm": upload.checksum_algorithm},
                             status=201)


@routes.post("/api/v1/multipart/part/", body=gate.SMALL)
@documented(
    "A presigned S3 UploadPart URL (Arkindex CreateMultipartUploadPart)",
    {"200": {"description": "{url}"}, **_ERRORS}, body=CreateMultipartUploadPart)
async def create_part_url(request: web.Request) -> web.Response:
    body = await read_body(request, CreateMultipartUploadPart)
    _, upload = await resolve(request, body)
    url = await request.app[context.ENGINE].presign_part(upload, body.part_number, md5=body.md5_hash,
                                                         checksum=body.checksum)
    return web.json_response({"url": url})


@routes.put(r"/api/v1/multipart/{upload_id}/parts/{part_number:\d+}", body=gate.STREAM)
@documented(
    "Upload one part through the server (Content-MD5 and x-amz-checksum-* verified)",
    {"200": {"description": "{part_number, etag, size}; ETag header"}, **_ERRORS, "413": ERROR,
     "423": ERROR},
    parameters=[{"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "part_number", "in": "path", "required": True, "schema": {"type": "integer"}}])
async def put_part(request: web.Request) -> web.Response:
    upload = await gate.admit_upload(request, request.match_info["upload_id"], "WRITE", with_parts=False)
    checksums = {name: request.headers[header] for header, name in CHECKSUM_HEADERS.items()
                 if header in request.headers}
    part = await request.app[context.ENGINE].put_part(
        upload, decimal_int(request.match_info["part_number"], "part number"), gate.body(request),
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
    upload = await gate.admit_upload(request, request.match_info["upload_id"], "READ")
    return web.json_response(request.app[context.ENGINE].status(upload))


@routes.post("/api/v1/multipart/complete/", body=gate.SMALL)
@documented(
    "Complete a multipart upload (Arkindex CompleteMultipartUpload)",
    {"201": {"description": "file info"}, **_ERRORS, "409": ERROR, "423": ERROR}, body=CompleteMultipartUpload)
async def complete_multipart(request: web.Request) -> web.Response:
    body = await read_body(request, CompleteMultipartUpload)
    _, upload = await resolve(request, body)
    info = await request.app[context.ENGINE].complete(upload, parts=[part.model_dump() for part in body.parts])
    return web.json_response(info, status=201)


@routes.post("/api/v1/multipart/abort/", body=gate.SMALL)
@documented(
    "Abort a multipart upload (Arkindex AbortMultipartUpload)", {"204": {"description": "aborted"}, **_ERRORS},
    body=AbortMultipartUpload)
async def abort_multipart(request: web.Request) -> web.Response:
    body = await read_body(request, AbortMultipartUpload)
    _, upload = await resolve(request, body)
    await request.app[context.ENGINE].abort(upload)
    return web.Response(status=204)
