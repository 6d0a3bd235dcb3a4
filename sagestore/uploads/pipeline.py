"""The part pipeline of the sequential writer: AppendPipeline turns one append request's bytes
(after the staged tail of the earlier ones) into S3 parts plus a new durable staged tail, and
commit_append() commits them, conditional on the upload lease.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterable

from ..db import transaction
from ..errors import BadRequest, PayloadTooLarge
from ..storage import Location, PartBody
from .checksums import MultiDigest, decode_b64, normalize_algorithm
from .common import LeaseLost, BodyCutOff, chunks_with_idle_timeout
from .core import EngineCore
from .leases import Lease
from .limits import Reservation
from .model import ChecksumMismatch, Part, Upload
from .resumable_sha256 import ResumableSha256


class AppendPipeline:
    """One append request, under its upload lease: the staged tail and the body's bytes become
    parts, each sent to S3 as soon as it is full (at most `in_flight` at a time) or, when this body
    surely fills it, while it fills; what is short of a part becomes a new staged tail; one
    transaction commits offset, tail and parts; then the previous tail is deleted. run() is the
    whole request, its steps are the methods it calls."""

    def __init__(self, engine: EngineCore, lease: Lease, upload: Upload, body: AsyncIterable[bytes],
                 new_length: int | None, final: bool, chunk_checksum: Any, limit: int, body_length: int | None,
                 too_large: str) -> None:
        self.engine = engine
        self.lease = lease
        self.upload = upload
        self.body = body
        self.new_length = new_length
        self.final = final
        self.chunk_checksum = chunk_checksum
        self.limit = limit
        self.body_length = body_length
        self.too_large = too_large
        self.next_part = (upload.parts[-1].part_number + 1) if upload.parts else 1
        self.first_part = self.next_part
        self.in_flight = max(1, int(getattr(engine.store, "parts_in_flight", 4)))
        self.reservation: Reservation | None = None  # budget for the bytes buffered now (parts in flight + this one)
        # a part may go to S3 while it fills only when this body surely fills it (its length is
        # known) and no per-part checksum must be sent with it
        self.stream_parts = (body_length is not None and getattr(engine.store, "can_stream_parts", False)
                             and not upload.checksum_algorithm)
        self.checksum_digest: MultiDigest | None = None
        self.trailer_digest: MultiDigest | None = None
        if chunk_checksum is not None and not callable(chunk_checksum):
            algorithm, expected_value = chunk_checksum
            self.checksum_digest = MultiDigest([algorithm])  # 400 for an unsupported algorithm, before the body
            decode_b64(expected_value, normalize_algorithm(algorithm))
        elif callable(chunk_checksum):
            # the algorithm is known only after the body: hash every candidate lazily
            self.trailer_digest = MultiDigest(["md5", "sha1", "sha256", "crc32", "crc32c"])
        self.sent: dict[int, Part] = {}
        self.pending: set[asyncio.Task] = set()
        self.failures: list[BaseException] = []
        self.received = 0
        self.cut_off: BodyCutOff | None = None
        self.new_tail: Location | None = None
        self.buffer: PartBody | None = None  # the part being filled
        self.streaming: tuple[PartBody, asyncio.Task] | None = None  # the part in flight while it fills
        # the upload's running sha256 (None: not hashed), and its state after each full part of this
        # request, so that the commit can take the state of exactly the parts it keeps
        self.running = ResumableSha256(upload.sha256_state) if upload.sha256_state is not None else None
        self.state_after: dict[int, bytes] = {}

    async def run(self) -> Upload:
        engine, lease, upload = self.engine, self.lease, self.upload
        async with engine.memory.reserve() as reservation:
            self.reservation = reservation
            try:
                await self.read_old_tail()
                await self.receive()
                if self.buffer is None:
                    self.buffer = PartBody(0)
                self.abandon_streaming()  # the body ended before filling it (cut off): its bytes become the tail
                new_offset = upload.offset + self.received
                self.fix_final_length(new_offset)
                self.verify_chunk_checksum()
                self.buffer.truncate()  # to the bytes filled: it was allocated for a whole part
                if self.buffer.filled and self.new_length is not None and new_offset == self.new_length:
                    self.hash_full_part(self.next_part, self.buffer)
                    await self.dispatch(self.next_part, self.buffer)  # the last part may be short: no tail needed
                    self.next_part += 1
                    self.buffer = PartBody(0)
                await self.wait_for_parts()
                stored = self.parts_to_commit(new_offset)
                if stored is None:
                    return await engine.reload(upload.id)
                committed_parts, new_offset = stored
                tail_unchanged = self.received == 0 and self.next_part == self.first_part  # the buffer is the old tail
                if tail_unchanged:
                    if self.new_length == upload.length:
                        return await engine.reload(upload.id)  # nothing arrived: nothing to commit
                    kept = Location(upload.s3_bucket, upload.tail_key) if upload.tail_key else None
                    await commit_append(engine, lease, upload, new_offset, self.new_length, [], kept, upload.tail_size,
                                        sha256=(upload.sha256_state, upload.sha256_so_far))
                    return await engine.reload(upload.id)
                committed = await self.commit(committed_parts, new_offset)
            finally:
                self.abandon_streaming()
                for task in self.pending:
                    task.cancel()
                if self.new_tail is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(engine.store.delete(self.new_tail.bucket, [self.new_tail.key]))
        if upload.tail_key:
            with contextlib.suppress(Exception):
                await engine.store.delete(upload.s3_bucket, [upload.tail_key])
        return committed

    def new_buffer(self, number: int, consumed: int, already: int = 0) -> PartBody:
        """Part `number`'s buffer, allocated once at the size it can reach in this request
        (`consumed` body bytes are already placed, `already` bytes of the old tail come first)."""
        size = self.upload.part_size_of(number)
        for bound in (self.limit, self.body_length):
            if bound is not None:
                size = min(size, already + max(0, bound - consumed))
        return PartBody(size)  # a body longer than announced just makes it grow

    async def read_old_tail(self) -> None:
        """The first buffer, holding the staged tail of the earlier requests (if any)."""
        upload, reservation = self.upload, self.reservation
        self.buffer = self.new_buffer(self.next_part, 0, upload.tail_size)
        if upload.tail_key:
            # the tail as read, and its copy in the buffer
            await reservation.grow(upload.tail_size + self.buffer.allocated_after(upload.tail_size))
            tail = await self.engine.store.read_all(Location(upload.s3_bucket, upload.tail_key))
            if tail is None or len(tail) != upload.tail_size:
                raise RuntimeError(f"staged tail of upload {upload.id} is missing or has the wrong size")
            self.buffer.write(tail)
            del tail
            reservation.release(upload.tail_size)

    async def receive(self) -> None:
        """Read the body into parts; a body cut off ends it early (kept in cut_off)."""
        try:
            async for chunk in chunks_with_idle_timeout(self.body, self.engine.lease_seconds):
                if self.lease.lost.is_set():
                    raise LeaseLost("another request took over this upload; this request kept nothing")
                received_before = self.received
                self.received += len(chunk)  # limit check first: nothing past the limit is placed
                if self.received > self.limit:
                    raise PayloadTooLarge(self.too_large)
                if self.checksum_digest is not None:
                    self.checksum_digest.update(chunk)
                elif callable(self.chunk_checksum):
                    self.trailer_digest.update(chunk)
                await self.place(chunk, received_before)
        except BodyCutOff as error:
            self.cut_off = error

    async def place(self, chunk: bytes, received_before: int) -> None:
        """Copy one chunk into the part buffers; dispatch each part when it is full, or when it starts
        if this body surely fills it."""
        upload = self.upload
        with memoryview(chunk) as view:
            position = 0
            while position < len(view):
                if self.buffer is None:  # allocated only once a byte needs it
                    self.buffer = self.new_buffer(self.next_part, received_before + position)
                if self.streaming is None and self.this_body_fills(self.next_part, self.buffer,
                                                                   received_before + position):
                    self.streaming = (self.buffer, await self.dispatch(self.next_part, self.buffer))
                part_size = upload.part_size_of(self.next_part)
                take = min(part_size - self.buffer.filled, len(view) - position)
                await self.reservation.grow(self.buffer.allocated_after(take) - self.buffer.allocated)
                self.buffer.write(view[position:position + take])
                position += take
                if self.buffer.filled == part_size:
                    self.hash_full_part(self.next_part, self.buffer)
                    if self.streaming is None:
                        await self.dispatch(self.next_part, self.buffer)
                    self.streaming = None
                    self.next_part += 1
                    self.buffer = None

    def hash_full_part(self, number: int, data: PartBody) -> None:
        if self.running is not None:
            self.running.update_all(data.views())
            self.state_after[number] = self.running.state()

    def committed_sha256(self, parts: list[Part]) -> tuple[bytes | None, str | None]:
        """(state after the committed parts, digest through the committed tail, the buffer)."""
        if self.running is None:
            return None, None
        state = self.state_after[parts[-1].part_number] if parts else self.upload.sha256_state
        return state, ResumableSha256(state).update_all(self.buffer.views()).hexdigest()

    def this_body_fills(self, number: int, data: PartBody, consumed: int) -> bool:
        """Whether the rest of this body (its length known) surely fills the part."""
        return (self.stream_parts and data.size == self.upload.part_size_of(number)
                and self.body_length - consumed >= data.size - data.filled)

    async def dispatch(self, number: int, data: PartBody) -> asyncio.Task:
        """Start sending a part, once fewer than in_flight are on their way; the first failure stops the body."""
        while len(self.pending) >= self.in_flight:
            _, self.pending = await asyncio.wait(self.pending, return_when=asyncio.FIRST_COMPLETED)
        if self.failures:
            raise self.failures[0]
        task = asyncio.create_task(self.send(number, data))
        self.pending.add(task)
        return task

    async def send(self, number: int, data: PartBody) -> None:
        """UploadPart under the part's lease; then its bytes are freed. Failures are reported after the body."""
        engine, lease, upload = self.engine, self.lease, self.upload
        # abandoned after this (the body was cut off), its bytes become the new tail: this send
        # must then store nothing and free nothing, even if its cancellation is lost (Python
        # 3.11's wait_for, used by aiopg, can swallow one)
        generation = data.generation
        try:
            await engine.acquire_part(lease, number, wait=True)
            try:
                part = await engine.send_part(upload, number, data, checksum=engine.part_checksum(upload, data))
            except Exception:  # noqa: BLE001 - a part sent while filling (stalled, failed) is resent whole
                if data.full:
                    raise
                await engine.release_part(lease, number)  # a writer taking over need not wait for it
                await data.filled_up()
                self.check_not_abandoned(number, data, generation)
                await engine.acquire_part(lease, number, wait=True)
                part = await engine.send_part(upload, number, data, checksum=engine.part_checksum(upload, data))
            self.check_not_abandoned(number, data, generation)
            self.sent[number] = part
            self.reservation.release(data.allocated)  # S3 has it: its bytes are not needed any more
            data.close()
            await engine.release_part(lease, number)  # S3 has it: a writer taking over need not wait
        except BaseException as error:  # noqa: BLE001 - reported after the body
            if data.generation == generation:  # an abandoned part's bytes become the tail instead
                self.failures.append(error)

    @staticmethod
    def check_not_abandoned(number: int, data: PartBody, generation: int) -> None:
        if data.generation != generation:
            raise ConnectionAbortedError(f"part {number} was abandoned; its bytes are the tail")

    def abandon_streaming(self) -> None:
        """A part in flight that will not fill: stop its UploadPart; its bytes stay in the buffer."""
        if self.streaming is not None:
            self.streaming[0].abandon()
            self.streaming[1].cancel()
        self.streaming = None

    def fix_final_length(self, new_offset: int) -> None:
        """A body that ends the upload (and was not cut off) fixes its length at the new offset."""
        if self.final and self.cut_off is None:
            if self.new_length is not None and self.new_length != new_offset:
                raise BadRequest(f"the upload is {self.new_length} bytes but ends at {new_offset}")
            self.new_length = new_offset

    def verify_chunk_checksum(self) -> None:
        """The body's chunk checksum, if one was asked for: a mismatch keeps nothing of this request."""
        chunk_checksum = self.chunk_checksum
        if chunk_checksum is not None:
            if self.cut_off is not None:
                raise ChecksumMismatch("the body was cut off before its checksum could be verified; "
                                       "nothing was kept")
            expected = chunk_checksum() if callable(chunk_checksum) else chunk_checksum
            if expected is not None:
                algorithm = normalize_algorithm(expected[0])
                digest = self.checksum_digest if self.checksum_digest is not None else self.trailer_digest
                if algorithm not in digest.digests:
                    raise BadRequest(f"unsupported checksum algorithm {expected[0]!r}")
                if digest.raw(algorithm) != decode_b64(expected[1], algorithm):
                    raise ChecksumMismatch(f"{algorithm} checksum of the body does not match; "
                                           "nothing was kept")

    async def wait_for_parts(self) -> None:
        if self.pending:
            await asyncio.wait(self.pending)
            self.pending = set()

    def parts_to_commit(self, new_offset: int) -> tuple[list[Part], int] | None:
        """The parts this request stored and the offset they reach; None when none can be kept."""
        upload = self.upload
        committed_parts = [self.sent[n] for n in range(self.first_part, self.next_part) if n in self.sent]
        if self.failures or len(committed_parts) != self.next_part - self.first_part:
            if self.cut_off is None:
                raise self.failures[0] if self.failures else RuntimeError("a part upload did not finish")
            # cut off and a part failed: keep the contiguous prefix of stored parts, no tail
            prefix = []
            for number in range(self.first_part, self.next_part):
                if number not in self.sent:
                    break
                prefix.append(self.sent[number])
            committed_parts, self.buffer = prefix, PartBody(0)
            if not prefix:
                return None
            new_offset = upload.offset - upload.tail_size + sum(p.size for p in prefix)
        return committed_parts, new_offset

    async def commit(self, committed_parts: list[Part], new_offset: int) -> Upload:
        """Stage the rest of the buffer as a new tail, then commit (and give back the leases)."""
        engine, lease, upload = self.engine, self.lease, self.upload
        if self.buffer.filled:
            self.new_tail = engine.staging(upload, f"tail-{lease.token[:16]}")
            await engine.store.put_bytes(self.new_tail, self.buffer)
        committed = await commit_append(engine, lease, upload, new_offset, self.new_length, committed_parts,
                                        self.new_tail, self.buffer.filled, release=True,
                                        sha256=self.committed_sha256(committed_parts))
        self.new_tail = None  # committed: it is the upload's tail now
        return committed


