"""tus 1.0.0 at /api/v1/tus/ with creation, creation-with-upload, creation-defer-length, expiration,
checksum, termination, concatenation and concatenation-unfinished: a thin adapter over the engine.

The target of an upload comes from Upload-Metadata: `bucket` (UUID), `key` or `filename`, and
`filetype` (the Content-Type). Partial uploads (Upload-Concat: partial) have no target; the final
upload names it. A new request to an upload takes it over from one still in flight (see
UploadEngine.take_over): the client gave that one up, and the next offset it is told must hold.

The IETF draft is served here too, as tusd does (see `or_ietf`): a request that carries the draft's
headers, or names none and reaches an IETF upload of the caller, goes to the IETF adapter's handler
for its method (resumable.IETF_ON_TUS, composed in app.py).
"""
from __future__ import annotations

import functools
import re
import uuid
from typing import Callable
from urllib.parse import urlsplit

from aiohttp import web

from .. import context, gate
from ..errors import (ApiError, BadRequest, Forbidden, Gone, Locked, NotFound, PreconditionFailed,
                      UnsupportedMediaType)
from ..openapi import ERROR, documented
from ..trailers import can_read_trailers, request_trailers
from ..uploads import COMPLETED, COMPLETING, OPEN, Upload
from ..uploads.checksums import decode_b64
from .common import Handler, http_date, identity
from .resumable import (IETF_ON_TUS, body_chunks, callers_upload, callers_writable_upload, check_write, complete,
                        content_type_for, has_body, max_upload_size, media_type, non_negative_int,
                        parse_tus_metadata, require_user, resolve_target)

routes = gate.Routes()

BASE = "/api/v1/tus/"
TUS_VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "creation-defer-length", "expiration", "checksum",
              "checksum-trailer", "termination", "concatenation", "concatenation-unfinished")
CHECKSUM_ALGORITHMS = ("sha1", "md5", "sha256", "crc32", "crc32c")
OFFSET_STREAM = "application/offset+octet-stream"
_UPLOAD_PATH = re.compile(r"^/api/v1/tus/([0-9a-fA-F-]{36})/?$")


def tus_endpoint(handler: Handler) -> Handler:
    """412 without Tus-Resumable: 1.0.0; Tus-Resumable on every answer, errors included, and the
    current Upload-Offset on every 409 (a courtesy the spec does not demand)."""
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            if request.headers.get("Tus-Resumable", "").strip() != TUS_VERSION:
                raise PreconditionFailed(f"Tus-Resumable must be {TUS_VERSION}", headers={"Tus-Version": TUS_VERSION})
            response = await handler(request)
        except ApiError as error:
            error.headers = {**error.headers, "Tus-Resumable": TUS_VERSION}
            offset = error.extra.get("offset")
            if error.status == 409 and isinstance(offset, int):
                error.headers["Upload-Offset"] = str(offset)
            raise
        response.headers["Tus-Resumable"] = TUS_VERSION
        return response
    return wrapper


def _concat(upload: Upload) -> str | None:
    return upload.metadata.get("upload_concat")


def _is_final(upload: Upload) -> bool:
    return bool(upload.metadata.get("concat_sources"))


def _expires(upload: Upload) -> dict[str, str]:
    return {"Upload-Expires": http_date(upload.expires_at)} if upload.state != COMPLETED else {}


def _checksum(header: str | None) -> tuple[str, str] | None:
    """Upload-Checksum: '<algorithm> <base64>'; 400 for an unsupported algorithm or a malformed value."""
    if header is None:
        return None
    pieces = header.strip().split(" ")
    if len(pieces) != 2:
        raise BadRequest("Upload-Checksum must be '<algorithm> <base64 digest>'")
    algorithm, value = pieces[0].lower(), pieces[1]
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise BadRequest(f"unsupported checksum algorithm {pieces[0]!r}; supported: {', '.join(CHECKSUM_ALGORITHMS)}")
    decode_b64(value, algorithm)
    return algorithm, value


def _chunk_checksum(request: web.Request) -> tuple[str, str] | Callable[[], tuple[str, str]] | None:
    """The body's Upload-Checksum: from the header, or (checksum-trailer) a callable that reads it
    from the trailer section once the chunked body has been read. Announced as a trailer but
    missing or malformed there: 400, and the body is not kept."""
    announced = {name.strip().lower() for name in request.headers.get("Trailer", "").split(",")}
    if "upload-checksum" not in announced:
        return _checksum(request.headers.get("Upload-Checksum"))
    if "Upload-Checksum" in request.headers:
        raise BadRequest("send Upload-Checksum as a header or as a trailer, not both")
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        raise BadRequest("an Upload-Checksum trailer needs Transfer-Encoding: chunked")
    if not can_read_trailers(request):
        raise BadRequest("this server's connection cannot read request trailers; send Upload-Checksum as a header")

    def from_trailer() -> tuple[str, str]:
        trailers = request_trailers(request)
        checksum = _checksum(trailers.get("Upload-Checksum") if trailers else None)
        if checksum is None:
            raise BadRequest("the Upload-Checksum trailer announced in the Trailer header did not arrive; "
                             "nothing was kept")
        return checksum
    return from_trailer


