"""Object operations of the S3 door: PutObject, GetObject, HeadObject, CopyObject, DeleteObject,
DeleteObjects, GetObjectAcl."""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from .. import context, gate
from ..handlers.common import http_date
from ..handlers.transfer import stream_body
from ..db import buckets as bucket_queries
from ..db import cursor
from ..storage import (MAX_PART_SIZE, ChecksumMismatch, InvalidRange, Location, ObjectInfo, ObjectNotFound, SourceChanged,
                       StorageError, metadata_value)
from .common import (DEFAULT_CONTENT_TYPE, ETAG_METADATA, STORED_HEADER_PREFIX, stored_headers, stored_headers_of, allowed, bare_etag, body_checks, caller, check_conditions,
                     checked_key, content_type_of, copy_source, object_key, operation, owner_name, s3_etag,
                     signed_payload_sha256, small_body, user_metadata, user_metadata_headers, user_metadata_of)
from .errors import error
from .xml import CONTENT_TYPE, children, owner, parse, render, text

log = logging.getLogger("sagestore.s3")
RESPONSE_OVERRIDES = {"response-content-type": "Content-Type", "response-content-language": "Content-Language",
                      "response-expires": "Expires", "response-cache-control": "Cache-Control",
                      "response-content-disposition": "Content-Disposition",
                      "response-content-encoding": "Content-Encoding"}




def object_headers(info: ObjectInfo) -> dict[str, str]:
    headers = {"ETag": s3_etag(info), "Content-Type": info.content_type or DEFAULT_CONTENT_TYPE,
               "Accept-Ranges": "bytes", **stored_headers_of(info), **user_metadata_headers(info)}
    if info.last_modified:
        headers["Last-Modified"] = http_date(info.last_modified)
    return headers


async def put_object(request: web.Request, name: str) -> web.Response:
    """The body streamed to storage (memory bounded by the part buffers), checked as it passes;
    the object appears only once the whole body has come and every check held."""
    operation(request, "PutObject")
    bucket_id, _ = await allowed(request, name, "WRITE", writing=True)
    key = object_key(request)
    limit = min(gate.max_upload_size(request.app[context.SETTINGS]), MAX_PART_SIZE)  # S3's PutObject bound
    declared = request.headers.get("x-amz-decoded-content-length") or request.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise error("EntityTooLarge")
    user = caller(request)
    metadata = {"owner": metadata_value(user.user or ""), **user_metadata(request), **stored_headers(request)}
    content_type = content_type_of(request)
    expected_sha256 = signed_payload_sha256(request)
    stream, checks = body_checks(request, want_md5=True, sha256_checked_downstream=expected_sha256 is not None)
    location = request.app[context.MAPPING].object(bucket_id, key)
    store = request.app[context.STORE]
    try:
        async with gate.streamed(request, stream, limit=limit) as admitted:  # the user's slot and the budget
            result = await store.put_stream(location, admitted, content_type=content_type, metadata=dict(metadata),
                                            expected_sha256=expected_sha256)
    except ChecksumMismatch:
        raise error("XAmzContentSHA256Mismatch") from None
    md5 = checks.md5.hex()
    if bare_etag(result.etag) != md5:  # stored in parts: the S3 ETag is kept beside
        metadata[ETAG_METADATA] = md5
        if result.sha256:
            metadata["sha256"] = result.sha256
        try:
            await store.replace_metadata(location, content_type=content_type, metadata=metadata, size=result.size,
                                         if_match=result.etag)
        except StorageError as problem:  # replaced meanwhile: the newer object stands
            log.info("PutObject %s: ETag not recorded (%s)", key, problem.code)
    async with cursor(request.app[context.DB]) as cur:
        still_there = await bucket_queries.get(cur, bucket_id)
    if still_there is None:  # the bucket was deleted while the body streamed: leave nothing behind
        await store.delete(location.bucket, [location.key])
        raise error("NoSuchBucket")
    metrics = request.app[context.METRICS]
    metrics.file_uploads.inc()
    metrics.bytes_uploaded.inc(result.size)
    return web.Response(status=200, headers={"ETag": f'"{md5}"', **checks.checksum_headers()})


