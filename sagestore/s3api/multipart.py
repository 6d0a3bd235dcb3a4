"""S3 multipart uploads as uploads of the engine (protocol "s3"): CreateMultipartUpload, UploadPart,
UploadPartCopy, ListParts, CompleteMultipartUpload, AbortMultipartUpload, ListMultipartUploads.

The S3 UploadId is the engine's upload id, so such an upload is one of the caller's unfinished
uploads (GET /api/v1/uploads) and obeys the engine's expiry, limits, budget and per-user cap. Each
S3 part is one part of the engine's S3 multipart upload, so storage gives it the part's MD5 as
ETag and the completed object md5-of-md5s-N, as S3 clients expect.
"""
from __future__ import annotations

import base64
import logging
import re
from typing import Any

from aiohttp import web

from .. import context, gate
from ..errors import ApiError, BadRequest, Forbidden, Gone, NotFound, Unauthorized
from ..storage import MAX_PART_SIZE, MAX_PARTS, ObjectNotFound, StorageError, metadata_value
from ..uploads import COMPLETED, OPEN, DigestMismatch, S3_CHECKSUM_ALGORITHMS, Upload
from .chunked import CHECKSUM_HEADERS
from .common import (ETAG_METADATA, stored_headers, allowed, bare_etag, body_checks, caller, check_conditions, content_type_of,
                     copy_source, max_keys, object_key, operation, signed_payload_sha256, small_body, url_encoded,
                     user_metadata)
from .errors import error
from .xml import CONTENT_TYPE, children, owner, parse, render, text

log = logging.getLogger("sagestore.s3")
USER_METADATA = "s3_user_metadata"  # the upload's x-amz-meta-* (engine metadata), given the object at completion


def xml(tag: str, body) -> web.Response:
    return web.Response(body=render(tag, body), content_type=CONTENT_TYPE)


async def create(request: web.Request, name: str) -> web.Response:
    operation(request, "CreateMultipartUpload")
    bucket_id, _ = await allowed(request, name, "WRITE", writing=True)
    key = object_key(request)
    algorithm = request.headers.get("x-amz-checksum-algorithm")
    if algorithm is not None and algorithm.upper() not in S3_CHECKSUM_ALGORITHMS:
        raise error("InvalidRequest", f"x-amz-checksum-algorithm must be one of {', '.join(S3_CHECKSUM_ALGORITHMS)}")
    metadata = {**user_metadata(request), **stored_headers(request)}
    upload = await request.app[context.ENGINE].create(
        "s3", bucket_id, key, caller(request).user, content_type=content_type_of(request),
        metadata={USER_METADATA: metadata} if metadata else None,
        checksum_algorithm=algorithm.upper() if algorithm else None)
    body = [("Bucket", name), ("Key", key), ("UploadId", upload.id)]
    headers = {"x-amz-checksum-algorithm": upload.checksum_algorithm} if upload.checksum_algorithm else {}
    response = xml("InitiateMultipartUploadResult", body)
    response.headers.update(headers)
    return response


async def the_upload(request: web.Request, bucket_id: str, key: str, *, completed_too: bool = False) -> Upload:
    """The caller's open S3 upload of this bucket and key, fetched through the gate (or completed: a
    retried completion gets the same answer again); NoSuchUpload for anything else."""
    try:
        upload = await gate.admit_upload(request, request.query["uploadId"], "WRITE", bucket_id=bucket_id, key=key,
                                         protocols=("s3",))
    except (NotFound, Gone, BadRequest):
        raise error("NoSuchUpload") from None
    except (Forbidden, Unauthorized):
        raise error("AccessDenied") from None
    if upload.state not in ((OPEN, COMPLETED) if completed_too else (OPEN,)):
        raise error("NoSuchUpload")
    return upload


