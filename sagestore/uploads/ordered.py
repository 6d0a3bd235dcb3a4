"""Indexed sessions that declare a whole-file sha256 (or ask verifySha256, giving it at completion)
hash their chunks in order, and commit the hash state with each chunk, as sequential uploads do
with each offset. Completion then knows the sha256
before CompleteMultipartUpload, so such a session is assembled at its target: no staging key for
the file, no read-back of it, no server-side copy of it.

Chunks still come in any order and in parallel. A chunk is stored as its S3 part as soon as its
bytes are in, then:
- when the chunks before it are hashed, it is hashed from memory and acknowledged;
- otherwise it waits, holding its bytes, for them to be hashed (on this instance or another; a
  waiter here is woken at once, one elsewhere polls PostgreSQL);
- when no live request is sending the chunk at the head of the line, or it does not come within
  `wait_seconds`, or waiting chunks would hold more than their share of the byte budget, it is
  *parked* at once: its bytes are also written to a staging object `chunk-N`, and
  it is acknowledged unhashed. Whoever finds a parked chunk next in line (a waiting chunk, or
  completion) hashes it from that object and deletes it. So a client that sends its chunks in
  order with a few in flight costs nothing extra, and one that sends them shuffled, one at a
  time, costs a second write and a read of the chunks that came early: never more than the
  whole-file read-back and copy this replaces.

A recorded part is always either hashed (upload_parts.sha256_state: the state after it) or parked.
A chunk sent again after it was hashed (a lost answer, a resumed client) is compared with the
hashed bytes before anything reaches S3: the same bytes get the recorded answer, other bytes 409
ChunkChanged, since a hashed chunk cannot be replaced. A parked chunk may still be replaced.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Iterator

from ..errors import Conflict, Locked
from ..storage import Location, PartBody
from .common import READ_CHUNK, LeaseLost
from .leases import Lease, Leases
from .model import OPEN, MissingParts, Part, Upload
from .objects import UploadObjects
from .resumable_sha256 import ResumableSha256
from .table import UploadTable


def hashes_in_order(upload: Upload) -> bool:
    """A session created with a declared sha256 or verify_sha256, and the resumable hash (engine.create)."""
    return upload.protocol == "session" and upload.sha256_state is not None


class ChunkTurns:
    """This instance's chunks waiting for their turn: wake-ups, and the bytes they hold."""

    POLL_SECONDS = 0.25  # how often a waiter looks at PostgreSQL (a chunk before it may be elsewhere)

    def __init__(self, budget_total: int, *, wait_seconds: float = 60.0) -> None:
        self.max_waiting_bytes = budget_total // 2
        self.wait_seconds = wait_seconds
        self.waiting_bytes = 0
        self._changed: dict[str, asyncio.Event] = {}
        self._waiters: dict[str, int] = {}

    def notify(self, upload_id: str) -> None:
        event = self._changed.pop(upload_id, None)
        if event is not None:
            event.set()

    async def changed(self, upload_id: str, timeout: float) -> None:
        event = self._changed.setdefault(upload_id, asyncio.Event())
        self._waiters[upload_id] = self._waiters.get(upload_id, 0) + 1
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            self._waiters[upload_id] -= 1
            if not self._waiters[upload_id]:
                del self._waiters[upload_id]
                if self._changed.get(upload_id) is event:
                    del self._changed[upload_id]

    @contextlib.contextmanager
    def holding(self, size: int) -> Iterator[bool]:
        """Count a waiting chunk's bytes; yields False (and counts nothing) when they do not fit."""
        fits = self.waiting_bytes + size <= self.max_waiting_bytes
        if fits:
            self.waiting_bytes += size
        try:
            yield fits
        finally:
            if fits:
                self.waiting_bytes -= size


