"""Completion, last steps: verify a staged upload's sha256 (from the frontier of its received parts
or by one streaming read) and publish it by a server-side copy; a mismatch publishes nothing.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from ..db import cursor
from ..errors import BadRequest, Conflict, Gone
from ..storage import metadata_value
from .common import READ_CHUNK
from .core import EngineCore
from .leases import Lease
from .model import COMPLETED, Upload


async def assembled_sha256(engine: EngineCore, upload: Upload) -> str:
    """Stream the assembled staging object once and remember its sha256."""
    assembled = dict((upload.result or {}).get("assembled") or {})
    if assembled.get("sha256"):
        return assembled["sha256"]
    stream = await engine.store.open(engine.mpu(upload))
    if stream is None:
        raise Gone("the assembled upload is no longer stored")
    engine.metrics.sha256_verifications.labels("read_back").inc()
    digest = hashlib.sha256()
    async for chunk in stream.chunks(READ_CHUNK):
        digest.update(chunk)
    assembled["sha256"] = digest.hexdigest()
    result = dict(upload.result or {})
    result["assembled"] = assembled
    upload.result = result
    async with cursor(engine.pool) as cur:
        await cur.execute("UPDATE uploads SET result = %s WHERE id = %s", (json.dumps(result), upload.id))
    return assembled["sha256"]


async def publish_staged(engine: EngineCore, upload: Upload, target: tuple[str, str] | None, sha256: str | None, *,
                         lease: Lease | None) -> dict[str, Any]:
    """Verify (sha256) then copy the assembled object to its target, server-side."""
    assembled = upload.result["assembled"]
    actual = await assembled_sha256(engine, upload) if sha256 else assembled.get("sha256")
    if sha256 and actual != sha256:
        if lease is not None:
            await mark_completed(engine, upload, upload.result, lease)
        raise BadRequest(f"sha256 mismatch: expected {sha256}, the upload has {actual}; nothing was published",
                         code="Sha256Mismatch", sha256=actual)
    bucket_id, key = target if target is not None else (upload.bucket_id, upload.key)
    if bucket_id is None:
        # no target (e.g. a tus partial upload): the assembled object stays for concatenation
        if lease is not None:
            await mark_completed(engine, upload, upload.result, lease)
        return {"upload_id": upload.id, "size": assembled["size"], "sha256": actual, "assembled": True}
    destination = engine.mapping.object(bucket_id, key)
    metadata = {"owner": metadata_value(upload.owner)}
    if actual:
        metadata["sha256"] = actual
    etag = await engine.store.copy(engine.mpu(upload), destination, content_type=upload.content_type,
                                   metadata=metadata, size=assembled["size"])
    info = file_info_of(upload, bucket_id, key, assembled["size"], etag, actual)
    result = dict(upload.result)
    result["file"] = info
    result.setdefault("published", [])
    result["published"] = [entry for entry in result["published"] if entry.get("key") != key
                           or entry.get("bucket_id") != bucket_id] + [info]
    upload.result = result
    if lease is not None:
        await mark_completed(engine, upload, result, lease)
    else:
        async with cursor(engine.pool) as cur:
            await cur.execute("UPDATE uploads SET result = %s, updated_at = now() WHERE id = %s",
                              (json.dumps(result), upload.id))
    return info


async def publish_completed(engine: EngineCore, upload: Upload, target: tuple[str, str] | None,
                            sha256: str | None) -> dict[str, Any]:
    """complete() on a completed upload: the same answer again, or another publication of a retained one."""
    result = upload.result or {}
    if upload.retain or (upload.staged and upload.bucket_id is None):
        if target is None and "file" in result and not sha256:
            return result["file"]
        if target is None and upload.bucket_id is None and not sha256:
            assembled = result["assembled"]
            return {"upload_id": upload.id, "size": assembled["size"], "sha256": assembled.get("sha256"),
                    "assembled": True}
        return await publish_staged(engine, upload, target, sha256, lease=None)
    if "file" not in result:
        if upload.staged and sha256:  # an earlier sha256 mismatch: the staged object still waits
            return await publish_staged(engine, upload, target, sha256, lease=None)
        raise BadRequest("the upload was assembled but not published (sha256 mismatch); start a new upload")
    file_info = result["file"]
    if target is not None and (str(target[0]), target[1]) != (file_info["bucket_id"], file_info["key"]):
        raise Conflict("this upload was already published elsewhere")
    if sha256 and not file_info.get("sha256"):
        raise BadRequest("a whole-file sha256 must be declared when the upload is created")
    if sha256 and sha256 != file_info["sha256"]:
        raise BadRequest(f"sha256 mismatch: expected {sha256}, the upload has {file_info['sha256']}",
                         code="Sha256Mismatch")
    return file_info


def file_info_of(upload: Upload, bucket_id: str, key: str, size: int, etag: str,
                 sha256: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {"bucket_id": str(bucket_id), "key": key, "size": size, "etag": etag,
                            "content_type": upload.content_type, "upload_id": upload.id}
    if sha256:
        info["sha256"] = sha256
    return info


async def mark_completed(engine: EngineCore, upload: Upload, result: dict[str, Any], lease: Lease) -> None:
    async with cursor(engine.pool) as cur:
        await cur.execute(
            """UPDATE uploads SET state = 'completed', result = %s, tail_key = NULL, tail_size = 0,
                   updated_at = now() WHERE id = %s AND writer = %s""",
            (json.dumps(result), upload.id, lease.token))
    upload.state = COMPLETED
