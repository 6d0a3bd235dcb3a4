"""Resumable Uploads for HTTP (draft-ietf-httpbis-resumable-upload) at /api/v1/uploads/, a thin
adapter over the engine, like tus. The tus endpoint /api/v1/tus/ hands requests that speak the draft
to these same handlers (tus.or_ietf); an upload created there is located there.

Interop versions 5 (draft-03; tus-js-client 'ietf-draft-03'), 6 (draft-05; 'ietf-draft-05'), 7 and 8
(the editor's copy); a request without Upload-Draft-Interop-Version gets the editor's copy's
semantics and no 104 (drafts must not send 104 to a missing or mismatching version).

- POST /api/v1/uploads/ with Upload-Complete creates an upload. The target comes from the query
  (?bucket=<uuid>&key=<key>), or Upload-Metadata (as tus-js-client sends it), or Content-Disposition's
  filename; Content-Type is the object's type. A 104 Upload Resumption Supported interim response
  carries Location (+ Upload-Limit from interop 6 on) before any byte of the body is read.
- HEAD (or GET) offset retrieval, PATCH append (application/partial-upload from interop 6 on),
  DELETE cancellation. A mismatching offset is a 409 problem+json carrying the right Upload-Offset.
- Upload-Complete: ?1 fully received publishes the object; the answer is 201 with the file's info.
- Concurrency: a new HEAD, PATCH or DELETE takes the upload over from a request still in flight
  (the draft's recommendation); the old request is fenced off in PostgreSQL, across instances.
- Content-Digest (sha-256) is checked per request; Repr-Digest (sha-256) at creation is verified
  before the object is published.
"""
from __future__ import annotations

import base64
import functools
import re
from datetime import datetime, timezone
from typing import Any

import http_sfv
from aiohttp import HttpVersion11, web

from .. import context, gate
from ..digits import is_decimal
from ..errors import ApiError, BadRequest, PayloadTooLarge, UnsupportedMediaType
from ..openapi import ERROR, documented
from ..uploads import COMPLETED, COMPLETING, ChecksumMismatch, OffsetMismatch, Upload
from .common import Handler
from .resumable import (body_chunks, callers_upload, callers_writable_upload, complete, content_type_for,
                        has_body, max_upload_size, media_type, parse_tus_metadata, require_user, resolve_target)

routes = gate.Routes()

BASE = "/api/v1/uploads/"
INTEROP_VERSIONS = (5, 6, 7, 8)
LATEST = 8
PARTIAL_UPLOAD = "application/partial-upload"
PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"
# media types that label the transfer, not the representation being uploaded
TRANSFER_TYPES = (PARTIAL_UPLOAD, "application/offset+octet-stream")
_FILENAME = re.compile(r"""filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))""", re.I)


class UploadProblem(ApiError):
    """An RFC 9457 problem of the draft's types, still with the house's 'error' member."""
    content_type = "application/problem+json"

    def __init__(self, status: int, problem: str, title: str, *, headers: dict[str, str] | None = None,
                 **members: Any) -> None:
        super().__init__(title, status=status, headers=headers, type=PROBLEM_TYPES + problem, title=title, **members)


