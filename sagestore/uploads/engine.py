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

UploadEngine is what handlers call. Its collaborators each own one step, and get only what
that step needs: UploadTable (table.py, every statement on the upload tables and the state
machine), Leases (leases.py), UploadObjects (objects.py, the upload's bytes in the store),
Appender (appends.py, with its AppendPipeline), PartWriter (parts.py), InOrderHashing (ordered.py),
Completer (completion.py, with plan.py and Publisher in publish.py), Concatenator (concat.py),
PublishJobs (jobs.py) and Reaper (reaper.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any, AsyncIterable, Awaitable, Callable

import aiopg

from ..errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from ..limits import max_upload_size
from ..storage import BucketMapping, Location, ObjectStore, StorageRefused, metadata_value, validate_key
from .appends import Appender
from .checksums import S3_CHECKSUM_ALGORITHMS
from .common import SEQUENTIAL_PROTOCOLS, ChunkChecksum, s3_bad_request, validate_sha256
from .completion import Completer
from .concat import Concatenator
from .frontier import Sha256Frontiers
from .jobs import PublishJobs
from .leases import InstanceLiveness, Leases
from .limits import ByteBudget, UserSlots
from .model import PROTOCOLS, Part, Upload, choose_part_size, visible
from .objects import UploadObjects
from .ordered import ChunkTurns, InOrderHashing
from .parts import PartWriter
from .publish import Publisher
from .reaper import Reaper
from .resumable_sha256 import ResumableSha256, available as resumable_sha256_available
from .table import IllegalTransition, UploadTable

if TYPE_CHECKING:
    from ..config import Settings
    from ..metrics import Metrics


class UploadEngine:
    """The upload state machine: open -> completing -> completed, or aborted / expired."""

    def __init__(self, pool: aiopg.Pool, store: ObjectStore, mapping: BucketMapping, settings: "Settings",
                 metrics: "Metrics", *, lease_seconds: float = 30.0, memory_budget: int | None = None,
                 orphan_grace: float | None = None, presign_seconds: int = 3600) -> None:
        self.pool = pool
        self.store = store
        self.mapping = mapping
        self.settings = settings
        self.metrics = metrics
        self.lease_seconds = lease_seconds
        # every buffered part of every request of this instance, and how many uploads one user may run
        self.memory = ByteBudget(memory_budget if memory_budget is not None else settings.part_buffer_budget,
                                 settings.budget_wait)
        self.slots = UserSlots(settings.uploads_per_user, settings.budget_wait)
        self.liveness = InstanceLiveness(settings.database_url)
        # staged parts uploads hash their parts as they come, to spare completion a read-back
        self.frontiers = Sha256Frontiers(self.memory, max_waiting_bytes=self.memory.total // 4)
        # sessions with a declared sha256 (or verify_sha256) hash their chunks in order instead (ordered.py)
        self.turns = ChunkTurns(self.memory.total)

        self.table = UploadTable(pool, ttl=float(settings.upload_ttl), lease_seconds=lease_seconds)
        self.leases = Leases(self.table, self.liveness, lease_seconds)
        self.objects = UploadObjects(store, mapping)
        self.appender = Appender(self.table, self.leases, self.objects, self.memory, self.slots, settings, metrics)
        in_order = InOrderHashing(self.table, self.leases, self.objects, self.turns)
        self.parts = PartWriter(self.table, self.leases, self.objects, self.memory, self.slots, self.frontiers,
                                in_order, settings, presign_seconds=presign_seconds)
        self.completer = Completer(self.table, self.leases, self.objects, self.frontiers, in_order,
                                   Publisher(self.table, self.objects, metrics), settings, metrics)
        self.concatenator = Concatenator(self.table, self.leases, self.objects, self.memory, self.completer,
                                         settings)
        self.jobs = PublishJobs(self.completer, self.table)
        self.reaper = Reaper(self.table, self.objects, self.frontiers, metrics, orphan_grace=(
            orphan_grace if orphan_grace is not None else max(settings.upload_ttl, 86400.0)))

    async def start(self) -> None:
        await self.liveness.start()

    async def close(self) -> None:
        await self.jobs.close()
        await self.liveness.close()

    @property
    def orphan_grace(self) -> float:
        """How old an S3 multipart upload or staging object no upload knows must be to be swept."""
        return self.reaper.orphan_grace

    @orphan_grace.setter
    def orphan_grace(self, seconds: float) -> None:
        self.reaper.orphan_grace = seconds

    # ------------------------------------------------------------------ opening and finding uploads
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
        maximum = max_upload_size(self.settings)
        if length is not None:
            if not isinstance(length, int) or isinstance(length, bool) or length < 0:
                raise BadRequest("length must be a non-negative integer")
            if length > maximum:
                raise PayloadTooLarge(f"upload of {length} bytes exceeds the maximum of {maximum} bytes")
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
            location = self.objects.staging_at(self.mapping.s3_bucket(bucket_id or upload_id), upload_id, "object")
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
        except StorageRefused as error:
            raise s3_bad_request(error) from None
        try:
            upload = await self.table.create(
                id=upload_id, protocol=protocol, bucket_id=bucket_id, key=key, owner=owner, content_type=content_type,
                metadata=metadata, length=length, part_size=size, part_size_grows=grows, s3_bucket=location.bucket,
                s3_key=location.key, s3_upload_id=s3_upload_id, staged=staged, retain=retain,
                checksum_algorithm=checksum_algorithm, sha256=sha256,
                sha256_state=sha256_state and sha256_state.state(),
                sha256_so_far=sha256_state and sha256_state.hexdigest())
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.abort_multipart(location, s3_upload_id))
            raise
        if staged and sha256 and protocol not in SEQUENTIAL_PROTOCOLS:
            self.frontiers.start(upload_id)
        return upload

    async def get(self, upload_id: str, owner: str | None, *, bucket_id: str | None = None,
                  key: str | None = None, with_parts: bool = True) -> Upload:
        """The upload, for its owner only (owner None: internal use).

        404 when missing, another owner's, another bucket's or key's, aborted, or reaped;
        410 when expired but not yet reaped.
        """
        try:
            upload_id = str(uuid.UUID(str(upload_id)))
        except ValueError:
            raise NotFound("upload not found") from None
        return visible(await self.table.find(upload_id, with_parts=with_parts), owner, bucket_id=bucket_id, key=key)

    async def unfinished(self, owner: str, *, bucket_id: str | None = None, key: str | None = None,
                         limit: int = 1000) -> list[Upload]:
        """The owner's open, unexpired uploads (newest first), optionally of one bucket and key, with
        their parts: what a client needs to resume one with no local state."""
        return await self.table.unfinished(owner, bucket_id=bucket_id, key=key, limit=limit)

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

    # ------------------------------------------------------------------ bytes
    async def put_part(self, upload: Upload, part_number: int, body: AsyncIterable[bytes], *,
                       expected_size: int | None = None, size_hint: int | None = None, md5: str | None = None,
                       checksums: dict[str, str] | None = None) -> Part:
        """Store one part from a request body (multipart proxy, indexed sessions): see PartWriter."""
        return await self.parts.put_part(upload, part_number, body, expected_size=expected_size,
                                         size_hint=size_hint, md5=md5, checksums=checksums)

    async def presign_part(self, upload: Upload, part_number: int, *, md5: str | None = None,
                           checksum: str | None = None) -> str:
        """A presigned S3 UploadPart URL (the client PUTs straight to storage)."""
        return await self.parts.presign_part(upload, part_number, md5=md5, checksum=checksum)

    async def register_part(self, upload: Upload, part_number: int, etag: str,
                            checksum: str | None = None) -> Part:
        """Record a part the client uploaded through a presigned URL."""
        return await self.parts.register_part(upload, part_number, etag, checksum)

    async def copy_part(self, upload: Upload, part_number: int, source: Location,
                        byte_range: tuple[int, int] | None = None) -> Part:
        """A part copied server-side from a stored object (S3's UploadPartCopy), then recorded."""
        etag = await self.store.upload_part_copy(self.objects.mpu(upload), upload.s3_upload_id, part_number, source,
                                                 byte_range)
        return await self.parts.register_part(upload, part_number, etag)

    async def append(self, upload: Upload, offset: int, body: AsyncIterable[bytes], *,
                     length: int | None = None, final: bool = False,
                     chunk_checksum: ChunkChecksum | Callable[[], ChunkChecksum | None] | None = None,
                     max_bytes: int | None = None, steal: bool = False, body_length: int | None = None) -> Upload:
        """Append a request body at `offset` (offset chunks, tus PATCH, IETF PATCH): see Appender."""
        return await self.appender.append(upload, offset, body, length=length, final=final,
                                          chunk_checksum=chunk_checksum, max_bytes=max_bytes, steal=steal,
                                          body_length=body_length)

    async def take_over(self, upload: Upload, *, grace: float = 2.0) -> Upload:
        """Fence off the request writing this upload now, if any (IETF draft, tus)."""
        return await self.appender.take_over(upload, grace=grace)

    # ------------------------------------------------------------------ publishing
    async def complete(self, upload: Upload, *, parts: list[dict[str, Any]] | None = None,
                       target: tuple[str, str] | None = None, sha256: str | None = None) -> dict[str, Any]:
        """Assemble and publish; returns the file info: see Completer."""
        return await self.completer.complete(upload, parts=parts, target=target, sha256=sha256)

    async def publish(self, upload: Upload, bucket_id: str, key: str, sha256: str | None, *,
                      wait: float) -> dict[str, Any] | None:
        """Publish in a job that outlives the request: the file info within `wait` seconds, else None
        while it goes on (offset chunks' import_upload)."""
        return await self.jobs.publish(upload, bucket_id, key, sha256, wait=wait)

    def publishing(self, upload_id: str, bucket_id: str, key: str, sha256: str | None) -> bool:
        """Whether this instance runs that publication job now."""
        return self.jobs.running(upload_id, bucket_id, key, sha256)

    async def concatenate(self, final: Upload, sources: list[Upload]) -> dict[str, Any]:
        """Build `final` from completed source uploads (tus concatenation) and complete it."""
        return await self.concatenator.concatenate(final, sources)

    async def assemble_final(self, final: Upload) -> None:
        """Concatenate a tus final upload once its partial uploads are all finished; until then
        (or while another request assembles it) it stays as it is."""
        await self.concatenator.assemble(final)

    async def assemble_finals_waiting_for(self, partial: Upload, may_write: Callable[[str], Awaitable[None]]) -> None:
        """After a partial upload completes, assemble its owner's finals that name it; may_write(bucket_id)
        raises unless the caller may write that final's bucket."""
        await self.concatenator.assemble_waiting(partial, may_write)

    async def finals_waiting_for(self, source_id: str) -> list[Upload]:
        """Open final uploads whose concat_sources name `source_id`."""
        return await self.table.finals_waiting_for(source_id)

    # ------------------------------------------------------------------ ending
    async def abort(self, upload: Upload) -> None:
        """Cancel: any in-flight writer loses its lease, the MPU is aborted and staging deleted.
        The published object of a completed upload stays; its retained staging copy goes."""
        aborted = await self.table.abort(upload.id)
        self.leases.lose_all(upload.id)
        self.frontiers.forget(upload.id)
        await self.objects.release(aborted)

    async def abort_bucket(self, bucket_id: str) -> int:
        """Abort every unfinished upload into a bucket (call before deleting the bucket, whose
        rows would otherwise cascade away and leave their S3 parts to the orphan sweep)."""
        count = 0
        for upload in await self.table.live_in_bucket(bucket_id):
            with contextlib.suppress(NotFound, Conflict):
                await self.abort(upload)
                count += 1
        return count

    async def reap(self, *, batch: int = 50, orphans: bool = True) -> dict[str, int]:
        """One reaper pass: see Reaper."""
        return await self.reaper.reap(batch=batch, orphans=orphans)


__all__ = ["UploadEngine", "IllegalTransition"]