def part_number_of(request: web.Request) -> int:
    raw = request.query.get("partNumber", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or not 1 <= int(raw) <= MAX_PARTS:
        raise error("InvalidArgument", f"Part number must be an integer between 1 and {MAX_PARTS}, inclusive")
    return int(raw)


async def upload_part(request: web.Request, name: str) -> web.Response:
    operation(request, "UploadPart")
    bucket_id, _ = await allowed(request, name, "WRITE", writing=True)
    key = object_key(request)
    number = part_number_of(request)
    upload = await the_upload(request, bucket_id, key)
    payload_sha256 = signed_payload_sha256(request)
    header_checksums: dict[str, bytes] = {}  # x-amz-checksum-* headers, verified by the engine before it stores
    stream, checks = body_checks(request, want_md5=False, sha256_checked_downstream=payload_sha256 is not None,
                                 checksums_downstream=header_checksums)
    declared = request.headers.get("x-amz-decoded-content-length") or request.headers.get("Content-Length")
    size = int(declared) if declared is not None and declared.isdigit() and len(declared) < 20 else None
    if size is not None and size > MAX_PART_SIZE:
        raise error("EntityTooLarge")
    downstream = {CHECKSUM_HEADERS[name]: base64.b64encode(value).decode() for name, value in header_checksums.items()}
    payload_checked = payload_sha256 is not None and "sha256" not in downstream
    if payload_checked:
        downstream["sha256"] = base64.b64encode(bytes.fromhex(payload_sha256)).decode()
    try:
        part = await request.app[context.ENGINE].put_part(upload, number, stream, size_hint=size, checksums=downstream)
    except DigestMismatch as mismatch:
        if payload_checked and mismatch.message.startswith("sha256"):
            raise error("XAmzContentSHA256Mismatch") from None
        raise error("BadDigest", mismatch.message) from None
    except ApiError as problem:
        if problem.status == 413:
            raise error("EntityTooLarge", problem.message) from None
        raise
    headers = {"ETag": f'"{bare_etag(part.etag)}"', **checks.checksum_headers(),
               **{name: base64.b64encode(value).decode() for name, value in header_checksums.items()}}
    return web.Response(status=200, headers=headers)


async def upload_part_copy(request: web.Request, name: str) -> web.Response:
    """A part copied server-side from an object the caller may read (READ on the source bucket)."""
    operation(request, "UploadPartCopy")
    bucket_id, _ = await allowed(request, name, "WRITE", writing=True)
    key = object_key(request)
    number = part_number_of(request)
    source_bucket, source_key = copy_source(request)
    source_id, _ = await allowed(request, source_bucket, "READ")
    upload = await the_upload(request, bucket_id, key)
    store, mapping, engine = request.app[context.STORE], request.app[context.MAPPING], request.app[context.ENGINE]
    source = mapping.object(source_id, source_key)
    info = await store.head(source)
    if info is None:
        raise error("NoSuchKey")
    check_conditions(request, info, {}, prefix="x-amz-copy-source-")
    byte_range = None
    if "x-amz-copy-source-range" in request.headers:
        match = re.fullmatch(r"bytes=(\d{1,19})-(\d{1,19})", request.headers["x-amz-copy-source-range"].strip())
        if not match or int(match.group(2)) < int(match.group(1)):
            raise error("InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last "
                                           "where first and last are the zero-based offsets of the first and last "
                                           "bytes to copy")
        byte_range = (int(match.group(1)), int(match.group(2)))
        if byte_range[1] >= info.size:
            raise error("InvalidRange")
    size = info.size if byte_range is None else byte_range[1] - byte_range[0] + 1
    if size > MAX_PART_SIZE:
        raise error("EntityTooLarge")
    try:
        part = await engine.copy_part(upload, number, source, byte_range)
    except ObjectNotFound:
        raise error("NoSuchUpload") from None
    return xml("CopyPartResult", [("LastModified", info.last_modified), ("ETag", f'"{bare_etag(part.etag)}"')])


async def list_parts(request: web.Request, name: str) -> web.Response:
    operation(request, "ListParts")
    bucket_id, _ = await allowed(request, name, "WRITE", writing=True)
    key = object_key(request)
    upload = await the_upload(request, bucket_id, key)
    limit = max_keys(request, "max-parts")
    marker_text = request.query.get("part-number-marker") or "0"
    if not (marker_text.isascii() and marker_text.isdigit()) or len(marker_text) > 6:
        raise error("InvalidArgument", "part-number-marker must be a part number")
    marker = int(marker_text)
    parts = sorted((part for part in upload.parts if part.part_number > marker), key=lambda part: part.part_number)
    shown, truncated = parts[:limit], len(parts) > limit
    body: list[Any] = [("Bucket", name), ("Key", key), ("UploadId", upload.id),
                       ("Initiator", owner(upload.owner)), ("Owner", owner(upload.owner)),
                       ("StorageClass", "STANDARD"), ("PartNumberMarker", marker),
                       ("NextPartNumberMarker", shown[-1].part_number if shown else marker),
                       ("MaxParts", limit), ("IsTruncated", truncated),
                       ("ChecksumAlgorithm", upload.checksum_algorithm)]
    checksum_tag = f"Checksum{upload.checksum_algorithm}" if upload.checksum_algorithm else None
    for part in shown:
        fields = [("PartNumber", part.part_number), ("LastModified", upload.updated_at),
                  ("ETag", f'"{bare_etag(part.etag)}"'), ("Size", part.size)]
        if checksum_tag and part.checksum:
            fields.append((checksum_tag, part.checksum))
        body.append(("Part", fields))
    return xml("ListPartsResult", body)


async def complete(request: web.Request, name: str) -> web.Response:
    operation(request, "CompleteMultipartUpload")
    bucket_id, _ = await allowed(request, name, "WRITE", writing=True)
    key = object_key(request)
    upload = await the_upload(request, bucket_id, key, completed_too=True)
    document = parse(await small_body(request, checksums_describe_object=True), "CompleteMultipartUpload")
    parts = []
    for item in children(document, "Part"):
        number, etag = text(item, "PartNumber"), text(item, "ETag")
        if number is None or etag is None or not (number.strip().isascii() and number.strip().isdigit()) \
                or len(number.strip()) > 6:
            raise error("MalformedXML", "every Part needs a PartNumber and an ETag")
        entry: dict[str, Any] = {"part_number": int(number.strip()), "etag": bare_etag(etag)}
        if upload.checksum_algorithm:
            given = text(item, f"Checksum{upload.checksum_algorithm}")
            if given:
                entry["checksum"] = given.strip()
        parts.append(entry)
    if not parts:
        raise error("MalformedXML", "CompleteMultipartUpload must list at least one part")
    engine = request.app[context.ENGINE]
    result = await engine.complete(upload, parts=parts)
    etag = bare_etag(result["etag"])
    metadata = (upload.metadata or {}).get(USER_METADATA)
    if metadata:  # x-amz-meta-* given at creation: the completed object gets them
        store = request.app[context.STORE]
        location = request.app[context.MAPPING].object(bucket_id, key)
        try:
            await store.replace_metadata(location, content_type=upload.content_type, size=result["size"],
                                         if_match=result["etag"],
                                         metadata={"owner": metadata_value(upload.owner), **metadata,
                                                   ETAG_METADATA: etag})
        except StorageError as problem:
            log.info("CompleteMultipartUpload %s: metadata not recorded (%s)", key, problem.code)
    return xml("CompleteMultipartUploadResult", [("Location", f"/{name}/{key}"), ("Bucket", name), ("Key", key),
                                                 ("ETag", f'"{etag}"')])


async def abort(request: web.Request, name: str) -> web.Response:
    operation(request, "AbortMultipartUpload")
    bucket_id, _ = await allowed(request, name, "WRITE", writing=True)
    key = object_key(request)
    upload = await the_upload(request, bucket_id, key)
    try:
        await request.app[context.ENGINE].abort(upload)
    except NotFound:
        raise error("NoSuchUpload") from None
    return web.Response(status=204)


async def list_uploads(request: web.Request, name: str) -> web.Response:
    """The caller's unfinished S3 uploads into the bucket (uploads are their owner's: another user's
    are neither listed nor usable)."""
    operation(request, "ListMultipartUploads")
    bucket_id, _ = await allowed(request, name, "WRITE", writing=True)
    query = request.query
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter") or None
    encode = query.get("encoding-type") == "url"
    limit = max_keys(request, "max-uploads")
    key_marker, id_marker = query.get("key-marker", ""), query.get("upload-id-marker", "")
    uploads = [upload for upload in await request.app[context.ENGINE].unfinished(caller(request).user,
                                                                                 bucket_id=bucket_id)
               if upload.protocol == "s3" and upload.key.startswith(prefix)]
    uploads.sort(key=lambda upload: (upload.key, upload.created_at, upload.id))
    if key_marker:
        uploads = [upload for upload in uploads
                   if upload.key > key_marker or (upload.key == key_marker and id_marker and upload.id > id_marker)]
    entries, prefixes, truncated = [], [], False
    for upload in uploads:
        if delimiter and delimiter in upload.key[len(prefix):]:
            group = upload.key[:len(prefix) + upload.key[len(prefix):].index(delimiter) + len(delimiter)]
            if group not in prefixes:
                prefixes.append(group)
            continue
        if len(entries) + len(prefixes) >= limit:
            truncated = True
            break
        entries.append(upload)
    body: list[Any] = [("Bucket", name), ("KeyMarker", url_encoded(key_marker, encode)),
                       ("UploadIdMarker", id_marker), ("Prefix", url_encoded(prefix, encode)),
                       ("Delimiter", url_encoded(delimiter, encode)), ("MaxUploads", limit),
                       ("IsTruncated", truncated)]
    if truncated and entries:
        body += [("NextKeyMarker", url_encoded(entries[-1].key, encode)), ("NextUploadIdMarker", entries[-1].id)]
    if encode:
        body.append(("EncodingType", "url"))
    for upload in entries:
        body.append(("Upload", [("Key", url_encoded(upload.key, encode)), ("UploadId", upload.id),
                                ("Initiator", owner(upload.owner)), ("Owner", owner(upload.owner)),
                                ("StorageClass", "STANDARD"), ("Initiated", upload.created_at)]))
    body += [("CommonPrefixes", [("Prefix", url_encoded(group, encode))]) for group in prefixes]
    return xml("ListMultipartUploadsResult", body)