# ---------------------------------------------------------------- reads
def requested_range(request: web.Request) -> str | None:
    """One byte range as S3 takes it; anything else (several ranges, bad syntax) is ignored, as S3 does."""
    value = request.headers.get("Range")
    if value is None:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if not match or (match.group(1) == "" and match.group(2) == ""):
        return None
    first, last = match.group(1), match.group(2)
    if len(first) > 19 or len(last) > 19:
        return None
    if first and last and int(last) < int(first):
        return None
    return f"bytes={first}-{last}"




def apply_overrides(request: web.Request, headers: dict[str, str]) -> None:
    for parameter, header in RESPONSE_OVERRIDES.items():
        value = request.query.get(parameter)
        if value is not None:
            if not value.isascii() or any(ord(char) < 0x20 for char in value):
                raise error("InvalidArgument", f"{parameter} must be printable ASCII")
            headers[header] = value


async def readable(request: web.Request, name: str) -> tuple[str, Location]:
    bucket_id, _ = await allowed(request, name, "READ")
    key = object_key(request)
    return key, request.app[context.MAPPING].object(bucket_id, key)


async def head_object(request: web.Request, name: str) -> web.Response:
    operation(request, "HeadObject")
    if "partNumber" in request.query:
        raise error("NotImplemented", "HeadObject of a part is not supported")
    _, location = await readable(request, name)
    info = await request.app[context.STORE].head(location)
    if info is None:
        raise error("NoSuchKey")
    headers = object_headers(info)
    answer = check_conditions(request, info, headers)
    if answer is not None:
        return answer
    apply_overrides(request, headers)
    headers["Content-Length"] = str(info.size)
    return web.Response(status=200, headers=headers)


async def get_object(request: web.Request, name: str) -> web.StreamResponse:
    operation(request, "GetObject")
    if "partNumber" in request.query:
        raise error("NotImplemented", "GetObject of a part is not supported")
    key, location = await readable(request, name)
    store = request.app[context.STORE]
    byte_range = requested_range(request)
    try:
        stream = await store.open(location, byte_range)
    except InvalidRange:
        current = await store.head(location)
        if current is None:
            raise error("NoSuchKey") from None
        raise error("InvalidRange", headers={"Content-Range": f"bytes */{current.size}"}) from None
    if stream is None:
        raise error("NoSuchKey")
    headers = object_headers(stream.info)
    try:
        answer = check_conditions(request, stream.info, headers)
        apply_overrides(request, headers)
    except BaseException:
        stream.close()
        raise
    if answer is not None:
        stream.close()
        return answer
    return await stream_body(request, stream, headers)


async def object_acl(request: web.Request, name: str) -> web.Response:
    operation(request, "GetObjectAcl")
    bucket_id, bucket = await allowed(request, name, "READ_ACP")
    key = object_key(request)
    info = await request.app[context.STORE].head(request.app[context.MAPPING].object(bucket_id, key))
    if info is None:
        raise error("NoSuchKey")
    grant = ("Grant", [("Grantee", owner(bucket["owner"])), ("Permission", "FULL_CONTROL")])
    return web.Response(body=render("AccessControlPolicy", [("Owner", owner(owner_name(info))),
                                                            ("AccessControlList", [grant])]),
                        content_type=CONTENT_TYPE)


# ---------------------------------------------------------------- copies and deletions