def _item(request: web.Request, name: str, kind: type) -> Any:
    """A structured-field Item header of the given type (bool or int); None when absent; 400 otherwise."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    item = http_sfv.Item()
    try:
        item.parse(raw.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise BadRequest(f"{name} is not a structured field value: {raw!r}") from None
    value = item.value
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise BadRequest(f"{name} must be {'a boolean (?0 or ?1)' if kind is bool else 'a non-negative integer'}")


def interop_version(request: web.Request) -> int | None:
    version = _item(request, "Upload-Draft-Interop-Version", int) \
        if "Upload-Draft-Interop-Version" in request.headers else None
    if version is not None and version not in INTEROP_VERSIONS:
        raise BadRequest(f"Upload-Draft-Interop-Version {version} is not supported; supported: "
                         f"{', '.join(map(str, INTEROP_VERSIONS))}")
    return version


def upload_limit(request: web.Request, upload: Upload | None = None) -> str:
    limits = http_sfv.Dictionary()
    limits["max-size"] = http_sfv.Item(max_upload_size(request))
    if upload is None:
        limits["max-age"] = http_sfv.Item(int(request.app[context.SETTINGS].upload_ttl))
    elif upload.state != COMPLETED:
        remaining = (upload.expires_at - datetime.now(timezone.utc)).total_seconds()
        limits["max-age"] = http_sfv.Item(max(0, int(remaining)))
    return str(limits)


def _flag(value: bool) -> str:
    return str(http_sfv.Item(value))


def ietf_endpoint(handler: Handler) -> Handler:
    """Errors of a request that did not complete the upload say Upload-Complete: ?0; an offset mismatch
    becomes the draft's problem with the right Upload-Offset; a Content-Digest mismatch is a 400."""
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except OffsetMismatch as error:
            provided = request.headers.get("Upload-Offset")
            raise UploadProblem(
                409, "mismatching-upload-offset", "offset from request does not match offset of resource",
                headers={**error.headers, "Upload-Offset": str(error.offset), "Upload-Complete": _flag(False)},
                **{"expected-offset": error.offset,
                   "provided-offset": int(provided) if is_decimal(provided) else None}) from None
        except ChecksumMismatch as error:
            raise BadRequest(f"Content-Digest does not match the request content: {error.message}",
                             headers={**error.headers, "Upload-Complete": _flag(False)}) from None
        except ApiError as error:
            error.headers = {"Upload-Complete": _flag(False), **error.headers}
            raise
    return wrapper


def _content_digest(request: web.Request) -> tuple[str, str] | None:
    """Content-Digest sha-256 as the engine's (algorithm, base64) chunk checksum; other algorithms are ignored."""
    digests = _digests(request, "Content-Digest")
    return ("sha256", base64.b64encode(digests["sha-256"]).decode()) if "sha-256" in digests else None