def _partial_ids(header: str) -> list[str]:
    """The upload ids in 'final;<url> <url> ...' (absolute or relative URLs of this endpoint)."""
    urls = header.split(";", 1)[1].split() if ";" in header else []
    if not urls:
        raise BadRequest("Upload-Concat: final needs a space-separated list of partial upload URLs")
    ids = []
    for url in urls:
        match = _UPLOAD_PATH.match(urlsplit(url).path)
        if match is None:
            raise BadRequest(f"{url!r} is not an upload URL of this server")
        ids.append(str(uuid.UUID(match.group(1))))
    if len(set(ids)) != len(ids):  # one partial listed n times would make an n-times larger object
        raise BadRequest("Upload-Concat: final lists the same partial upload more than once")
    return ids


async def _append(request: web.Request, upload: Upload, offset: int, *, fresh: bool = False) -> Upload:
    """PATCH semantics (also creation-with-upload): append the body, then finish what is complete."""
    if media_type(request.headers.get("Content-Type")) != OFFSET_STREAM:
        raise UnsupportedMediaType(f"the body must be sent as Content-Type: {OFFSET_STREAM}")
    length = non_negative_int(request.headers.get("Upload-Length"), "Upload-Length")
    checksum = _chunk_checksum(request)
    engine = request.app[context.ENGINE]
    if upload.state == COMPLETED and offset == upload.offset and not has_body(request):
        return upload  # a retry of the last PATCH whose answer was lost
    if upload.state == OPEN and not fresh:
        upload = await engine.take_over(upload)  # an older request still in flight is cut off
    max_bytes = max_upload_size(request) - offset if upload.length is None and length is None else None
    upload = await engine.append(upload, offset, body_chunks(request), length=length, chunk_checksum=checksum,
                                 max_bytes=max_bytes, steal=True, body_length=request.content_length)
    return await _finish_if_received(request, upload)


async def _finish_if_received(request: web.Request, upload: Upload) -> Upload:
    """Once every byte is in: publish, or for a partial upload keep it staged and assemble every
    final upload that was only waiting for it (concatenation-unfinished). An upload left
    `completing` by an instance that died while publishing it is finished the same way (a tus
    client that lost the last PATCH's answer asks with HEAD, sees the full offset, and is done);
    while a live request is still completing it, it is answered as it is."""
    if upload.state not in (OPEN, COMPLETING) or upload.length is None or upload.offset != upload.length \
            or _is_final(upload):
        return upload
    engine = request.app[context.ENGINE]
    try:
        await complete(request, upload)
    except Locked:
        if upload.state != COMPLETING:
            raise
        return upload
    if _concat(upload) == "partial":
        await engine.assemble_finals_waiting_for(upload, lambda bucket_id: check_write(request, bucket_id))
    return await engine.get(upload.id, None, with_parts=False)


async def _assemble(request: web.Request, final: Upload) -> None:
    """Assemble a final upload once all its partial uploads are finished. Conflict means a partial
    is unfinished (or another request is assembling it): the final stays as it is."""
    await check_write(request, final.bucket_id)
    await request.app[context.ENGINE].assemble_final(final)


def _location(upload: Upload) -> str:
    return f"{BASE}{upload.id}"


# ------------------------------------------------------------------------- the IETF draft on this endpoint
def request_protocol(request: web.Request) -> str | None:
    """The protocol a request names: 'ietf' with Upload-Draft-Interop-Version (whatever else it
    carries), or with Upload-Complete and no Tus-Resumable; 'tus' with Tus-Resumable; None for neither."""
    headers = request.headers
    if "Upload-Draft-Interop-Version" in headers:
        return "ietf"
    if "Tus-Resumable" in headers:
        return "tus"
    return "ietf" if "Upload-Complete" in headers else None


async def _own_upload_protocol(request: web.Request) -> str | None:
    """The protocol of the caller's own upload named in the path; None when it is missing, expired or
    another user's (those keep tus's answer, 412, whoever asks: nothing is told about them)."""
    if identity(request).anonymous:
        return None
    try:
        upload = await gate.admit_upload(request, request.match_info["upload_id"], None, with_parts=False)
    except (NotFound, Gone):
        return None
    return upload.protocol