async def commit_append(engine: EngineCore, lease: Lease, upload: Upload, new_offset: int, new_length: int | None,
                        parts: list[Part], tail: Location | None, tail_size: int, *,
                        sha256: tuple[bytes | None, str | None], release: bool = False) -> Upload:
    """Commit received bytes, conditional on still holding the lease; with release=True the
    same transaction gives up the upload and part leases (one transaction less per request).
    sha256 is the running hash's (state, digest) at the new offset. Returns the upload as committed."""
    async with transaction(engine.pool) as cur:
        await cur.execute(
            """UPDATE uploads SET acknowledged_offset = %s, tail_key = %s, tail_size = %s, length = %s,
                   sha256_state = %s, sha256_so_far = %s,
                   updated_at = now(), expires_at = now() + %s * interval '1 second',
                   writer = CASE WHEN %s THEN NULL ELSE writer END,
                   writer_instance = CASE WHEN %s THEN NULL ELSE writer_instance END,
                   writer_until = CASE WHEN %s THEN NULL ELSE writer_until END
               WHERE id = %s AND writer = %s AND state = 'open' AND acknowledged_offset = %s
               RETURNING *, expires_at < now() AS is_expired""",
            (new_offset, tail.key if tail else None, tail_size, new_length, *sha256, engine.ttl(), release,
             release, release, upload.id, lease.token, upload.offset))
        row = await cur.fetchone()
        if row is None:
            raise LeaseLost("another request took over this upload; this request kept nothing")
        await engine.upsert_parts(cur, upload.id, parts)
        if release:
            await cur.execute("DELETE FROM upload_part_leases WHERE upload_id = %s AND writer = %s",
                              (upload.id, lease.token))
    lease.released = release  # only once the transaction is in
    committed = Upload.from_row(row)
    committed.parts = sorted({part.part_number: part for part in [*upload.parts, *parts]}.values(),
                             key=lambda part: part.part_number)
    return committed