def _digests(request: web.Request, name: str) -> dict[str, bytes]:
    raw = request.headers.get(name)
    if raw is None:
        return {}
    parsed = http_sfv.Dictionary()
    try:
        parsed.parse(raw.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise BadRequest(f"{name} is not a structured field dictionary") from None
    result = {key: member.value for key, member in parsed.items() if isinstance(member.value, bytes)}
    if "sha-256" in result and len(result["sha-256"]) != 32:
        raise BadRequest(f"{name} sha-256 must be 32 bytes")
    return result


async def _interim(request: web.Request, version: int | None, headers: dict[str, str]) -> None:
    """A 104 Upload Resumption Supported, written ahead of the final response on the same connection
    (as aiohttp itself writes 100 Continue). Only to draft clients whose version we speak, on HTTP/1.1."""
    if version is None or request.version < HttpVersion11:
        return
    lines = ["HTTP/1.1 104 Upload Resumption Supported", f"Upload-Draft-Interop-Version: {version}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    await request.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    request.writer.output_size = 0


def _target_from_request(request: web.Request) -> tuple[str | None, str | None, str | None, str | None]:
    """(bucket, key, filename, content type) from the query, Upload-Metadata or Content-Disposition."""
    metadata = parse_tus_metadata(request.headers.get("Upload-Metadata"))
    bucket = request.query.get("bucket") or metadata.get("bucket")
    key = request.query.get("key") or metadata.get("key")
    filename = metadata.get("filename")
    disposition = request.headers.get("Content-Disposition")
    if filename is None and disposition:
        match = _FILENAME.search(disposition)
        if match:
            filename = match.group(1) if match.group(1) is not None else match.group(2)
    content_type = content_type_for(metadata.get("filetype"))
    declared = media_type(request.headers.get("Content-Type"))
    if content_type is None and declared and declared not in TRANSFER_TYPES:
        content_type = content_type_for(request.headers["Content-Type"])
    return bucket, key, filename, content_type


async def _completed(request: web.Request, upload: Upload, location: str | None = None) -> web.Response:
    """The target resource's answer once the representation is complete: 201 with the file's info."""
    try:
        info = await complete(request, upload)
    except ApiError as error:
        # the representation was fully transferred; resuming would not help (Upload-Complete: ?1)
        error.headers = {**error.headers, "Upload-Complete": _flag(True)}
        raise
    headers = {"Upload-Complete": _flag(True), "Upload-Offset": str(info["size"])}
    if location:
        headers["Location"] = location
    return web.json_response(info, status=201, headers=headers)


def _collection(request: web.Request) -> str:
    """The path the creation request was sent to (/api/v1/uploads/ or /api/v1/tus/): the new upload's
    URL is under it, as tusd does, so a client configured with one endpoint stays on it."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else BASE


def _fully_received(upload: Upload) -> bool:
    return upload.length is not None and upload.offset == upload.length


def _announced_length(request: web.Request, offset: int, complete_flag: bool, length: int | None) -> int | None:
    """Upload-Length and (with Upload-Complete: ?1) offset + Content-Length must agree."""
    if complete_flag and request.content_length is not None:
        implied = offset + request.content_length
        if length is not None and length != implied:
            raise UploadProblem(400, "inconsistent-upload-length", "inconsistent length values for upload")
        return implied
    return length


@routes.options(BASE)
async def options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Upload-Limit": upload_limit(request),
                                             "Allow": "OPTIONS, POST", "Accept-Patch": PARTIAL_UPLOAD})


@routes.post(BASE, body=gate.STREAM)
@ietf_endpoint
async def create(request: web.Request) -> web.Response:
    version = interop_version(request)
    user = require_user(request)
    complete_flag = _item(request, "Upload-Complete", bool)
    if complete_flag is None:
        raise BadRequest("a resumable upload is created with Upload-Complete: ?0 or ?1")
    if version == 5 and "Upload-Offset" in request.headers:
        raise BadRequest("an upload creation request must not carry Upload-Offset")
    length = _announced_length(request, 0, complete_flag, _item(request, "Upload-Length", int))
    if length is not None and length > max_upload_size(request):
        raise PayloadTooLarge(f"upload of {length} bytes exceeds the maximum of {max_upload_size(request)} bytes",
                              headers={"Upload-Limit": upload_limit(request)})
    bucket, key, filename, content_type = _target_from_request(request)
    bucket_id, key = await resolve_target(request, bucket, key, filename)
    representation = _digests(request, "Repr-Digest").get("sha-256")
    engine = request.app[context.ENGINE]
    upload = await engine.create("ietf", bucket_id, key, user, length=length, content_type=content_type,
                                 sha256=representation.hex() if representation else None)
    location = f"{_collection(request)}{upload.id}"
    await _interim(request, version, {"Location": location, **(
        {"Upload-Limit": upload_limit(request, upload)} if (version or LATEST) >= 6 else {})})
    try:
        if has_body(request) or complete_flag:
            upload = await engine.append(upload, 0, body_chunks(request), final=complete_flag,
                                         chunk_checksum=_content_digest(request), steal=True,
                                         max_bytes=max_upload_size(request) if length is None else None,
                                         body_length=request.content_length)
        if complete_flag and _fully_received(upload):
            return await _completed(request, upload, location)
    except ApiError as error:
        error.headers = {"Location": location, **error.headers}  # the upload exists: it can be resumed
        raise
    return web.Response(status=201, headers={
        "Location": location, "Upload-Complete": _flag(False), "Upload-Offset": str(upload.offset),
        "Upload-Limit": upload_limit(request, upload)})


def _reject_upload_fields(request: web.Request, version: int | None, what: str) -> None:
    """Interop 5 forbids upload fields on requests that carry no content."""
    if version == 5 and ("Upload-Offset" in request.headers or "Upload-Complete" in request.headers):
        raise BadRequest(f"{what} must not carry Upload-Offset or Upload-Complete")


@routes.get(BASE + "{upload_id}")  # aiohttp adds HEAD: offset retrieval by HEAD (recommended) or GET
@ietf_endpoint
async def offset_retrieval(request: web.Request) -> web.Response:
    version = interop_version(request)
    _reject_upload_fields(request, version, "offset retrieval")
    upload = await callers_upload(request)
    engine = request.app[context.ENGINE]
    if upload.state != COMPLETED:
        upload = await engine.take_over(upload)
    headers = {"Upload-Offset": str(upload.offset), "Upload-Complete": _flag(upload.state == COMPLETED),
               "Upload-Limit": upload_limit(request, upload), "Cache-Control": "no-store"}
    if upload.length is not None:
        headers["Upload-Length"] = str(upload.length)
    return web.Response(status=204, headers=headers)


@routes.patch(BASE + "{upload_id}", body=gate.STREAM)
@ietf_endpoint
async def append(request: web.Request) -> web.Response:
    version = interop_version(request)
    if (version or LATEST) >= 6 and media_type(request.headers.get("Content-Type")) != PARTIAL_UPLOAD:
        raise UnsupportedMediaType(f"appending needs Content-Type: {PARTIAL_UPLOAD}")
    offset = _item(request, "Upload-Offset", int)
    if offset is None:
        raise BadRequest("Upload-Offset is required")
    complete_flag = _item(request, "Upload-Complete", bool)
    if complete_flag is None:
        raise BadRequest("Upload-Complete is required")
    length = _announced_length(request, offset, complete_flag, _item(request, "Upload-Length", int))
    upload = await callers_writable_upload(request)
    if upload.state == COMPLETED:
        if complete_flag and offset == upload.offset and not has_body(request):
            return await _completed(request, upload)  # the final answer was lost: replay it
        raise UploadProblem(400, "completed-upload", "upload is already completed",
                            headers={"Upload-Offset": str(upload.offset)})
    if upload.state == COMPLETING and complete_flag and offset == upload.offset and not has_body(request) \
            and _fully_received(upload):
        # a completion that was cut off (its instance died): finishing it is the client's retry
        return await _completed(request, upload)
    if length is not None and upload.length is not None and length != upload.length:
        raise UploadProblem(400, "inconsistent-upload-length", "inconsistent length values for upload")
    engine = request.app[context.ENGINE]
    upload = await engine.take_over(upload)  # an older request still in flight is cut off
    limit = max_upload_size(request) - offset if length is None and upload.length is None else None
    upload = await engine.append(upload, offset, body_chunks(request), length=length, final=complete_flag,
                                 chunk_checksum=_content_digest(request), steal=True, max_bytes=limit,
                                 body_length=request.content_length)
    if complete_flag and _fully_received(upload):
        return await _completed(request, upload)
    return web.Response(status=201 if version == 5 else 204, headers={
        "Upload-Complete": _flag(False), "Upload-Offset": str(upload.offset),
        "Upload-Limit": upload_limit(request, upload)})


@routes.delete(BASE + "{upload_id}")
@ietf_endpoint
async def cancel(request: web.Request) -> web.Response:
    version = interop_version(request)
    _reject_upload_fields(request, version, "cancellation")
    upload = await callers_upload(request)
    await request.app[context.ENGINE].abort(upload)
    return web.Response(status=204)


_UPLOAD_ID = [{"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}]
_ERRORS = {"400": ERROR, "401": ERROR, "404": ERROR, "410": ERROR}
# each operation is declared on its handler; the OpenAPI document reads them from the router
documented("Upload-Limit of resumable uploads", {"204": {"description": "limits"}})(options)
documented("Create a resumable upload (Upload-Complete; target ?bucket=&key= or Upload-Metadata or "
           "Content-Disposition); 104 Upload Resumption Supported with Location",
           {"201": {"description": "upload resource (Upload-Complete: ?0) or the file's info (?1)"}, **_ERRORS,
            "403": ERROR, "413": ERROR},
           parameters=[{"name": "bucket", "in": "query", "schema": {"type": "string", "format": "uuid"}},
                       {"name": "key", "in": "query", "schema": {"type": "string"}}])(create)
documented("Offset retrieval (HEAD or GET): Upload-Offset, Upload-Complete, Upload-Length, Upload-Limit",
           {"204": {"description": "upload state"}, **_ERRORS}, parameters=_UPLOAD_ID)(offset_retrieval)
documented("Offset retrieval", {"204": {"description": "upload state"}, **_ERRORS},
           parameters=_UPLOAD_ID, method="head")(offset_retrieval)
documented("Append (application/partial-upload) at Upload-Offset; Upload-Complete: ?1 publishes",
           {"201": {"description": "file info when complete"},
            "204": {"description": "appended"}, **_ERRORS, "403": ERROR, "409": ERROR,
            "413": ERROR, "415": ERROR}, parameters=_UPLOAD_ID)(append)
documented("Cancel the upload", {"204": {"description": "cancelled"}, **_ERRORS},
           parameters=_UPLOAD_ID)(cancel)
