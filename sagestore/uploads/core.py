"""The low module of the upload engine: what every step shares. The pool, the object store, the
settings and budgets, loading and reloading an upload row, staging keys, the upload and part
leases, and sending and recording parts.

Above it, one module per step: sequential (append, take_over), parts (client and proxied parts),
completion (plan, publish), concat (tus concatenation) and reaper; they call EngineCore only, never
each other in a circle. UploadEngine (engine.py), the facade handlers call, is an EngineCore.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from typing import Any, AsyncIterator

from botocore.exceptions import ClientError

from ..db import cursor, transaction
from ..errors import Conflict, Gone, Locked, NotFound
from ..storage import STAGING_PREFIX, Location, PartBody, is_not_found
from .checksums import MultiDigest, normalize_algorithm
from .common import LeaseLost, s3_bad_request
from .frontier import Sha256Frontiers
from .leases import InstanceLiveness, Lease, lease_held, new_token, renew_forever
from .limits import ByteBudget, UserSlots
from .ordered import ChunkTurns
from .model import ABORTED, COMPLETED, COMPLETING, EXPIRED, OPEN, Part, Upload


class EngineCore:
    """What every step of the upload engine shares: resources, budgets, leases, rows, keys and
    the sending of parts. The steps are functions of an EngineCore (the engine itself)."""

    def __init__(self, pool: Any, store: Any, mapping: Any, settings: Any, metrics: Any, *,
                 lease_seconds: float = 30.0, memory_budget: int | None = None,
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
        # staged parts uploads hash their parts as they come, to spare completion a read-back
        self.frontiers = Sha256Frontiers(self.memory, max_waiting_bytes=self.memory.total // 4)
        # sessions with a declared sha256 (or verify_sha256) hash their chunks in order instead (ordered.py)
        self.turns = ChunkTurns(self.memory.total)
        # S3 multipart uploads nobody knows are aborted only after this long: object PUTs of
        # other layers use short-lived MPUs too
        self.orphan_grace = orphan_grace if orphan_grace is not None else max(settings.upload_ttl, 86400.0)
        self.presign_seconds = presign_seconds
        self.liveness = InstanceLiveness(settings.database_url)
        self.local_leases: dict[str, Lease] = {}

    async def start(self) -> None:
        await self.liveness.start()

    async def close(self) -> None:
        await self.liveness.close()

    # ------------------------------------------------------------------ rows and keys
    def staging(self, upload: Upload | None, name: str, *, upload_id: str | None = None,
                s3_bucket: str | None = None) -> Location:
        upload_id = upload.id if upload else upload_id
        key = f"{STAGING_PREFIX}uploads/{upload_id}/{name}"
        return Location(upload.s3_bucket if upload else s3_bucket, key)

    def staging_prefix(self, upload: Upload) -> Location:
        return Location(upload.s3_bucket, f"{STAGING_PREFIX}uploads/{upload.id}/")

    def mpu(self, upload: Upload) -> Location:
        return Location(upload.s3_bucket, upload.s3_key)

    def ttl(self) -> float:
        return float(self.settings.upload_ttl)

    async def load_row(self, cur: Any, upload_id: str, *, lock: str = "") -> dict[str, Any] | None:
        await cur.execute(f"SELECT *, expires_at < now() AS is_expired FROM uploads WHERE id = %s {lock}",
                          (upload_id,))
        return await cur.fetchone()

    async def load_parts(self, cur: Any, upload_id: str) -> list[Part]:
        await cur.execute("SELECT part_number, size, etag, checksum, md5 FROM upload_parts WHERE upload_id = %s"
                          " ORDER BY part_number", (upload_id,))
        return [Part(**row) for row in await cur.fetchall()]

    async def reload(self, upload_id: str) -> Upload:
        async with cursor(self.pool) as cur:
            row = await self.load_row(cur, upload_id)
            upload = Upload.from_row(row)
            upload.parts = await self.load_parts(cur, upload_id)
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
        async with cursor(self.pool) as cur:
            row = await self.load_row(cur, upload_id)
            if (row is None or (owner is not None and row["owner"] != owner)
                    or (bucket_id is not None and str(row["bucket_id"]) != str(bucket_id))
                    or (key is not None and row["key"] != key) or row["state"] in (ABORTED, EXPIRED)):
                raise NotFound("upload not found")
            if row["is_expired"]:
                raise Gone("upload expired")
            upload = Upload.from_row(row)
            if with_parts:
                upload.parts = await self.load_parts(cur, upload_id)
        return upload

    # ------------------------------------------------------------------ leases
    async def acquire_upload(self, upload_id: str, token: str, *, steal: bool, completing: bool) -> dict[str, Any]:
        """Take the upload lease (and for completion move to `completing`) or raise 404/410/409/423."""
        async with transaction(self.pool) as cur:
            row = await self.load_row(cur, upload_id, lock="FOR UPDATE")
            if row is None or row["state"] in (ABORTED, EXPIRED):
                raise NotFound("upload not found")
            if row["is_expired"]:
                raise Gone("upload expired")
            if row["state"] == COMPLETED or (row["state"] == COMPLETING and not completing):
                raise Conflict("upload is already complete" if row["state"] == COMPLETED
                               else "upload is being completed", offset=row["acknowledged_offset"])
            await cur.execute(f"SELECT {lease_held()} AS held FROM uploads WHERE id = %s", (upload_id,))
            if (await cur.fetchone())["held"] and not steal:
                raise Locked("another request is writing this upload; retry later", headers={"Retry-After": "1"})
            if completing:
                await cur.execute(f"""SELECT count(*) AS n FROM upload_part_leases p WHERE p.upload_id = %s
                                      AND {lease_held('p.')}""", (upload_id,))
                if (await cur.fetchone())["n"]:
                    raise Locked("parts of this upload are still being written; retry when they are done",
                                 headers={"Retry-After": "1"})
            previous = row["writer"]
            await cur.execute(
                """UPDATE uploads SET writer = %s, writer_instance = %s,
                       writer_until = now() + %s * interval '1 second',
                       state = CASE WHEN %s THEN 'completing' ELSE state END
                   WHERE id = %s RETURNING *, expires_at < now() AS is_expired""",
                (token, self.liveness.instance_id, self.lease_seconds, completing, upload_id))
            row = await cur.fetchone()
        if previous and previous in self.local_leases:
            self.local_leases[previous].lost.set()  # a steal within this instance stops the old writer now
        return row

    async def release_lease(self, lease: Lease) -> None:
        self.local_leases.pop(lease.token, None)
        if lease.released:
            return
        async with transaction(self.pool) as cur:
            if lease.holds_upload:
                await cur.execute("UPDATE uploads SET writer = NULL, writer_instance = NULL, writer_until = NULL"
                                  " WHERE id = %s AND writer = %s", (lease.upload_id, lease.token))
            await cur.execute("DELETE FROM upload_part_leases WHERE upload_id = %s AND writer = %s",
                              (lease.upload_id, lease.token))

    @contextlib.asynccontextmanager
    async def writing(self, upload_id: str, *, steal: bool = False,
                      completing: bool = False) -> AsyncIterator[tuple[Lease, Upload]]:
        token = new_token()
        row = await self.acquire_upload(upload_id, token, steal=steal, completing=completing)
        lease = Lease(upload_id, token, self.liveness.instance_id, holds_upload=True)
        self.local_leases[token] = lease
        renewer = asyncio.create_task(renew_forever(self.pool, lease, self.lease_seconds))
        try:
            upload = Upload.from_row(row)
            async with cursor(self.pool) as cur:
                upload.parts = await self.load_parts(cur, upload_id)
            yield lease, upload
        finally:
            renewer.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(self.release_lease(lease))

    @contextlib.asynccontextmanager
    async def part_writer(self, upload_id: str) -> AsyncIterator[Lease]:
        """A lease for writing parts without holding the upload (indexed and multipart parts)."""
        lease = Lease(upload_id, new_token(), self.liveness.instance_id, holds_upload=False)
        self.local_leases[lease.token] = lease
        renewer = asyncio.create_task(renew_forever(self.pool, lease, self.lease_seconds))
        try:
            yield lease
        finally:
            renewer.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(self.release_lease(lease))

    async def acquire_part(self, lease: Lease, part_number: int, *, wait: bool) -> None:
        """Lease one part number. Writers under an upload lease wait for a previous holder (a stolen
        request finishing its UploadPart), so S3 receives same-numbered parts in lease order; others
        get 423."""
        deadline = asyncio.get_running_loop().time() + self.lease_seconds + 5
        while True:
            async with transaction(self.pool) as cur:
                row = await self.load_row(cur, lease.upload_id, lock="FOR SHARE")
                if row is None or row["state"] in (ABORTED, EXPIRED):
                    raise NotFound("upload not found")
                if row["is_expired"]:
                    raise Gone("upload expired")
                if lease.holds_upload and row["writer"] != lease.token:
                    raise LeaseLost("another request took over this upload")
                if row["state"] != OPEN:
                    raise Conflict("upload is " + ("being completed" if row["state"] == COMPLETING
                                                   else "already complete"))
                # one statement decides: a SELECT ... FOR UPDATE locks nothing while no lease row exists
                # yet, so two first writers of a part would both take it; ON CONFLICT serialises them
                await cur.execute(
                    f"""INSERT INTO upload_part_leases (upload_id, part_number, writer, writer_instance, writer_until)
                        VALUES (%s, %s, %s, %s, now() + %s * interval '1 second')
                        ON CONFLICT (upload_id, part_number) DO UPDATE SET writer = EXCLUDED.writer,
                            writer_instance = EXCLUDED.writer_instance, writer_until = EXCLUDED.writer_until
                        WHERE upload_part_leases.writer = EXCLUDED.writer
                            OR NOT {lease_held('upload_part_leases.')}""",
                    (lease.upload_id, part_number, lease.token, lease.instance_id, self.lease_seconds))
                if cur.rowcount == 1:
                    return
            if not wait or asyncio.get_running_loop().time() > deadline:
                raise Locked(f"part {part_number} is being written by another request; retry later",
                             headers={"Retry-After": "1"})
            await asyncio.sleep(0.1)

    async def release_part(self, lease: Lease, part_number: int) -> None:
        async with cursor(self.pool) as cur:
            await cur.execute("DELETE FROM upload_part_leases WHERE upload_id = %s AND part_number = %s"
                              " AND writer = %s", (lease.upload_id, part_number, lease.token))

    # ------------------------------------------------------------------ parts in S3 and their rows
    async def send_part(self, upload: Upload, part_number: int, data: bytes | io.BytesIO | PartBody, *,
                        content_md5: str | None = None, checksum: str | None = None) -> Part:
        """UploadPart. Give an io.BytesIO that owns its bytes (at position 0) to spare a copy: aiohttp
        streams it as it is, while bytes are copied whole on their way out."""
        if isinstance(data, io.BytesIO):
            with data.getbuffer() as view:
                size = view.nbytes
        else:
            size = len(data)
        checksums = {upload.checksum_algorithm: checksum} if upload.checksum_algorithm and checksum else None
        try:
            response = await self.store.upload_part(self.mpu(upload), upload.s3_upload_id, part_number, data,
                                                    content_md5=content_md5, checksums=checksums)
        except ClientError as error:
            if is_not_found(error):
                raise NotFound("upload not found (its storage was released)") from None
            raise s3_bad_request(error) or error
        return Part(part_number, size, response["ETag"], checksum, content_md5)

    def part_checksum(self, upload: Upload, data: bytes | bytearray | io.BytesIO | PartBody) -> str | None:
        if not upload.checksum_algorithm:
            return None
        digest = MultiDigest([upload.checksum_algorithm])
        if isinstance(data, PartBody):
            for view in data.views():
                digest.update(view)
        elif isinstance(data, io.BytesIO):
            with data.getbuffer() as view:
                digest.update(view)
        else:
            digest.update(data)
        return digest.b64(normalize_algorithm(upload.checksum_algorithm))

    async def upsert_parts(self, cur: Any, upload_id: str, parts: list[Part]) -> None:
        for part in parts:
            await cur.execute(
                """INSERT INTO upload_parts (upload_id, part_number, size, etag, checksum, md5)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (upload_id, part_number) DO UPDATE SET size = EXCLUDED.size, etag = EXCLUDED.etag,
                       checksum = EXCLUDED.checksum, md5 = EXCLUDED.md5, created_at = now()""",
                (upload_id, part.part_number, part.size, part.etag, part.checksum, part.md5))

    async def listed_parts(self, upload: Upload) -> dict[int, list[dict[str, Any]]]:
        try:
            listed = await self.store.list_parts(self.mpu(upload), upload.s3_upload_id)
        except ClientError as error:
            if is_not_found(error):
                raise NotFound("upload not found (its storage was released)") from None
            raise
        by_number: dict[int, list[dict[str, Any]]] = {}
        for item in listed:  # some stores list every version of a re-uploaded part
            by_number.setdefault(int(item["PartNumber"]), []).append(item)
        return by_number

    async def release_storage(self, upload: Upload) -> None:
        self.frontiers.forget(upload.id)
        if upload.state != COMPLETED:
            await self.store.abort_multipart(self.mpu(upload), upload.s3_upload_id)
        await self.store.delete_prefix(self.staging_prefix(upload))
