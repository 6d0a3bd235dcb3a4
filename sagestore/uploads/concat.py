"""tus concatenation: a final upload built from completed partial uploads (server-side part copies
where S3 allows them), then completed; and finding the finals a partial upload was the last
missing piece of.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..errors import BadRequest, Conflict, Gone, Locked, PayloadTooLarge
from ..limits import max_upload_size
from ..storage import MAX_PART_SIZE, MIN_PART_SIZE
from .common import READ_CHUNK
from .completion import Completer
from .leases import Leases
from .limits import ByteBudget
from .model import COMPLETED, Part, Upload, visible
from .objects import UploadObjects
from .table import UploadTable

if TYPE_CHECKING:
    from ..config import Settings


class Concatenator:
    def __init__(self, table: UploadTable, leases: Leases, objects: UploadObjects, memory: ByteBudget,
                 completer: Completer, settings: "Settings") -> None:
        self.table = table
        self.leases = leases
        self.objects = objects
        self.store = objects.store
        self.memory = memory
        self.completer = completer
        self.settings = settings

    async def assemble(self, final: Upload) -> None:
        """Concatenate a final upload if all its partial uploads are finished. While one is not (or
        another request is assembling it) the final stays as it is: a later call, e.g. when the
        last partial completes, assembles it."""
        try:
            sources = [visible(await self.table.find(source, with_parts=False), final.owner)
                       for source in final.metadata["concat_sources"]]
            await self.concatenate(final, sources)
        except (Locked, Conflict):
            pass

    async def assemble_waiting(self, partial: Upload, may_write: Callable[[str], Awaitable[None]]) -> None:
        """After a partial upload completes: assemble the finals of its owner that name it.
        may_write(bucket_id) raises unless the caller may write the final's bucket."""
        for final in await self.table.finals_waiting_for(partial.id):
            if final.owner == partial.owner:
                await may_write(final.bucket_id)
                await self.assemble(final)

    async def concatenate(self, final: Upload, sources: list[Upload]) -> dict[str, Any]:
        """Build `final` from completed source uploads (tus concatenation) and complete it.

        Sources are completed uploads whose assembled object is kept (created without a target, or
        with retain=True). Each source of at least 5 MiB (and the last one, whatever its size)
        becomes parts of the final MPU by server-side UploadPartCopy; only sources shorter than
        S3's minimum part are read and merged with the bytes that follow (<= 5 MiB in memory).
        Raises Conflict while a source is unfinished (concatenation-unfinished: call again once
        it is). Returns the final upload's file info.
        """
        if not sources:
            raise BadRequest("concatenation needs at least one source upload")
        fresh = [await self._fresh(source) for source in sources]
        for source in fresh:
            if source.state != COMPLETED or "assembled" not in (source.result or {}):
                raise Conflict(f"upload {source.id} is not finished yet")
            if not (source.retain or source.bucket_id is None):
                raise BadRequest(f"upload {source.id} was published, not kept for concatenation")
        total = sum(source.result["assembled"]["size"] for source in fresh)
        maximum = max_upload_size(self.settings)
        if total > maximum:
            raise PayloadTooLarge(f"the partial uploads add up to {total} bytes, more than the maximum upload size "
                                  f"of {maximum} bytes")
        async with self.leases.writing(final.id) as (lease, current):
            if current.offset or current.parts or current.tail_key:
                raise Conflict("the final upload already has bytes")
            if current.length is not None and current.length != total:
                raise BadRequest(f"the final upload is {current.length} bytes but its parts add up to {total}")
            parts = await self._parts_from(current, fresh)
            await self.table.commit_append(current, lease.token, offset=total, length=total, tail_key=None,
                                           tail_size=0, parts=parts, sha256=(None, None), release=False)
        return await self.completer.complete(await self._fresh(final))

    async def _fresh(self, upload: Upload) -> Upload:
        current = await self.table.find(upload.id)
        return current if current is not None else visible(current)

    async def _parts_from(self, final: Upload, sources: list[Upload]) -> list[Part]:
        """The final's parts: part copies of the sources, and the short ones merged in memory."""
        parts: list[Part] = []
        carry = bytearray()

        async def flush() -> None:
            number = len(parts) + 1
            parts.append(await self.objects.send_part(final, number, bytes(carry),
                                                      checksum=self.objects.part_checksum(final, carry)))
            carry.clear()

        async def copy(source: Upload, start: int, end: int) -> None:
            # ranges of <= 5 GiB, each >= 5 MiB except possibly the very last part of the object
            pieces = max(1, -(-(end - start) // MAX_PART_SIZE))
            step = -(-(end - start) // pieces)
            for offset in range(start, end, step):
                stop = min(end, offset + step)
                number = len(parts) + 1
                etag = await self.store.upload_part_copy(self.objects.mpu(final), final.s3_upload_id, number,
                                                         self.objects.mpu(source), (offset, stop - 1))
                parts.append(Part(number, stop - offset, etag))

        async def read(source: Upload, start: int, end: int) -> bytes:
            stream = await self.store.open(self.objects.mpu(source), f"bytes={start}-{end - 1}")
            if stream is None:
                raise Gone(f"the stored bytes of upload {source.id} are gone")
            return b"".join([chunk async for chunk in stream.chunks(READ_CHUNK)])

        async with self.memory.reserve(2 * MIN_PART_SIZE):
            for index, source in enumerate(sources):
                size = source.result["assembled"]["size"]
                last = index == len(sources) - 1
                position = 0
                if carry:
                    take = min(size, MIN_PART_SIZE - len(carry))
                    if take:
                        carry += await read(source, 0, take)
                    position = take
                    if len(carry) >= MIN_PART_SIZE:
                        await flush()
                remaining = size - position
                if remaining <= 0:
                    continue
                if remaining >= MIN_PART_SIZE or (last and not carry):
                    await copy(source, position, size)
                else:
                    carry += await read(source, position, size)
            if carry:
                await flush()
        return parts
