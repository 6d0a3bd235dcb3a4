"""tus concatenation: a final upload built from completed partial uploads (server-side part copies
where S3 allows them), then completed.
"""
from __future__ import annotations

from typing import Any

from ..db import cursor
from ..errors import BadRequest, Conflict, Gone, PayloadTooLarge
from ..storage import MAX_PART_SIZE, MIN_PART_SIZE
from .common import READ_CHUNK
from .completion import complete
from .core import EngineCore
from .model import COMPLETED, Part, Upload
from .pipeline import commit_append


async def concatenate(engine: EngineCore, final: Upload, sources: list[Upload]) -> dict[str, Any]:
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
    fresh = [await engine.reload(source.id) for source in sources]
    for source in fresh:
        if source.state != COMPLETED or "assembled" not in (source.result or {}):
            raise Conflict(f"upload {source.id} is not finished yet")
        if not (source.retain or source.bucket_id is None):
            raise BadRequest(f"upload {source.id} was published, not kept for concatenation")
    total = sum(source.result["assembled"]["size"] for source in fresh)
    if total > engine.settings.max_upload_size:
        raise PayloadTooLarge(f"the partial uploads add up to {total} bytes, more than the maximum upload size "
                              f"of {engine.settings.max_upload_size} bytes")
    async with engine.writing(final.id) as (lease, current):
        if current.offset or current.parts or current.tail_key:
            raise Conflict("the final upload already has bytes")
        if current.length is not None and current.length != total:
            raise BadRequest(f"the final upload is {current.length} bytes but its parts add up to {total}")
        parts: list[Part] = []
        carry = bytearray()

        async def flush() -> None:
            number = len(parts) + 1
            parts.append(await engine.send_part(current, number, bytes(carry),
                                                checksum=engine.part_checksum(current, carry)))
            carry.clear()

        async def copy(source: Upload, start: int, end: int) -> None:
            # ranges of <= 5 GiB, each >= 5 MiB except possibly the very last part of the object
            pieces = max(1, -(-(end - start) // MAX_PART_SIZE))
            step = -(-(end - start) // pieces)
            for offset in range(start, end, step):
                stop = min(end, offset + step)
                number = len(parts) + 1
                etag = await engine.store.upload_part_copy(engine.mpu(current), current.s3_upload_id, number,
                                                           engine.mpu(source), (offset, stop - 1))
                parts.append(Part(number, stop - offset, etag))

        async def read(source: Upload, start: int, end: int) -> bytes:
            stream = await engine.store.open(engine.mpu(source), f"bytes={start}-{end - 1}")
            if stream is None:
                raise Gone(f"the stored bytes of upload {source.id} are gone")
            return b"".join([chunk async for chunk in stream.chunks(READ_CHUNK)])

        async with engine.memory.reserve(2 * MIN_PART_SIZE):
            for index, source in enumerate(fresh):
                size = source.result["assembled"]["size"]
                last = index == len(fresh) - 1
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
        await commit_append(engine, lease, current, total, total, parts, None, 0, sha256=(None, None))
    final = await engine.reload(final.id)
    return await complete(engine, final)


async def finals_waiting_for(engine: EngineCore, source_id: str) -> list[Upload]:
    """Open final uploads whose concat_sources name `source_id` (tus concatenation-unfinished:
    after a partial upload completes, concatenate() each final whose sources are now all done)."""
    async with cursor(engine.pool) as cur:
        await cur.execute("""SELECT *, expires_at < now() AS is_expired FROM uploads
                             WHERE state = 'open' AND metadata -> 'concat_sources' ? %s""", (str(source_id),))
        return [Upload.from_row(row) for row in await cur.fetchall()]
