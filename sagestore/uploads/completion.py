"""Completion: Completer.complete() holds the upload lease in state `completing`, assembles the
object (the plan, the staged tail as last part, CompleteMultipartUpload), then verifies and
publishes it (publish.py).
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from ..limits import max_upload_size
from ..storage import Location, ObjectNotFound, StorageRefused, metadata_value, validate_key
from .common import normal_etag, s3_bad_request, validate_sha256
from .frontier import Sha256Frontiers
from .leases import Lease, Leases
from .model import COMPLETED, Part, Upload
from .objects import UploadObjects
from .ordered import InOrderHashing, hashes_in_order
from .plan import Plan, plan_parts
from .publish import Publisher
from .table import UploadTable

if TYPE_CHECKING:
    from ..config import Settings
    from ..metrics import Metrics


class Completer:
    """Assembles and publishes uploads."""

    def __init__(self, table: UploadTable, leases: Leases, objects: UploadObjects, frontiers: Sha256Frontiers,
                 in_order: InOrderHashing, publisher: Publisher, settings: "Settings", metrics: "Metrics") -> None:
        self.table = table
        self.leases = leases
        self.objects = objects
        self.store = objects.store
        self.frontiers = frontiers
        self.in_order = in_order
        self.publisher = publisher
        self.settings = settings
        self.metrics = metrics

    async def complete(self, upload: Upload, *, parts: list[dict[str, Any]] | None = None,
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
        current = await self.table.find(upload.id)
        if current is None:
            raise NotFound("upload not found")
        if current.state == COMPLETED:
            return await self.publisher.publish_completed(current, target, sha256)
        if sha256 and current.sha256 and sha256 != current.sha256:
            raise BadRequest("sha256 differs from the one declared when the upload was created")
        if sha256 and not current.staged and current.sha256_so_far is None:
            raise BadRequest("a whole-file sha256 must be declared when the upload is created")
        if hashes_in_order(current) and current.offset != current.length:
            await self.in_order.hash_parked(current)  # chunks that came early, kept aside until their turn
        async with self.leases.writing(upload.id, completing=True) as (lease, current):
            assembled = (current.result or {}).get("assembled")
            if assembled is None:
                if not current.staged:
                    await self.check_running_sha256(lease, current, sha256 or current.sha256)
                assembled = await self.assemble(lease, current, parts)
            current.length = assembled["size"]
            current.result = dict(current.result or {}, assembled=assembled)
            if current.staged:
                result = await self.publisher.publish_staged(current, target, sha256 or current.sha256, lease=lease)
            else:
                result = await self.publisher.publish_in_place(current, target, sha256 or current.sha256, lease)
            await self.objects.delete_staging(current, keep_object=current.retain or current.bucket_id is None)
            self.frontiers.forget(current.id)
            self.metrics.file_uploads.inc()
            self.metrics.bytes_uploaded.inc(assembled["size"])
            return result

    async def assemble(self, lease: Lease, upload: Upload, client_parts: list[dict[str, Any]] | None) -> dict:
        """Turn the parts (+ staged tail) into one S3 object at the MPU's key and record that.
        Until CompleteMultipartUpload succeeds a failure reopens the upload, so the client can fix
        its part list or add bytes and complete again."""
        try:
            plan = await plan_parts(self.objects, upload, client_parts)
            if upload.tail_key:
                number = (plan.parts[-1]["PartNumber"] + 1) if plan.parts else 1
                try:
                    etag = await self.store.upload_part_copy(self.objects.mpu(upload), upload.s3_upload_id, number,
                                                             Location(upload.s3_bucket, upload.tail_key))
                except ObjectNotFound:
                    etag = None  # an earlier attempt completed the MPU already: finish_mpu checks that
                plan.parts.append({"PartNumber": number, "ETag": etag})
                plan.recorded.append(Part(number, upload.tail_size, etag or ""))
                plan.size += upload.tail_size
            maximum = max_upload_size(self.settings)
            if plan.size > maximum:
                raise PayloadTooLarge(f"the parts add up to {plan.size} bytes, more than the maximum upload size of "
                                      f"{maximum} bytes; nothing was published", max_upload_size=maximum)
            info = await self.finish_mpu(upload, plan)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.table.reopen(upload.id, lease.token))
            raise
        assembled = {"size": plan.size, "etag": info["etag"]}
        if upload.sha256_so_far is not None and upload.offset == plan.size:
            hashed = upload.sha256_so_far  # a sequential upload, hashed as its bytes came
        else:
            hashed = None if upload.tail_key else self.frontiers.sha256(
                upload.id, [(part.part_number, normal_etag(part.etag)) for part in plan.recorded])
        if hashed:
            assembled["sha256"] = hashed  # of exactly these parts' bytes, as received: no read-back
            self.metrics.sha256_verifications.labels("received").inc()
        await self.table.record_assembly(upload.id, lease.token, [part for part in plan.recorded if part.etag],
                                         plan.size, {"assembled": assembled})
        return assembled

    async def check_running_sha256(self, lease: Lease, upload: Upload, expected: str | None) -> None:
        """A hashed upload is assembled at its target, so a wrong sha256 must be caught before that:
        nothing is published and the upload stays open (the client may still fix it)."""
        if hashes_in_order(upload) and upload.offset != upload.length:
            # complete() ran hash_parked first, so this is never expected; but unhashed bytes must
            # not be published as verified, whatever the path here
            await self.table.reopen(upload.id, lease.token)
            raise Conflict("some chunks of this session are not verified yet; complete again",
                           code="ChunksUnverified")
        if not expected or upload.sha256_so_far is None or (upload.length is not None
                                                             and upload.offset != upload.length):
            return  # nothing to check, or assemble() refuses the unfinished upload itself
        if upload.sha256_so_far != expected:
            await self.table.reopen(upload.id, lease.token)
            raise BadRequest(f"sha256 mismatch: expected {expected}, the upload has {upload.sha256_so_far}; "
                             "nothing was published", code="Sha256Mismatch", sha256=upload.sha256_so_far)

    async def finish_mpu(self, upload: Upload, plan: Plan) -> dict[str, Any]:
        """CompleteMultipartUpload (an empty upload becomes an empty object); safe to retry."""
        location = self.objects.mpu(upload)
        if not plan.parts:
            await self.store.abort_multipart(location, upload.s3_upload_id)
            etag = await self.store.put_bytes(location, b"", content_type=upload.content_type,
                                              metadata={"owner": metadata_value(upload.owner)})
            return {"etag": etag}
        try:
            if any(part["ETag"] is None for part in plan.parts):
                raise ObjectNotFound("NoSuchUpload", "the multipart upload was completed before")
            etag = await self.store.complete_multipart(location, upload.s3_upload_id, plan.parts)
        except ObjectNotFound:
            # a retry after a crash between CompleteMultipartUpload and our commit
            info = await self.store.head(location)
            if info is not None and info.size == plan.size:
                return {"etag": info.etag}
            raise Conflict("the upload's storage was released; start a new upload") from None
        except StorageRefused as error:
            raise s3_bad_request(error) from None
        return {"etag": etag}