class InOrderHashing:
    """Hashing the chunks of such sessions in order, on whichever instance they arrive."""

    def __init__(self, table: UploadTable, leases: Leases, objects: UploadObjects, turns: ChunkTurns) -> None:
        self.table = table
        self.leases = leases
        self.objects = objects
        self.turns = turns

    def parked_copy(self, upload: Upload, part_number: int) -> Location:
        return self.objects.staging(upload, f"chunk-{part_number}")

    async def already_hashed(self, upload: Upload, part: int, body: PartBody) -> Part | None:
        """The recorded part when this chunk was hashed already with exactly these bytes; None when it
        was not hashed yet; 409 when it was hashed with other bytes."""
        rows = await self.table.hashed_parts(upload.id, (part - 1, part))
        mine = rows.get(part)
        if mine is None or mine["sha256_state"] is None:
            return None
        before = rows.get(part - 1)
        if part > 1 and (before is None or before["sha256_state"] is None):
            raise RuntimeError(f"upload {upload.id}: part {part} is hashed but part {part - 1} is not")
        running = ResumableSha256(bytes(before["sha256_state"]) if part > 1 else None)
        await asyncio.to_thread(running.update_all, list(body.views()))
        if body.size != mine["size"] or running.state() != bytes(mine["sha256_state"]):
            raise Conflict(f"chunk {part} was acknowledged with other bytes, and this session, which declared a "
                           "sha256, keeps the chunks it hashed; nothing was stored. A changed file needs a new "
                           "session", code="ChunkChanged")
        return Part(part, mine["size"], mine["etag"], mine["checksum"], mine["md5"])

    async def hash_in_turn(self, lease: Lease, upload: Upload, part: Part,
                           body: PartBody) -> tuple[int, bytes, str] | None:
        """Wait until the chunks before `part` are hashed (hashing parked ones on the way), then hash
        it. Returns (offset before it, state after it, digest so far) to commit with the part
        (UploadTable.record_part), or None when the chunk must be parked instead."""
        start = (part.part_number - 1) * upload.part_size
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.turns.wait_seconds
        with self.turns.holding(body.allocated) as fits:
            while True:
                row = await self._frontier(upload.id)
                if lease.lost.is_set() or row["acknowledged_offset"] > start:
                    raise LeaseLost(f"part {part.part_number} was taken over or the upload closed; it was not kept")
                if row["acknowledged_offset"] == start:
                    break
                if await self._hash_next_parked(lease, upload, row):
                    continue
                remaining = deadline - loop.time()
                if not fits or remaining <= 0 or not row["head_in_flight"]:
                    return None  # park: nobody is sending the chunk at the head of the line, or it takes too long
                await self.turns.changed(upload.id, min(remaining, self.turns.POLL_SECONDS))
        running = ResumableSha256(bytes(row["sha256_state"]))
        await asyncio.to_thread(running.update_all, list(body.views()))
        return start, running.state(), running.hexdigest()

    async def park(self, upload: Upload, part: Part, body: PartBody) -> None:
        """Keep a chunk's bytes until its turn comes (it is then recorded unhashed)."""
        await self.objects.store.put_bytes(self.parked_copy(upload, part.part_number), body)

    async def hash_parked(self, upload: Upload) -> None:
        """Completion: hash every parked chunk still in line, in order; MissingParts when one is absent,
        423 when another request is writing one."""
        total = upload.total_parts or 0
        async with self.leases.part_writer(upload.id) as lease:
            while True:
                row = await self._frontier(upload.id)
                if row["acknowledged_offset"] >= (upload.length or 0):
                    return
                if not await self._hash_next_parked(lease, upload, row, wait=True):
                    recorded = await self.table.part_numbers(upload.id)
                    missing = [number for number in range(1, total + 1) if number not in recorded]
                    if missing:
                        raise MissingParts(f"{len(missing)} parts are missing: {missing[:20]}", missing)
                    raise Locked("a chunk of this session is being written; complete again shortly",
                                 headers={"Retry-After": "1"})

    # ---------------------------------------------------------------- inside
    async def _frontier(self, upload_id: str) -> dict[str, Any]:
        """The upload's hashed offset and state, and whether a live request is writing (or hashing)
        the chunk at the head of the line."""
        row = await self.table.hash_frontier(upload_id)
        if row is None or row["state"] != OPEN:
            raise Conflict("the upload is no longer open")
        return row

    async def _hash_next_parked(self, lease: Lease, upload: Upload, row: dict[str, Any], *,
                                wait: bool = False) -> bool:
        """Hash the chunk next in line if it is parked (recorded, not hashed); its part lease keeps a
        replacement of it out meanwhile. False when it is not recorded, or (without wait) another
        request holds it; True when it was hashed, or the frontier moved meanwhile."""
        start = row["acknowledged_offset"]
        number = start // upload.part_size + 1
        recorded = await self.table.unhashed_part(upload.id, number)
        if recorded is None:
            return False
        try:
            await self.leases.acquire_part(lease, number, wait=wait)
        except Locked:
            if wait:
                raise
            return False
        copy = self.parked_copy(upload, number)
        try:
            running = ResumableSha256(bytes(row["sha256_state"]))
            stream = await self.objects.store.open(copy)
            if stream is None:
                raise RuntimeError(f"upload {upload.id}: parked chunk {number} has no copy")
            size = 0
            async for piece in stream.chunks(READ_CHUNK):
                await asyncio.to_thread(running.update, piece)
                size += len(piece)
            if size != recorded["size"]:
                raise RuntimeError(f"upload {upload.id}: parked chunk {number} has {size} of {recorded['size']} bytes")
            if not await self.table.advance_hash(upload.id, number, start, size, running.state(), running.hexdigest()):
                return True  # someone else moved the frontier: look again
            with contextlib.suppress(Exception):
                await self.objects.store.delete(copy.bucket, [copy.key])
        finally:
            await self.leases.release_part(lease, number)
        self.turns.notify(upload.id)
        return True
