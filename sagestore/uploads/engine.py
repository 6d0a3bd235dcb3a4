"""THE upload engine: every large-upload protocol (multipart proxy, offset chunks, indexed
sessions, tus, IETF draft) is a thin adapter over UploadEngine.

Where bytes live:
- the S3 multipart upload (MPU) targets the final key `{bucket}/{key}` when nothing must be
  checked before publishing: the object appears only at CompleteMultipartUpload (atomic);
- so does a sequential upload (tus, IETF, offset chunks) with a target: its bytes are hashed as
  they arrive and the hash state is committed with each offset (resumable_sha256.py), so a
  declared sha256 is checked before CompleteMultipartUpload, and later publications of a
  retained one copy from the published target;
- and so does an indexed session that declares a sha256 (or asks verify_sha256): its chunks are
  hashed in order with the state committed per chunk; one ahead of its turn waits while the one
  before is in flight, or is parked in a staging copy `chunk-N` until its turn (ordered.py);
- otherwise it targets a staging key `.sagestore-staging/uploads/{id}/object` when a whole-file sha256
  is declared, when the assembled object must be kept for several publications (retain), or
  when the upload has no target yet. Completion then verifies the sha256 by a streaming read
  and publishes with a server-side copy; a mismatch publishes nothing;
- sequential protocols (append) keep bytes short of a full part in a durable staging tail
  object `.sagestore-staging/uploads/{id}/tail-<token>`, a new one per request.

PostgreSQL is the truth: bytes count only once they are in S3 AND committed in `uploads` /
`upload_parts` by a writer that still holds its lease. Parts in S3 that no commit recorded are
garbage that later writes of the same part number replace and completion never names.

UploadEngine is the facade handlers call. It is an EngineCore (core.py: resources, rows, keys,
leases, parts in S3) and delegates each step to its module: sequential.py (append, take over;
its part pipeline is pipeline.py), parts.py, completion.py (with plan.py and publish.py),
concat.py and reaper.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any, AsyncIterable, Callable

from botocore.exceptions import ClientError

from ..db import cursor, transaction
from ..errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from ..storage import MAX_PART_SIZE, MAX_PARTS, metadata_value, validate_key
from . import completion, concat, parts, reaper, sequential
from .checksums import S3_CHECKSUM_ALGORITHMS
from .common import SEQUENTIAL_PROTOCOLS, ChunkChecksum, validate_sha256, s3_bad_request
from .core import EngineCore
from .model import COMPLETING, PROTOCOLS, Part, Upload, choose_part_size
from .resumable_sha256 import ResumableSha256, available as resumable_sha256_available


class UploadEngine(EngineCore):
    """The upload state machine: open -> completing -> completed, or aborted / expired.

    Opening, listing, status and abort are here; get() and what every step shares come from
    EngineCore; parts, appends, completion, concatenation and the reaper are delegated."""

    _mpu = EngineCore.mpu  # the tests find an upload's MPU location through it

    async def create(self, protocol: str, bucket_id: str | None, key: str | None, owner: str, *,
                     length: int | None = None, content_type: str | None = None,
                     metadata: dict[str, Any] | None = None, checksum_algorithm: str | None = None,
                     sha256: str | None = None, part_size: int | None = None, retain: bool = False,
                     concat_sources: list[str] | None = None, verify_sha256: bool = False) -> Upload:
        """Open an upload. The caller has checked WRITE on the bucket.

        length None = deferred (part sizes then grow with the part number). part_size is honoured
        for indexed sessions; otherwise the engine picks it. sha256 (hex) is verified at completion
        before anything is published; verify_sha256 (indexed sessions) hashes the chunks in order as
        a declared sha256 does, for a sha256 given at completion. retain keeps the assembled object
        after publishing, for repeated publications (offset chunks' import_upload) until the upload expires.
        concat_sources (upload ids) marks a tus final upload to be built by concatenate(); they are
        kept in metadata["concat_sources"] and found again by finals_waiting_for().
        """
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}")
        if not owner:
            raise BadRequest("uploads need an authenticated owner")
        if bucket_id is not None:
            validate_key(key)
        elif key is not None:
            raise BadRequest("a key needs a bucket")
        if length is not None:
            if not isinstance(length, int) or isinstance(length, bool) or length < 0:
                raise BadRequest("length must be a non-negative integer")
            if length > min(self.settings.max_upload_size, MAX_PARTS * MAX_PART_SIZE):
                raise PayloadTooLarge(f"upload of {length} bytes exceeds the maximum of "
                                      f"{min(self.settings.max_upload_size, MAX_PARTS * MAX_PART_SIZE)} bytes")
        if checksum_algorithm is not None:
            checksum_algorithm = str(checksum_algorithm).upper()
            if checksum_algorithm not in S3_CHECKSUM_ALGORITHMS:
                raise BadRequest(f"checksum_algorithm must be one of {', '.join(S3_CHECKSUM_ALGORITHMS)}")
        sha256 = validate_sha256(sha256)
        size, grows = choose_part_size(length, self.settings.s3_part_size, part_size)
        if protocol == "session" and size > self.settings.max_chunk_size:
            # its chunks are buffered whole: a file that needs larger ones cannot be a session
            raise PayloadTooLarge(f"a session of {length} bytes needs chunks of {size} bytes, more than the maximum "
                                  f"chunk size of {self.settings.max_chunk_size} bytes; use the multipart API",
                                  max_chunk_size=self.settings.max_chunk_size)
        upload_id = str(uuid.uuid4())
        # a sequential upload with a target hashes its bytes as they come (committed with each
        # offset), so its sha256 is known before CompleteMultipartUpload: it is assembled at its
        # target, verified first, and later publications (retain) copy from there
        hashed = (protocol in SEQUENTIAL_PROTOCOLS and bucket_id is not None and concat_sources is None
                  and resumable_sha256_available())
        # so does an indexed session with a declared (or later) sha256: chunks hashed in order (ordered.py)
        hashed = hashed or (protocol == "session" and bucket_id is not None and (bool(sha256) or verify_sha256)
                            and not retain and not grows and resumable_sha256_available())
        staged = ((bool(sha256) or retain) and not hashed) or bucket_id is None
        sha256_state = ResumableSha256() if hashed else None
        if staged:
            shard = self.mapping.s3_bucket(bucket_id or upload_id)
            location = self.staging(None, "object", upload_id=upload_id, s3_bucket=shard)
        else:
            location = self.mapping.object(bucket_id, key)
        content_type = content_type or "application/octet-stream"
        metadata = dict(metadata or {})
        if concat_sources is not None:
            metadata["concat_sources"] = [str(source) for source in concat_sources]
        try:
            s3_upload_id = await self.store.create_multipart(location, content_type=content_type,
                                                             metadata={"owner": metadata_value(owner)},
                                                             checksum_algorithm=checksum_algorithm)
        except ClientError as error:
            raise s3_bad_request(error) or error
        try:
            async with transaction(self.pool) as cur:
                await cur.execute(
                    """INSERT INTO uploads (id, protocol, bucket_id, key, owner, content_type, metadata, length,
                           part_size, part_size_grows, s3_bucket, s3_key, s3_upload_id, staged, retain,
                           checksum_algorithm, sha256, sha256_state, sha256_so_far, expires_at)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                               now() + %s * interval '1 second')
                       RETURNING *""",
                    (upload_id, protocol, bucket_id, key, owner, content_type, json.dumps(metadata or {}), length,
                     size, grows, location.bucket, location.key, s3_upload_id, staged, retain,
                     checksum_algorithm, sha256, sha256_state and sha256_state.state(),
                     sha256_state and sha256_state.hexdigest(), self.ttl()))
                row = await cur.fetchone()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.abort_multipart(location, s3_upload_id))
            raise
        if staged and sha256 and protocol not in SEQUENTIAL_PROTOCOLS:
            self.frontiers.start(upload_id)
        return Upload.from_row(row)

    async def unfinished(self, owner: str, *, bucket_id: str | None = None, key: str | None = None,
                         limit: int = 1000) -> list[Upload]:
        """The owner's open, unexpired uploads (newest first), optionally of one bucket and key, with
        their parts: what a client needs to resume one with no local state."""
        conditions, values = ["owner = %s", "state = 'open'", "expires_at > now()"], [owner]
        if bucket_id is not None:
            conditions.append("bucket_id = %s")
            values.append(bucket_id)
        if key is not None:
            conditions.append("key = %s")
            values.append(key)
        async with cursor(self.pool) as cur:
            await cur.execute(f"SELECT * FROM uploads WHERE {' AND '.join(conditions)} "
                              "ORDER BY created_at DESC LIMIT %s", (*values, limit))
            uploads = [Upload.from_row(row) for row in await cur.fetchall()]
            for upload in uploads:
                upload.parts = await self.load_parts(cur, upload.id)
        return uploads

    def status(self, upload: Upload) -> dict[str, Any]:
        """Protocol-neutral state of an upload (get() it first)."""
        body: dict[str, Any] = {
            "upload_id": upload.id, "protocol": upload.protocol, "state": upload.state,
            "bucket_id": upload.bucket_id, "key": upload.key, "length": upload.length,
            "offset": upload.offset, "received": upload.received, "part_size": upload.part_size,
            "parts": [part.as_json() for part in upload.parts], "expires": upload.expires_at.isoformat(),
            "checksum_algorithm": upload.checksum_algorithm, "content_type": upload.content_type,
        }
        if upload.protocol not in SEQUENTIAL_PROTOCOLS and upload.total_parts is not None:
            present = {part.part_number for part in upload.parts}
            body["total_parts"] = upload.total_parts
            body["missing_parts"] = [n for n in range(1, upload.total_parts + 1) if n not in present]
        if upload.result is not None:
            body["result"] = upload.result
        return body

    async def put_part(self, upload: Upload, part_number: int, body: AsyncIterable[bytes], *,
                       expected_size: int | None = None, size_hint: int | None = None, md5: str | None = None,
                       checksums: dict[str, str] | None = None) -> Part:
        """Store one part from a request body (multipart proxy, indexed sessions): parts.put_part."""
        return await parts.put_part(self, upload, part_number, body, expected_size=expected_size,
                                    size_hint=size_hint, md5=md5, checksums=checksums)

    async def presign_part(self, upload: Upload, part_number: int, *, md5: str | None = None,
                           checksum: str | None = None) -> str:
        """A presigned S3 UploadPart URL (the client PUTs straight to storage): parts.presign_part."""
        return await parts.presign_part(self, upload, part_number, md5=md5, checksum=checksum)

    async def register_part(self, upload: Upload, part_number: int, etag: str,
                            checksum: str | None = None) -> Part:
        """Record a part the client uploaded through a presigned URL: parts.register_part."""
        return await parts.register_part(self, upload, part_number, etag, checksum)

    async def append(self, upload: Upload, offset: int, body: AsyncIterable[bytes], *,
                     length: int | None = None, final: bool = False,
                     chunk_checksum: ChunkChecksum | Callable[[], ChunkChecksum | None] | None = None,
                     max_bytes: int | None = None, steal: bool = False, body_length: int | None = None) -> Upload:
        """Append a request body at `offset` (offset chunks, tus PATCH, IETF PATCH): sequential.append."""
        return await sequential.append(self, upload, offset, body, length=length, final=final,
                                       chunk_checksum=chunk_checksum, max_bytes=max_bytes, steal=steal,
                                       body_length=body_length)

    async def complete(self, upload: Upload, *, parts: list[dict[str, Any]] | None = None,
                       target: tuple[str, str] | None = None, sha256: str | None = None) -> dict[str, Any]:
        """Assemble and publish; returns the file info: completion.complete."""
        return await completion.complete(self, upload, parts=parts, target=target, sha256=sha256)

    async def take_over(self, upload: Upload, *, grace: float = 2.0) -> Upload:
        """Fence off the request writing this upload now, if any: sequential.take_over."""
        return await sequential.take_over(self, upload, grace=grace)

    async def concatenate(self, final: Upload, sources: list[Upload]) -> dict[str, Any]:
        """Build `final` from completed source uploads (tus concatenation): concat.concatenate."""
        return await concat.concatenate(self, final, sources)

    async def finals_waiting_for(self, source_id: str) -> list[Upload]:
        """Open final uploads whose concat_sources name `source_id`: concat.finals_waiting_for."""
        return await concat.finals_waiting_for(self, source_id)

    async def abort(self, upload: Upload) -> None:
        """Cancel: any in-flight writer loses its lease, the MPU is aborted and staging deleted.
        The published object of a completed upload stays; its retained staging copy goes."""
        async with transaction(self.pool) as cur:
            await cur.execute(
                """UPDATE uploads SET state = 'aborted', writer = NULL, writer_instance = NULL, writer_until = NULL,
                       updated_at = now() WHERE id = %s AND state IN ('open', 'completed') RETURNING *""",
                (upload.id,))
            row = await cur.fetchone()
            if row is None:
                await cur.execute("SELECT state FROM uploads WHERE id = %s", (upload.id,))
                state = await cur.fetchone()
                if state is not None and state["state"] == COMPLETING:
                    raise Conflict("upload is being completed")
                raise NotFound("upload not found")
            await cur.execute("DELETE FROM upload_part_leases WHERE upload_id = %s", (upload.id,))
        for lease in list(self.local_leases.values()):
            if lease.upload_id == upload.id:
                lease.lost.set()
        await self.release_storage(Upload.from_row(row))

    async def abort_bucket(self, bucket_id: str) -> int:
        """Abort every unfinished upload into a bucket (call before deleting the bucket, whose
        rows would otherwise cascade away and leave their S3 parts to the orphan sweep)."""
        async with cursor(self.pool) as cur:
            await cur.execute("SELECT * FROM uploads WHERE bucket_id = %s AND state IN ('open', 'completed')",
                              (bucket_id,))
            rows = await cur.fetchall()
        count = 0
        for row in rows:
            with contextlib.suppress(NotFound, Conflict):
                await self.abort(Upload.from_row(row))
                count += 1
        return count

    async def reap(self, *, batch: int = 50, orphans: bool = True) -> dict[str, int]:
        """One reaper pass: reaper.reap."""
        return await reaper.reap(self, batch=batch, orphans=orphans)
