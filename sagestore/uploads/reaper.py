"""The reaper: expired uploads are claimed (FOR UPDATE SKIP LOCKED), their multipart upload aborted
and their staging deleted; multipart uploads and staging objects no live upload knows are swept
after the orphan grace.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from ..storage import STAGING_PREFIX, Location, ObjectNotFound, StorageError
from ..storage.errors import UNREACHABLE
from .common import now
from .frontier import Sha256Frontiers
from .objects import UploadObjects
from .table import UploadTable

if TYPE_CHECKING:
    from ..metrics import Metrics

log = logging.getLogger("sagestore.uploads")


class Reaper:
    def __init__(self, table: UploadTable, objects: UploadObjects, frontiers: Sha256Frontiers, metrics: "Metrics", *,
                 orphan_grace: float) -> None:
        self.table = table
        self.objects = objects
        self.store = objects.store
        self.mapping = objects.mapping
        self.frontiers = frontiers
        self.metrics = metrics
        # S3 multipart uploads nobody knows are aborted only after this long: object PUTs of other
        # layers use short-lived MPUs too
        self.orphan_grace = orphan_grace

    async def reap(self, *, batch: int = 50, orphans: bool = True) -> dict[str, int]:
        """One pass: expire uploads past their expiry (claimed with FOR UPDATE SKIP LOCKED, so
        instances share the work), abort S3 multipart uploads and delete staging objects that no
        live upload knows about (older than the orphan grace), and purge long-dead rows."""
        counts = {"uploads": 0, "multipart_uploads": 0, "staging_objects": 0}
        while True:
            async with self.table.expired_batch(batch) as claimed:
                for upload in claimed.uploads:
                    try:
                        self.frontiers.forget(upload.id)
                        await self.objects.release(upload)
                    except Exception:  # noqa: BLE001 - the next pass tries again
                        log.warning("reaper could not release storage of upload %s", upload.id)
                        continue
                    await claimed.expire(upload)
                    counts["uploads"] += 1
            if len(claimed.uploads) < batch:
                break
        if orphans:
            for s3_bucket in self.mapping.all_s3_buckets():
                try:
                    counts["multipart_uploads"] += await self.reap_orphan_mpus(s3_bucket)
                    counts["staging_objects"] += await self.reap_orphan_staging(s3_bucket)
                except StorageError as error:
                    if error.code == UNREACHABLE:
                        raise  # no store to sweep: the pass fails (and the next one tries again)
                    if not (isinstance(error, ObjectNotFound) and error.code == "NoSuchBucket"):
                        log.warning("reaper could not sweep %s: %s", s3_bucket, error.code)
        await self.table.purge_dead()
        for what, count in counts.items():
            if count:
                self.metrics.reaped.labels(what).inc(count)
        return counts

    async def reap_orphan_mpus(self, s3_bucket: str) -> int:
        listed = await self.store.list_multipart_uploads(s3_bucket)
        cutoff = now() - timedelta(seconds=self.orphan_grace)
        old = [item for item in listed if item.get("Initiated") is None or item["Initiated"] <= cutoff]
        if not old:
            return 0
        known = await self.table.known_s3_uploads([item["UploadId"] for item in old])
        count = 0
        for item in old:
            if item["UploadId"] not in known:
                await self.store.abort_multipart(Location(s3_bucket, item["Key"]), item["UploadId"])
                count += 1
        return count

    async def reap_orphan_staging(self, s3_bucket: str) -> int:
        """Staging objects of uploads that are gone (bucket deleted, row purged, abort interrupted)."""
        count = 0
        token = None
        while True:
            page = await self.store.list(Location(s3_bucket, f"{STAGING_PREFIX}uploads/"), delimiter="/",
                                         continuation_token=token)
            ids = []
            for prefix in page.common_prefixes:
                with contextlib.suppress(ValueError):
                    ids.append(str(uuid.UUID(prefix.rstrip("/").rsplit("/", 1)[-1])))
            if ids:
                alive = await self.table.live_ids(ids)
                cutoff = now() - timedelta(seconds=self.orphan_grace)
                for upload_id in ids:
                    if upload_id in alive:
                        continue
                    prefix = Location(s3_bucket, f"{STAGING_PREFIX}uploads/{upload_id}/")
                    listing = await self.store.list(prefix, delimiter=None)  # a few objects per upload
                    stale = [item.key for item in listing.contents if item.last_modified <= cutoff]
                    if stale:
                        count += len(await self.store.delete(s3_bucket, stale))
            if not page.is_truncated or not page.next_token:
                return count
            token = page.next_token