def or_ietf(method: str) -> Callable[[Handler], Handler]:
    """Serve a request by the IETF adapter's handler for `method` when it speaks the draft
    (request_protocol), or when it names no protocol and its upload is an IETF upload (a final-RFC
    client's HEAD and DELETE carry no version header); every other request, tus and unmarked ones
    alike, by the tus handler."""
    def decorate(tus_handler: Handler) -> Handler:
        @functools.wraps(tus_handler)
        async def dispatch(request: web.Request) -> web.StreamResponse:
            protocol = request_protocol(request)
            if protocol is None and "upload_id" in request.match_info:
                protocol = await _own_upload_protocol(request)
            if protocol == "ietf":
                return await request.app[IETF_ON_TUS][method](request)
            return await tus_handler(request)
        return dispatch
    return decorate


# ---------------------------------------------------------------------------------------------- routes
def _options_response(request: web.Request) -> web.Response:
    extensions = [name for name in EXTENSIONS if name != "checksum-trailer" or can_read_trailers(request)]
    return web.Response(status=204, headers={
        "Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION, "Tus-Extension": ",".join(extensions),
        "Tus-Max-Size": str(max_upload_size(request)), "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS)})


@routes.options(BASE)
@or_ietf("OPTIONS")
async def options_collection(request: web.Request) -> web.Response:
    return _options_response(request)


@routes.options(BASE + "{upload_id}")
async def options_upload(request: web.Request) -> web.Response:
    return _options_response(request)


@routes.post(BASE, body=gate.STREAM)
@or_ietf("POST")
@tus_endpoint
async def create(request: web.Request) -> web.Response:
    user = require_user(request)
    engine = request.app[context.ENGINE]
    raw_metadata = request.headers.get("Upload-Metadata")
    metadata = parse_tus_metadata(raw_metadata)
    concat = request.headers.get("Upload-Concat")
    kind = None if concat is None else ("final" if concat.strip().startswith("final;") else concat.strip())
    if kind not in (None, "partial", "final"):
        raise BadRequest("Upload-Concat must be 'partial' or 'final;<partial upload URLs>'")
    length = non_negative_int(request.headers.get("Upload-Length"), "Upload-Length")
    defer = request.headers.get("Upload-Defer-Length")
    if defer is not None and defer.strip() != "1":
        raise BadRequest("Upload-Defer-Length must be 1")
    stored = {"tus_metadata": raw_metadata} if raw_metadata else {}
    content_type = content_type_for(metadata.get("filetype"))

    if kind == "final":
        if length is not None or defer is not None:
            raise BadRequest("a final upload takes its length from its partial uploads: no Upload-Length")
        partials = [await engine.get(partial_id, user, with_parts=False) for partial_id in _partial_ids(concat)]
        for partial in partials:
            if _concat(partial) != "partial":
                raise BadRequest(f"upload {partial.id} is not a partial upload (Upload-Concat: partial)")
        bucket_id, key = await resolve_target(request, metadata.get("bucket"), metadata.get("key"),
                                              metadata.get("filename"))
        lengths = [partial.length for partial in partials]
        total = sum(lengths) if None not in lengths else None
        final = await engine.create("tus", bucket_id, key, user, length=total, content_type=content_type,
                                    metadata={**stored, "upload_concat": concat.strip()},
                                    concat_sources=[partial.id for partial in partials])
        await _assemble(request, final)
        final = await engine.get(final.id, None, with_parts=False)
        return web.Response(status=201, headers={"Location": _location(final), **_expires(final)})

    if (length is None) == (defer is None):
        raise BadRequest("send exactly one of Upload-Length and Upload-Defer-Length: 1")
    if kind == "partial":
        upload = await engine.create("tus", None, None, user, length=length, content_type=content_type,
                                     metadata={**stored, "upload_concat": "partial"})
        await gate.admit_owned(request, upload, "WRITE")
    else:
        bucket_id, key = await resolve_target(request, metadata.get("bucket"), metadata.get("key"),
                                              metadata.get("filename"))
        upload = await engine.create("tus", bucket_id, key, user, length=length, content_type=content_type,
                                     metadata=stored)
    headers = {"Location": _location(upload)}
    try:
        if has_body(request):
            upload = await _append(request, upload, 0, fresh=True)
        else:
            upload = await _finish_if_received(request, upload)  # Upload-Length: 0 is complete at once
    except ApiError as error:
        error.headers = {**error.headers, **headers}  # the upload exists: the client may resume it
        raise
    return web.Response(status=201, headers={**headers, "Upload-Offset": str(upload.offset), **_expires(upload)})


@routes.head(BASE + "{upload_id}")
@or_ietf("HEAD")
@tus_endpoint
async def head(request: web.Request) -> web.Response:
    upload = await callers_upload(request)
    engine = request.app[context.ENGINE]
    if _is_final(upload):
        if upload.state == OPEN:
            await _assemble(request, upload)
            upload = await engine.get(upload.id, None, with_parts=False)
    elif upload.state == OPEN:
        upload = await _finish_if_received(request, await engine.take_over(upload))
    elif upload.state == COMPLETING:  # its completion was cut off by its instance's death, or runs now
        upload = await _finish_if_received(request, upload)
    headers = {"Cache-Control": "no-store", **_expires(upload)}
    if not _is_final(upload) or upload.state == COMPLETED:
        headers["Upload-Offset"] = str(upload.offset)
    if upload.length is not None:
        headers["Upload-Length"] = str(upload.length)
    else:
        headers["Upload-Defer-Length"] = "1"
    if upload.metadata.get("tus_metadata"):
        headers["Upload-Metadata"] = upload.metadata["tus_metadata"]
    if _concat(upload):
        headers["Upload-Concat"] = _concat(upload)
    return web.Response(status=204, headers=headers)


@routes.patch(BASE + "{upload_id}", body=gate.STREAM)
@or_ietf("PATCH")
@tus_endpoint
async def patch(request: web.Request) -> web.Response:
    offset = non_negative_int(request.headers.get("Upload-Offset"), "Upload-Offset")
    if offset is None:
        raise BadRequest("Upload-Offset is required")
    upload = await callers_writable_upload(request)
    if _is_final(upload):
        raise Forbidden("a final upload is assembled from its partial uploads; it cannot be patched")
    upload = await _append(request, upload, offset)
    return web.Response(status=204, headers={"Upload-Offset": str(upload.offset), **_expires(upload)})


@routes.delete(BASE + "{upload_id}")
@or_ietf("DELETE")
@tus_endpoint
async def terminate(request: web.Request) -> web.Response:
    upload = await callers_upload(request)
    await request.app[context.ENGINE].abort(upload)
    return web.Response(status=204)


_OVERRIDES = {"PATCH": patch, "DELETE": terminate, "HEAD": head}


@routes.post(BASE + "{upload_id}", body=gate.STREAM)
async def method_override(request: web.Request) -> web.StreamResponse:
    """X-HTTP-Method-Override for clients that cannot send PATCH, DELETE or HEAD."""
    method = request.headers.get("X-HTTP-Method-Override", "").strip().upper()
    if method not in _OVERRIDES:
        return await tus_endpoint(_no_override)(request)
    return await _OVERRIDES[method](request)


async def _no_override(request: web.Request) -> web.Response:
    raise BadRequest("POST to an upload needs X-HTTP-Method-Override: PATCH, DELETE or HEAD")


_UPLOAD_ID = [{"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}]
_TUS_ERRORS = {"400": ERROR, "401": ERROR, "404": ERROR, "410": ERROR, "412": ERROR}
_AS_IETF = ("; a request with Upload-Draft-Interop-Version, or with Upload-Complete and no Tus-Resumable, is served "
            "as the IETF draft at /api/v1/uploads/")
_AS_IETF_UPLOAD = _AS_IETF + "{upload_id}, and so is one naming neither protocol when the upload is an IETF upload"
# each operation is declared on its handler; the OpenAPI document reads them from the router
documented("tus discovery: Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm" + _AS_IETF
           + " (Upload-Limit)", {"204": {"description": "capabilities"}})(options_collection)
documented("tus creation (Upload-Length or Upload-Defer-Length: 1; Upload-Metadata bucket, key|filename, filetype; "
           "Upload-Concat partial|final); creation-with-upload" + _AS_IETF + " (104, Location under /api/v1/tus/)",
           {"201": {"description": "Location of the upload"}, **_TUS_ERRORS, "403": ERROR, "413": ERROR,
            "415": ERROR, "460": ERROR})(create)
documented("tus discovery", {"204": {"description": "capabilities"}}, parameters=_UPLOAD_ID)(options_upload)
documented("tus offset: Upload-Offset, Upload-Length | Upload-Defer-Length, Upload-Metadata" + _AS_IETF_UPLOAD,
           {"204": {"description": "upload state"}, **_TUS_ERRORS}, parameters=_UPLOAD_ID)(head)
documented("tus append at Upload-Offset (Content-Type application/offset+octet-stream; Upload-Checksum as a "
           "header, or as a trailer of a chunked body announced by Trailer: Upload-Checksum)" + _AS_IETF_UPLOAD,
           {"201": {"description": "IETF: file info when complete"}, "204": {"description": "new Upload-Offset"},
            **_TUS_ERRORS, "403": ERROR, "409": ERROR, "413": ERROR, "415": ERROR, "460": ERROR},
           parameters=_UPLOAD_ID)(patch)
documented("tus termination" + _AS_IETF_UPLOAD, {"204": {"description": "terminated"}, **_TUS_ERRORS},
           parameters=_UPLOAD_ID)(terminate)
documented("X-HTTP-Method-Override: PATCH, DELETE or HEAD", {"204": {"description": "as overridden"},
                                                             **_TUS_ERRORS},
           parameters=_UPLOAD_ID)(method_override)