async def copy_object(request: web.Request, name: str) -> web.Response:
    """Server-side copy: READ on the source, WRITE on the target, as the SAGE API would check."""
    operation(request, "CopyObject")
    source_bucket, source_key = copy_source(request)
    source_id, _ = await allowed(request, source_bucket, "READ")
    target_id, _ = await allowed(request, name, "WRITE", writing=True)
    key = object_key(request)
    mapping, store = request.app[context.MAPPING], request.app[context.STORE]
    source, target = mapping.object(source_id, source_key), mapping.object(target_id, key)
    info = await store.head(source)
    if info is None:
        raise error("NoSuchKey")
    check_conditions(request, info, {}, prefix="x-amz-copy-source-")
    directive = request.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise error("InvalidArgument", "x-amz-metadata-directive must be COPY or REPLACE")
    if source == target and directive == "COPY":
        raise error("InvalidRequest", "This copy request is illegal because it is trying to copy an object to "
                                      "itself without changing the object's metadata, storage class, website "
                                      "redirect location or encryption attributes.")
    user = caller(request)
    etag = bare_etag(s3_etag(info))
    metadata: dict[str, Any] = {"owner": metadata_value(user.user or "")}
    if directive == "COPY":
        metadata.update(user_metadata_of(info))
        metadata.update({STORED_HEADER_PREFIX + name.lower(): value for name, value in stored_headers_of(info).items()})
        content_type = info.content_type or DEFAULT_CONTENT_TYPE
    else:
        metadata.update(user_metadata(request))
        metadata.update(stored_headers(request))
        content_type = content_type_of(request)
    if "sha256" in (info.metadata or {}):
        metadata["sha256"] = info.metadata["sha256"]
    metadata[ETAG_METADATA] = etag  # the same bytes: the same S3 ETag, whatever storage calls the copy
    try:
        await store.copy(source, target, content_type=content_type, metadata=metadata, size=info.size,
                         if_match=info.etag)
    except (SourceChanged, ObjectNotFound):
        raise error("PreconditionFailed", "the source object changed during the copy") from None
    copied = await store.head(target)
    last_modified = copied.last_modified if copied is not None else datetime.now(timezone.utc)
    return web.Response(body=render("CopyObjectResult", [("LastModified", last_modified), ("ETag", f'"{etag}"')]),
                        content_type=CONTENT_TYPE)


async def delete_object(request: web.Request, name: str) -> web.Response:
    """204 whether or not the key existed, as S3 answers."""
    operation(request, "DeleteObject")
    bucket_id, _ = await allowed(request, name, "WRITE", writing=True)
    key = object_key(request)
    location = request.app[context.MAPPING].object(bucket_id, key)
    await request.app[context.STORE].delete(location.bucket, [location.key])
    return web.Response(status=204)


MAX_DELETE_KEYS = 1000


async def delete_objects(request: web.Request, name: str) -> web.Response:
    operation(request, "DeleteObjects")
    bucket_id, _ = await allowed(request, name, "WRITE", writing=True)
    document = parse(await small_body(request), "Delete")
    quiet = (text(document, "Quiet") or "false").strip().lower() == "true"
    objects = children(document, "Object")
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise error("MalformedXML", f"Delete must name between 1 and {MAX_DELETE_KEYS} objects")
    mapping, store = request.app[context.MAPPING], request.app[context.STORE]
    deleted, failed, wanted = [], [], []
    for item in objects:
        key = text(item, "Key")
        version = text(item, "VersionId")
        if key is None:
            raise error("MalformedXML", "every Object needs a Key")
        if version not in (None, "null"):
            failed.append(("Error", [("Key", key), ("VersionId", version), ("Code", "NoSuchVersion"),
                                     ("Message", "The specified version does not exist.")]))
            continue
        try:
            location = mapping.object(bucket_id, checked_key(key))
        except Exception as problem:  # noqa: BLE001 - one bad key fails alone
            failed.append(("Error", [("Key", key), ("Code", getattr(problem, "code", "InvalidArgument")),
                                     ("Message", getattr(problem, "message", "bad key"))]))
            continue
        wanted.append((key, version, location))
    if wanted:
        await store.delete(wanted[0][2].bucket, [location.key for _, _, location in wanted])
    for key, version, _ in wanted:
        if not quiet:
            deleted.append(("Deleted", [("Key", key), ("VersionId", version)]))
    return web.Response(body=render("DeleteResult", deleted + failed), content_type=CONTENT_TYPE)

