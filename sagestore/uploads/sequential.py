"""The sequential writer (offset chunks, tus and IETF PATCH): append() checks a request body's
offset and bounds under the upload lease and runs it through the part pipeline
(pipeline.py); take_over() fences off an older writer (IETF draft, tus).
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterable, Callable

from ..db import cursor, transaction
from ..errors import BadRequest, PayloadTooLarge
from .common import SEQUENTIAL_PROTOCOLS, ChunkChecksum
from .core import EngineCore
from .leases import lease_held
from .model import OffsetMismatch, Upload
from .pipeline import AppendPipeline


async def append(engine: EngineCore, upload: Upload, offset: int, body: AsyncIterable[bytes], *,
                 length: int | None = None, final: bool = False,
                 chunk_checksum: ChunkChecksum | Callable[[], ChunkChecksum | None] | None = None,
                 max_bytes: int | None = None, steal: bool = False, body_length: int | None = None) -> Upload:
    """Append a request body at `offset` (offset chunks, tus PATCH, IETF PATCH); returns the
    upload with its new acknowledged offset.

    - offset != acknowledged offset: OffsetMismatch (409, carries `offset`); nothing changes.
    - length declares a deferred length now; final=True says this body ends the upload
      (IETF Upload-Complete: ?1), fixing the length at the new offset.
    - chunk_checksum (algorithm, base64) or a callable returning it after the body (trailers):
      a mismatch raises ChecksumMismatch (460) and nothing of this request is kept.
    - a body beyond max_bytes, the declared length or the max upload size: 413, nothing kept
      (before any byte is read when body_length already says so).
    - budget: the bytes buffered are reserved as they arrive; no budget within the wait: 503,
      nothing kept. One user's appends and parts beyond the per-user cap wait, then 429.
    - a body cut off (disconnect, truncation, idle timeout): every byte the body iterator
      yielded is kept (full parts + a new staged tail) unless a chunk checksum was asked for.
      (aiohttp drops the little it had buffered but not yielded when the connection broke;
      those bytes were never acknowledged, and the next HEAD/status says where to resume.)
    - another writer: 423, or with steal=True this request takes over and the old one stops
      at its next lease check without committing.
    Every full part goes to S3 as soon as it is full (parts_in_flight at a time); when the
    body's length is known (body_length, its Content-Length) a part this body will fill goes
    to S3 while it is being received (PartBody), so receiving and storing overlap. The rest
    becomes a new durable tail object; then one transaction commits offset, tail and parts,
    conditional on the lease; then the previous tail is deleted.
    """
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise BadRequest("offset must be a non-negative integer")
    if upload.protocol not in SEQUENTIAL_PROTOCOLS:
        raise BadRequest(f"{upload.protocol} uploads take parts, not appends")
    if offset < upload.offset:
        # the offset never decreases, so this is a mismatch whoever writes now: no lease needed
        current = await engine.reload(upload.id)
        raise OffsetMismatch(f"offset {offset} does not match the upload's offset {current.offset}",
                             current.offset)
    async with engine.slots.hold(upload.owner):
        async with engine.writing(upload.id, steal=steal) as (lease, current):
            if offset != current.offset:
                raise OffsetMismatch(f"offset {offset} does not match the upload's offset {current.offset}",
                                     current.offset)
            new_length = current.length
            maximum = engine.settings.max_upload_size
            if length is not None:
                if isinstance(length, bool) or not isinstance(length, int) or length < 0:
                    raise BadRequest("length must be a non-negative integer")
                if current.length is not None and current.length != length:
                    raise BadRequest(f"the upload's length is already {current.length}")
                if length < offset:
                    raise BadRequest(f"length {length} is smaller than the bytes already received ({offset})")
                if length > maximum:
                    raise PayloadTooLarge(f"upload exceeds the maximum of {maximum} bytes")
                new_length = length
            # the tightest of: the declared length, the caller's per-request cap, the max upload size
            bounds = [(maximum - offset, f"the upload would exceed the maximum upload size of {maximum} bytes")]
            if new_length is not None:
                bounds.append((new_length - offset, "the body goes past the upload's length"))
            if max_bytes is not None:
                bounds.append((max_bytes, f"a request body is at most {max_bytes} bytes here"))
            limit, too_large = min(bounds)
            if body_length is not None and body_length > limit:
                raise PayloadTooLarge(too_large)  # before any byte is read: nothing is kept
            return await AppendPipeline(engine, lease, current, body, new_length, final, chunk_checksum,
                                        limit, body_length, too_large).run()


async def take_over(engine: EngineCore, upload: Upload, *, grace: float = 2.0) -> Upload:
    """Fence off the request writing this upload now, if any, and return the upload as committed.

    The IETF draft's rule for a new request while an older one still transfers (the client has
    given up on it): the old one is cut off. First the old writer gets `grace` seconds to finish
    on its own: a request whose body was cut off is usually just committing the bytes it got,
    and those are kept. After that its lease is cleared in PostgreSQL, so whichever instance
    runs it, its commit fails and nothing it has not committed is kept; the offset returned is
    therefore the one the next append must use. A writer in this instance stops at once; one in
    another instance at its next lease renewal or commit at the latest.
    """
    deadline = asyncio.get_running_loop().time() + grace
    waited = False
    while True:
        async with cursor(engine.pool) as cur:
            await cur.execute(f"SELECT state = 'open' AND {lease_held()} AS held FROM uploads WHERE id = %s",
                              (upload.id,))
            row = await cur.fetchone()
        if row is None or not row["held"]:
            if waited:
                engine.metrics.takeovers.labels("finished").inc()
            return await engine.get(upload.id, None)
        if asyncio.get_running_loop().time() >= deadline:
            break
        waited = True
        await asyncio.sleep(0.05)
    engine.metrics.takeovers.labels("fenced").inc()
    previous = None
    async with transaction(engine.pool) as cur:
        await cur.execute("SELECT writer FROM uploads WHERE id = %s AND state = 'open' FOR UPDATE", (upload.id,))
        row = await cur.fetchone()
        if row is not None and row["writer"] is not None:
            previous = row["writer"]
            await cur.execute("UPDATE uploads SET writer = NULL, writer_instance = NULL, writer_until = NULL"
                              " WHERE id = %s", (upload.id,))
    if previous in engine.local_leases:
        engine.local_leases[previous].lost.set()
    return await engine.get(upload.id, None)
