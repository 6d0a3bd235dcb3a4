"""Client and proxied parts (multipart proxy, indexed sessions): a part sent through the server
(put_part), a presigned part URL (presign_part) and recording what the client stored there
(register_part).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterable

from ..errors import BadRequest, Conflict, PayloadTooLarge, RequestTimeout, Unsupported
from ..limits import max_upload_size
from ..storage import MAX_PART_SIZE, MAX_PARTS, PartBody
from .checksums import MultiDigest, decode_b64, normalize_algorithm
from .common import (SEQUENTIAL_PROTOCOLS, S3_INVALID_PART, BodyCutOff, LeaseLost, chunks_with_idle_timeout,
                     normal_etag, now)
from .frontier import Sha256Frontiers
from .leases import Leases
from .limits import ByteBudget, UserSlots
from .model import OPEN, DigestMismatch, Part, Upload
from .objects import UploadObjects
from .ordered import InOrderHashing, hashes_in_order
from .table import UploadTable

if TYPE_CHECKING:
    from ..config import Settings


class PartWriter:
    """Parts of indexed and multipart uploads, each under its own part lease."""

    def __init__(self, table: UploadTable, leases: Leases, objects: UploadObjects, memory: ByteBudget,
                 slots: UserSlots, frontiers: Sha256Frontiers, in_order: InOrderHashing, settings: "Settings", *,
                 presign_seconds: int) -> None:
        self.table = table
        self.leases = leases
        self.objects = objects
        self.memory = memory
        self.slots = slots
        self.frontiers = frontiers
        self.in_order = in_order
        self.settings = settings
        self.presign_seconds = presign_seconds

    async def put_part(self, upload: Upload, part_number: int, body: AsyncIterable[bytes], *,
                       expected_size: int | None = None, size_hint: int | None = None, md5: str | None = None,
                       checksums: dict[str, str] | None = None) -> Part:
        """Store one part from a request body (multipart proxy, indexed sessions).

        The body is buffered (<= one part; memory capped by the engine's byte budget) while the
        requested digests are computed; Content-MD5 (base64 md5) and `checksums` ({algorithm:
        base64}) are verified before anything reaches S3, so a mismatch stores nothing (400).
        expected_size, when given, is the exact size the part must have. Retrying a part number
        replaces it; two concurrent writes of one part number: the second gets 423.
        """
        if upload.protocol in SEQUENTIAL_PROTOCOLS:
            raise BadRequest(f"{upload.protocol} uploads take appends at an offset, not parts")
        if not isinstance(part_number, int) or not 1 <= part_number <= MAX_PARTS:
            raise BadRequest(f"part number must be between 1 and {MAX_PARTS}")
        wanted: dict[str, bytes] = {}
        if md5:
            wanted["md5"] = decode_b64(md5, "md5")
        for algorithm, value in (checksums or {}).items():
            name = normalize_algorithm(algorithm)
            wanted[name] = decode_b64(value, name)
        algorithms = set(wanted)
        if upload.checksum_algorithm:
            algorithms.add(normalize_algorithm(upload.checksum_algorithm))
        # a proxied part or chunk is buffered whole (its digests are checked before S3 sees it), so it
        # is at most the max chunk size; parts sent to a presigned URL may reach S3's 5 GiB
        cap = min(MAX_PART_SIZE, self.settings.max_chunk_size)
        if expected_size is not None and expected_size > cap:
            raise PayloadTooLarge(f"chunk {part_number} would be {expected_size} bytes, more than the maximum chunk "
                                  f"size of {cap} bytes", max_chunk_size=cap)
        limit = expected_size if expected_size is not None else cap
        too_long = (lambda: BadRequest(f"part {part_number} must be {expected_size} bytes; the body is longer")) \
            if expected_size is not None else (lambda: PayloadTooLarge(
                f"a part sent through the server is at most {cap} bytes (the maximum chunk size); send larger "
                "parts to a presigned URL", max_chunk_size=cap))
        if size_hint is not None and size_hint > limit:
            raise (BadRequest(f"part {part_number} must be {expected_size} bytes, got {size_hint}")
                   if expected_size is not None else too_long())
        if size_hint is not None:
            await self.check_parts_total(upload, part_number, size_hint)
        async with self.slots.hold(upload.owner):
            async with self.memory.reserve() as reservation, self.leases.part_writer(upload.id) as lease:
                await self.leases.acquire_part(lease, part_number, wait=False)
                digest = MultiDigest(algorithms)
                # its blocks follow the bytes received (and the budget reserved for them), never the declared size
                buffer = PartBody(limit)
                received = 0
                try:
                    async for chunk in chunks_with_idle_timeout(body, self.leases.seconds):
                        if lease.lost.is_set():
                            raise LeaseLost("another request took over this part")
                        if received + len(chunk) > limit:
                            raise too_long()
                        await reservation.grow_to(buffer.allocated_after(len(chunk)))
                        buffer.write(chunk)
                        received += len(chunk)
                        digest.update(chunk)
                except BodyCutOff as cut:
                    if isinstance(cut.__cause__, RequestTimeout):
                        raise cut.__cause__ from None
                    raise BadRequest(f"the body of part {part_number} was cut off; nothing was stored") from None
                if size_hint is not None and received != size_hint:
                    raise BadRequest(f"part {part_number}: Content-Length was {size_hint} but {received} bytes came")
                if expected_size is not None and received != expected_size:
                    raise BadRequest(f"part {part_number} must be {expected_size} bytes, got {received}")
                for name, raw in wanted.items():
                    if digest.raw(name) != raw:
                        raise DigestMismatch(f"{'Content-MD5' if name == 'md5' else name} of part {part_number} "
                                             f"does not match its bytes (computed {digest.b64(name)}); nothing was "
                                             "stored", code="BadDigest")
                checksum = digest.b64(normalize_algorithm(upload.checksum_algorithm)) \
                    if upload.checksum_algorithm else None
                await self.check_parts_total(upload, part_number, received)
                buffer.truncate()
                if hashes_in_order(upload):
                    try:
                        part = await self.in_order.already_hashed(upload, part_number, buffer)
                        if part is None:
                            part = await self.objects.send_part(upload, part_number, buffer, content_md5=md5,
                                                                checksum=checksum)
                            turn = await self.in_order.hash_in_turn(lease, upload, part, buffer)
                            if turn is None:
                                await self.in_order.park(upload, part, buffer)
                            await self.table.record_part(upload.id, part, lease.token, in_order=turn)
                            self.in_order.turns.notify(upload.id)
                    finally:
                        buffer.close()
                    return part
                part = await self.objects.send_part(upload, part_number, buffer, content_md5=md5, checksum=checksum)
                await self.table.record_part(upload.id, part, lease.token)
                if not await self.frontiers.offer(upload.id, part_number, normal_etag(part.etag), buffer):
                    buffer.close()
        return part

    async def check_parts_total(self, upload: Upload, part_number: int, size: int) -> None:
        """413 when this part with the other recorded parts goes past the max upload size."""
        others = await self.table.parts_total_except(upload.id, part_number)
        maximum = max_upload_size(self.settings)
        if others + size > maximum:
            raise PayloadTooLarge(f"with part {part_number} the upload would be {others + size} bytes, more than "
                                  f"the maximum of {maximum} bytes; nothing was stored", max_upload_size=maximum)

    async def presign_part(self, upload: Upload, part_number: int, *, md5: str | None = None,
                           checksum: str | None = None) -> str:
        """A presigned S3 UploadPart URL (the client PUTs straight to storage). With md5 the client
        must send that Content-MD5; with checksum (base64, in the upload's checksum algorithm) that
        x-amz-checksum-* header. Valid for an hour, never past the upload's expiry."""
        if upload.state != OPEN:
            raise Conflict("upload is not open")
        if not self.objects.store.capabilities.presigned_urls:
            raise Unsupported("this server's storage gives no presigned URLs; send the parts through the server")
        if not isinstance(part_number, int) or not 1 <= part_number <= MAX_PARTS:
            raise BadRequest(f"part number must be between 1 and {MAX_PARTS}")
        params: dict[str, Any] = {"UploadId": upload.s3_upload_id, "PartNumber": part_number}
        if md5:
            decode_b64(md5, "md5")
            params["ContentMD5"] = md5
        if checksum:
            if not upload.checksum_algorithm:
                raise BadRequest("checksum needs an upload created with a checksum_algorithm")
            decode_b64(checksum, normalize_algorithm(upload.checksum_algorithm))
            params["Checksum" + upload.checksum_algorithm] = checksum
        remaining = int((upload.expires_at - now()).total_seconds())
        expires = max(1, min(self.presign_seconds, remaining))
        return await self.objects.store.presign("upload_part", self.objects.mpu(upload), expires, **params)

    async def register_part(self, upload: Upload, part_number: int, etag: str, checksum: str | None = None) -> Part:
        """Record a part the client uploaded through a presigned URL, after checking S3 has it."""
        listed = await self.objects.listed_parts(upload)
        wanted = normal_etag(etag)
        for item in listed.get(part_number, []):
            if normal_etag(item["ETag"]) == wanted:
                part = Part(part_number, int(item["Size"]), item["ETag"], checksum)
                await self.table.register_part(upload.id, part)
                return part
        raise BadRequest(S3_INVALID_PART, code="InvalidPart")
