"""Completion, last steps: verify a staged upload's sha256 (from the frontier of its received parts
or by one streaming read) and publish it by a server-side copy; a mismatch publishes nothing. An
upload assembled at its target (hashed as it came) is published already: it gets its sha256 in
the object's metadata, and later publications copy from it while it is unchanged.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, Conflict, Gone
from ..storage import ObjectNotFound, SourceChanged, StorageError, metadata_value
from .common import READ_CHUNK, normal_etag
from .leases import Lease
from .model import COMPLETED, Upload
from .objects import UploadObjects
from .table import UploadTable

if TYPE_CHECKING:
    from ..metrics import Metrics

log = logging.getLogger("sagestore.uploads")


class Publisher:
    """Verifies an assembled upload's sha256 and makes it an object of its bucket."""

    def __init__(self, table: UploadTable, objects: UploadObjects, metrics: "Metrics") -> None:
        self.table = table
        self.objects = objects
        self.store = objects.store
        self.mapping = objects.mapping
        self.metrics = metrics


    async def assembled_sha256(self, upload: Upload) -> str:
        """Stream the assembled staging object once and remember its sha256."""
        assembled = dict((upload.result or {}).get("assembled") or {})
        if assembled.get("sha256"):
            return assembled["sha256"]
        stream = await self.store.open(self.objects.mpu(upload))
        if stream is None:
            raise Gone("the assembled upload is no longer stored")
        self.metrics.sha256_verifications.labels("read_back").inc()
        digest = hashlib.sha256()
        async for chunk in stream.chunks(READ_CHUNK):
            digest.update(chunk)
        assembled["sha256"] = digest.hexdigest()
        result = dict(upload.result or {})
        result["assembled"] = assembled
        upload.result = result
        await self.table.record_result(upload.id, result, touch=False)
        return assembled["sha256"]


    async def publish_staged(self, upload: Upload, target: tuple[str, str] | None, sha256: str | None, *,
                             lease: Lease | None) -> dict[str, Any]:
        """Verify (sha256) then copy the assembled object to its target, server-side."""
        assembled = upload.result["assembled"]
        actual = await self.assembled_sha256(upload) if sha256 else assembled.get("sha256")
        if sha256 and actual != sha256:
            if lease is not None:
                await self.mark_completed(upload, upload.result, lease)
            raise BadRequest(f"sha256 mismatch: expected {sha256}, the upload has {actual}; nothing was published",
                             code="Sha256Mismatch", sha256=actual)
        bucket_id, key = target if target is not None else (upload.bucket_id, upload.key)
        if bucket_id is None:
            # no target (e.g. a tus partial upload): the assembled object stays for concatenation
            if lease is not None:
                await self.mark_completed(upload, upload.result, lease)
            return {"upload_id": upload.id, "size": assembled["size"], "sha256": actual, "assembled": True}
        destination = self.mapping.object(bucket_id, key)
        metadata = {"owner": metadata_value(upload.owner)}
        if actual:
            metadata["sha256"] = actual
        try:
            # not staged: the source is the upload's own published target, which may have been replaced
            # since (checked here too, for backends that ignore the copy's if-match)
            if not upload.staged:
                source = await self.store.head(self.objects.mpu(upload))
                if source is None or normal_etag(source.etag) != normal_etag(assembled["etag"]):
                    raise SourceChanged("PreconditionFailed", "the published object changed")
            etag = await self.store.copy(self.objects.mpu(upload), destination, content_type=upload.content_type,
                                         metadata=metadata, size=assembled["size"],
                                         if_match=None if upload.staged else assembled["etag"])
        except (SourceChanged, ObjectNotFound):
            raise Gone(f"the upload was published at {upload.key} and that object has been replaced or deleted "
                       "since; upload the file again") from None
        info = self.file_info_of(upload, bucket_id, key, assembled["size"], etag, actual)
        result = dict(upload.result)
        if upload.staged:  # otherwise "file" stays the upload's own target, where it was assembled
            result["file"] = info
        result.setdefault("published", [])
        result["published"] = [entry for entry in result["published"] if entry.get("key") != key
                               or entry.get("bucket_id") != bucket_id] + [info]
        upload.result = result
        if lease is not None:
            await self.mark_completed(upload, result, lease)
        else:
            await self.table.record_result(upload.id, result)
        return info


    async def publish_in_place(self, upload: Upload, target: tuple[str, str] | None,
                               sha256: str | None, lease: Lease) -> dict[str, Any]:
        """The MPU's key was the target: the object is published. Give it its sha256 (the metadata
        GET's Repr-Digest comes from), then publish a retained upload elsewhere if asked."""
        assembled = upload.result["assembled"]
        actual = assembled.get("sha256")
        if sha256 and actual and sha256 != actual:  # only a retry after a crash gets here
            raise BadRequest(f"sha256 mismatch: expected {sha256}, the upload has {actual}",
                             code="Sha256Mismatch", sha256=actual)
        if actual:
            assembled["etag"] = await self.stamp_sha256(upload, assembled, actual)
        info = self.file_info_of(upload, upload.bucket_id, upload.key, assembled["size"], assembled["etag"], actual)
        result = {"assembled": assembled, "file": info}
        if upload.retain:
            result["published"] = [info]
        upload.result = result
        await self.mark_completed(upload, result, lease)
        if target is not None and (str(target[0]), target[1]) != (upload.bucket_id, upload.key):
            return await self.publish_staged(upload, target, sha256, lease=None)
        return info


    async def stamp_sha256(self, upload: Upload, assembled: dict[str, Any], sha256: str) -> str:
        """Copy the object onto itself with its sha256 in the metadata (SeaweedFS changes only the
        metadata then), unless it was replaced since CompleteMultipartUpload. Returns its ETag; a
        failure leaves the object without the sha256 (GET then sends no Repr-Digest)."""
        try:
            return await self.store.replace_metadata(
                self.objects.mpu(upload), content_type=upload.content_type, size=assembled["size"],
                if_match=assembled["etag"],
                metadata={"owner": metadata_value(upload.owner), "sha256": sha256})
        except Exception as error:  # noqa: BLE001 - the object is whole; only its metadata lacks the sha256
            # a retry after a crash past the stamp: S3 gave the stamped object a new ETag (SeaweedFS keeps it)
            current = None
            with contextlib.suppress(Exception):
                current = await self.store.head(self.objects.mpu(upload))
            if current is not None and current.size == assembled["size"] and current.metadata.get("sha256") == sha256:
                return current.etag
            log.warning("could not record the sha256 of upload %s on its object: %s", upload.id,
                        error.code if isinstance(error, StorageError) else type(error).__name__)
            return assembled["etag"]


    async def publish_completed(self, upload: Upload, target: tuple[str, str] | None,
                                sha256: str | None) -> dict[str, Any]:
        """complete() on a completed upload: the same answer again, or another publication of a retained one."""
        result = upload.result or {}
        own = target is None or (str(target[0]), target[1]) == (upload.bucket_id, upload.key)
        if (upload.retain and not (own and not upload.staged)) or (upload.staged and upload.bucket_id is None):
            if target is None and "file" in result and not sha256:
                return result["file"]
            if target is None and upload.bucket_id is None and not sha256:
                assembled = result["assembled"]
                return {"upload_id": upload.id, "size": assembled["size"], "sha256": assembled.get("sha256"),
                        "assembled": True}
            return await self.publish_staged(upload, target, sha256, lease=None)
        if "file" not in result:
            if upload.staged and sha256:  # an earlier sha256 mismatch: the staged object still waits
                return await self.publish_staged(upload, target, sha256, lease=None)
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


    @staticmethod
    def file_info_of(upload: Upload, bucket_id: str, key: str, size: int, etag: str,
                     sha256: str | None) -> dict[str, Any]:
        info: dict[str, Any] = {"bucket_id": str(bucket_id), "key": key, "size": size, "etag": etag,
                                "content_type": upload.content_type, "upload_id": upload.id}
        if sha256:
            info["sha256"] = sha256
        return info


    async def mark_completed(self, upload: Upload, result: dict[str, Any], lease: Lease) -> None:
        await self.table.complete(upload.id, lease.token, result)
        upload.state = COMPLETED
