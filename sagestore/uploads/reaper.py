"""The reaper: expired uploads are claimed (FOR UPDATE SKIP LOCKED), their multipart upload aborted
and their staging deleted; multipart uploads and staging objects no live upload knows are swept
after the orphan grace.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import timedelta

from botocore.exceptions import ClientError

from ..db import cursor, transaction
from ..storage import STAGING_PREFIX, Location, error_code
from .common import now
from .core import EngineCore
from .model import Upload

log = logging.getLogger("sagestore.uploads")


async def reap(engine: EngineCore, *, batch: int = 50, orphans: bool = True) -> dict[str, int]:
    """One reaper pass: expire uploads past their expiry (claimed with FOR UPDATE SKIP LOCKED, so
    instances share the work), abort S3 multipart uploads and delete staging objects that no
    live upload knows about (older than the orphan grace), and purge long-dead rows."""
    counts = {"uploads": 0, "multipart_uploads": 0, "staging_objects": 0}
    while True:
        async with transaction(engine.pool) as cur:
            await cur.execute(
                """SELECT * FROM uploads WHERE expires_at < now() AND state IN ('open', 'completing', 'completed')
                   ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED""", (batch,))
            rows = await cur.fetchall()
            for row in rows:
                upload = Upload.from_row(row)
                try:
                    await engine.release_storage(upload)
                except Exception:  # noqa: BLE001 - the next pass tries again
                    log.warning("reaper could not release storage of upload %s", upload.id)
                    continue
                await cur.execute("""UPDATE uploads SET state = 'expired', writer = NULL, writer_instance = NULL,
                                         writer_until = NULL, updated_at = now() WHERE id = %s""", (upload.id,))
                await cur.execute("DELETE FROM upload_part_leases WHERE upload_id = %s", (upload.id,))
                counts["uploads"] += 1
        if len(rows) < batch:
            break
    if orphans:
        for s3_bucket in engine.mapping.all_s3_buckets():
            try:
                counts["multipart_uploads"] += await reap_orphan_mpus(engine, s3_bucket)
                counts["staging_objects"] += await reap_orphan_staging(engine, s3_bucket)
            except ClientError as error:
                if error_code(error) != "NoSuchBucket":
                    log.warning("reaper could not sweep %s: %s", s3_bucket, error_code(error))
    async with cursor(engine.pool) as cur:
        await cur.execute("DELETE FROM uploads WHERE state IN ('aborted', 'expired')"
                          " AND updated_at < now() - interval '7 days'")
    for what, count in counts.items():
        if count:
            engine.metrics.reaped.labels(what).inc(count)
    return counts


async def known_upload_ids(engine: EngineCore, s3_upload_ids: list[str]) -> set[str]:
    async with cursor(engine.pool) as cur:
        await cur.execute("SELECT s3_upload_id FROM uploads WHERE s3_upload_id = ANY(%s)"
                          " AND state IN ('open', 'completing')", (s3_upload_ids,))
        return {row["s3_upload_id"] for row in await cur.fetchall()}


async def reap_orphan_mpus(engine: EngineCore, s3_bucket: str) -> int:
    listed = await engine.store.list_multipart_uploads(s3_bucket)
    cutoff = now() - timedelta(seconds=engine.orphan_grace)
    old = [item for item in listed if item.get("Initiated") is None or item["Initiated"] <= cutoff]
    if not old:
        return 0
    known = await known_upload_ids(engine, [item["UploadId"] for item in old])
    count = 0
    for item in old:
        if item["UploadId"] not in known:
            await engine.store.abort_multipart(Location(s3_bucket, item["Key"]), item["UploadId"])
            count += 1
    return count


async def reap_orphan_staging(engine: EngineCore, s3_bucket: str) -> int:
    """Staging objects of uploads that are gone (bucket deleted, row purged, abort interrupted)."""
    count = 0
    token = None
    while True:
        page = await engine.store.list(Location(s3_bucket, f"{STAGING_PREFIX}uploads/"), delimiter="/",
                                       continuation_token=token)
        ids = []
        for prefix in page.common_prefixes:
            with contextlib.suppress(ValueError):
                ids.append(str(uuid.UUID(prefix.rstrip("/").rsplit("/", 1)[-1])))
        if ids:
            async with cursor(engine.pool) as cur:
                await cur.execute("SELECT id::text AS id FROM uploads WHERE id = ANY(%s::uuid[])"
                                  " AND state IN ('open', 'completing', 'completed')", (ids,))
                alive = {row["id"] for row in await cur.fetchall()}
            cutoff = now() - timedelta(seconds=engine.orphan_grace)
            for upload_id in ids:
                if upload_id in alive:
                    continue
                prefix = Location(s3_bucket, f"{STAGING_PREFIX}uploads/{upload_id}/")
                listing = await engine.store.list(prefix, delimiter=None)  # a few objects per upload
                stale = [item.key for item in listing.contents if item.last_modified <= cutoff]
                if stale:
                    count += len(await engine.store.delete(s3_bucket, stale))
        if not page.is_truncated or not page.next_token:
            return count
        token = page.next_token
