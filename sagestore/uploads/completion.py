"""Completion: complete() holds the upload lease in state `completing`, assembles the object (the
plan, the staged tail as last part, CompleteMultipartUpload), then verifies and publishes it
(publish.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from botocore.exceptions import ClientError

from ..db import cursor, transaction
from ..errors import BadRequest, Conflict, PayloadTooLarge
from ..storage import Location, is_not_found, metadata_value, validate_key
from .common import validate_sha256, s3_bad_request, normal_etag
from .core import EngineCore
from .leases import Lease
from .model import COMPLETED, Part, Upload
from .ordered import hash_parked, hashes_in_order
from .plan import plan_parts, Plan
from .publish import publish_completed, publish_in_place, publish_staged


async def complete(engine: EngineCore, upload: Upload, *, parts: list[dict[str, Any]] | None = None,
                   target: tuple[str, str] | None = None, sha256: str | None = None) -> dict[str, Any]:
    """Assemble and publish; returns the file info {bucket_id, key, size, etag, sha256?, ...}.

    parts: the multipart API client's list [{part_number, etag, checksum?}], validated against
    what S3 holds (InvalidPart, InvalidPartOrder, EntityTooSmall -> 400 with S3's message).
    Without it the recorded parts are used: indexed uploads must have every part (MissingParts),
    sequential ones their declared length (the staged tail becomes the last part; a deferred
    length completes at the current offset).
    target (bucket_id, key) publishes a retained/staged upload elsewhere; repeating complete on a
    retained upload publishes it again (offset chunks' import_upload). sha256 (hex) is verified
    before anything is published; it needs a staged upload (declared sha256 or retain) or a
    sequential one hashed as it came (assembled at its target, and copied from there).
    Idempotent: a completed upload returns its result.
    """
    sha256 = validate_sha256(sha256)
    if target is not None:
        validate_key(target[1])
    current = await engine.reload(upload.id)
    if current.state == COMPLETED:
        return await publish_completed(engine, current, target, sha256)
    if sha256 and current.sha256 and sha256 != current.sha256:
        raise BadRequest("sha256 differs from the one declared when the upload was created")
    if sha256 and not current.staged and current.sha256_so_far is None:
        raise BadRequest("a whole-file sha256 must be declared when the upload is created")
    if hashes_in_order(current) and current.offset != current.length:
        await hash_parked(engine, current)  # chunks that came early, kept aside until their turn
    async with engine.writing(upload.id, completing=True) as (lease, current):
        assembled = (current.result or {}).get("assembled")
        if assembled is None:
            if not current.staged:
                await check_running_sha256(engine, lease, current, sha256 or current.sha256)
            assembled = await assemble(engine, lease, current, parts)
        current.length = assembled["size"]
        current.result = dict(current.result or {}, assembled=assembled)
        if current.staged:
            result = await publish_staged(engine, current, target, sha256 or current.sha256, lease=lease)
        else:
            result = await publish_in_place(engine, current, target, sha256 or current.sha256, lease)
        await delete_staging(engine, current, keep_object=current.retain or current.bucket_id is None)
        engine.frontiers.forget(current.id)
        engine.metrics.file_uploads.inc()
        engine.metrics.bytes_uploaded.inc(assembled["size"])
        return result


async def assemble(engine: EngineCore, lease: Lease, upload: Upload, client_parts: list[dict[str, Any]] | None) -> dict:
    """Turn the parts (+ staged tail) into one S3 object at the MPU's key and record that.
    Until CompleteMultipartUpload succeeds a failure reopens the upload, so the client can fix
    its part list or add bytes and complete again."""
    try:
        plan = await plan_parts(engine, upload, client_parts)
        if upload.tail_key:
            number = (plan.parts[-1]["PartNumber"] + 1) if plan.parts else 1
            try:
                etag = await engine.store.upload_part_copy(engine.mpu(upload), upload.s3_upload_id, number,
                                                           Location(upload.s3_bucket, upload.tail_key))
            except ClientError as error:
                if not is_not_found(error):
                    raise
                etag = None  # an earlier attempt completed the MPU already: finish_mpu checks that
            plan.parts.append({"PartNumber": number, "ETag": etag})
            plan.recorded.append(Part(number, upload.tail_size, etag or ""))
            plan.size += upload.tail_size
        if plan.size > engine.settings.max_upload_size:
            raise PayloadTooLarge(f"the parts add up to {plan.size} bytes, more than the maximum upload size of "
                                  f"{engine.settings.max_upload_size} bytes; nothing was published",
                                  max_upload_size=engine.settings.max_upload_size)
        info = await finish_mpu(engine, upload, plan)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(reopen(engine, lease))
        raise
    assembled = {"size": plan.size, "etag": info["etag"]}
    if upload.sha256_so_far is not None and upload.offset == plan.size:
        hashed = upload.sha256_so_far  # a sequential upload, hashed as its bytes came
    else:
        hashed = None if upload.tail_key else engine.frontiers.sha256(
            upload.id, [(part.part_number, normal_etag(part.etag)) for part in plan.recorded])
    if hashed:
        assembled["sha256"] = hashed  # of exactly these parts' bytes, as received: no read-back
        engine.metrics.sha256_verifications.labels("received").inc()
    async with transaction(engine.pool) as cur:
        await engine.upsert_parts(cur, upload.id, [part for part in plan.recorded if part.etag])
        await cur.execute("UPDATE uploads SET length = %s, result = %s, updated_at = now()"
                          " WHERE id = %s AND writer = %s",
                          (plan.size, json.dumps({"assembled": assembled}), upload.id, lease.token))
    return assembled


async def check_running_sha256(engine: EngineCore, lease: Lease, upload: Upload, expected: str | None) -> None:
    """A hashed upload is assembled at its target, so a wrong sha256 must be caught before that:
    nothing is published and the upload stays open (the client may still fix it)."""
    if hashes_in_order(upload) and upload.offset != upload.length:
        # complete() ran hash_parked first, so this is never expected; but unhashed bytes must
        # not be published as verified, whatever the path here
        await reopen(engine, lease)
        raise Conflict("some chunks of this session are not verified yet; complete again",
                       code="ChunksUnverified")
    if not expected or upload.sha256_so_far is None or (upload.length is not None
                                                         and upload.offset != upload.length):
        return  # nothing to check, or assemble() refuses the unfinished upload itself
    if upload.sha256_so_far != expected:
        await reopen(engine, lease)
        raise BadRequest(f"sha256 mismatch: expected {expected}, the upload has {upload.sha256_so_far}; "
                         "nothing was published", code="Sha256Mismatch", sha256=upload.sha256_so_far)


async def reopen(engine: EngineCore, lease: Lease) -> None:
    async with cursor(engine.pool) as cur:
        await cur.execute("UPDATE uploads SET state = 'open' WHERE id = %s AND writer = %s"
                          " AND state = 'completing'", (lease.upload_id, lease.token))


async def finish_mpu(engine: EngineCore, upload: Upload, plan: Plan) -> dict[str, Any]:
    """CompleteMultipartUpload (an empty upload becomes an empty object); safe to retry."""
    location = engine.mpu(upload)
    if not plan.parts:
        await engine.store.abort_multipart(location, upload.s3_upload_id)
        etag = await engine.store.put_bytes(location, b"", content_type=upload.content_type,
                                            metadata={"owner": metadata_value(upload.owner)})
        return {"etag": etag}
    try:
        if any(part["ETag"] is None for part in plan.parts):
            raise ClientError({"Error": {"Code": "NoSuchUpload"}}, "CompleteMultipartUpload")
        etag = await engine.store.complete_multipart(location, upload.s3_upload_id, plan.parts)
    except ClientError as error:
        if is_not_found(error):
            # a retry after a crash between CompleteMultipartUpload and our commit
            info = await engine.store.head(location)
            if info is not None and info.size == plan.size:
                return {"etag": info.etag}
            raise Conflict("the upload's storage was released; start a new upload") from None
        raise s3_bad_request(error) or error
    return {"etag": etag}


async def delete_staging(engine: EngineCore, upload: Upload, *, keep_object: bool) -> None:
    with contextlib.suppress(Exception):
        if keep_object:
            keys = [key async for page in engine.store.iter_keys(engine.staging_prefix(upload)) for key in page
                    if key != upload.s3_key]
            if keys:
                await engine.store.delete(upload.s3_bucket, keys)
        else:
            await engine.store.delete_prefix(engine.staging_prefix(upload))
