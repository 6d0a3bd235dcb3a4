"""The sequential writer (offset chunks, tus and IETF PATCH): Appender.append() checks a request
body's offset and bounds under the upload lease and runs it through its AppendPipeline, which
turns the request's bytes (after the staged tail of the earlier ones) into S3 parts plus a new
durable staged tail and commits them (UploadTable.commit_append), conditional on the lease;
take_over() fences off an older writer (IETF draft, tus).
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, AsyncIterable, Callable

from ..errors import BadRequest, PayloadTooLarge
from ..limits import max_upload_size
from ..storage import Location, ObjectStore, PartBody
from .checksums import MultiDigest, decode_b64, normalize_algorithm
from .common import SEQUENTIAL_PROTOCOLS, BodyCutOff, ChunkChecksum, LeaseLost, chunks_with_idle_timeout
from .leases import Lease, Leases
from .limits import ByteBudget, Reservation, UserSlots
from .model import OPEN, ChecksumMismatch, OffsetMismatch, Part, Upload, visible
from .objects import UploadObjects
from .resumable_sha256 import ResumableSha256
from .table import UploadTable

if TYPE_CHECKING:
    from ..config import Settings
    from ..metrics import Metrics


class Appender:
    """Appends to sequential uploads, one request at a time per upload."""

    def __init__(self, table: UploadTable, leases: Leases, objects: UploadObjects, memory: ByteBudget,
                 slots: UserSlots, settings: "Settings", metrics: "Metrics") -> None:
        self.table = table
        self.leases = leases
        self.objects = objects
        self.store: ObjectStore = objects.store
        self.memory = memory
        self.slots = slots
        self.settings = settings
        self.metrics = metrics

    async def append(self, upload: Upload, offset: int, body: AsyncIterable[bytes], *,
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
            current = visible(await self.table.find(upload.id))
            raise OffsetMismatch(f"offset {offset} does not match the upload's offset {current.offset}",
                                 current.offset)
        async with self.slots.hold(upload.owner):
            # a body that fills a whole part on its own: its part's lease comes with the upload lease,
            # so the part can start for S3 without another round trip
            fills_a_part = (self.streams_parts(upload, body_length) and body_length >= upload.part_size
                            and not upload.part_size_grows)
            async with self.leases.writing(upload.id, steal=steal, next_part=fills_a_part) as (lease, current):
                if offset != current.offset:
                    raise OffsetMismatch(f"offset {offset} does not match the upload's offset {current.offset}",
                                         current.offset)
                new_length = current.length
                maximum = max_upload_size(self.settings)
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
                return await AppendPipeline(self, lease, current, body, new_length, final, chunk_checksum,
                                            limit, body_length, too_large).run()

    def streams_parts(self, upload: Upload, body_length: int | None) -> bool:
        """Whether a part this body surely fills may go to S3 while it fills: the body's length is
        known and no per-part checksum must be sent with the part."""
        return body_length is not None and self.store.capabilities.stream_parts and not upload.checksum_algorithm

    async def take_over(self, upload: Upload, *, grace: float = 2.0) -> Upload:
        """Fence off the request writing this upload now, if any, and return the upload as committed.

        The IETF draft's rule for a new request while an older one still transfers (the client has
        given up on it): the old one is cut off. First the old writer gets `grace` seconds to finish
        on its own: a request whose body was cut off is usually just committing the bytes it got,
        and those are kept. After that its lease is cleared in PostgreSQL, so whichever instance
        runs it, its commit fails and nothing it has not committed is kept; the offset returned is
        therefore the one the next append must use. A writer in this instance stops at once; one in
        another instance at its next lease renewal or commit at the latest.
        """
        if upload.state == OPEN and upload.writer is None:
            return upload  # nobody held the lease when the caller read the row: nothing to fence, no second read
        deadline = asyncio.get_running_loop().time() + grace
        waited = False
        while True:
            current, held = await self.table.find_unless_written(upload.id)
            if not held:
                if waited:
                    self.metrics.takeovers.labels("finished").inc()
                return visible(current)
            if asyncio.get_running_loop().time() >= deadline:
                break
            waited = True
            await asyncio.sleep(0.05)
        self.metrics.takeovers.labels("fenced").inc()
        await self.leases.fence(upload.id)
        return visible(await self.table.find(upload.id))


class AppendPipeline:
    """One append request, under its upload lease: the staged tail and the body's bytes become
    parts, each sent to S3 as soon as it is full (at most `in_flight` at a time) or, when this body
    surely fills it, while it fills; what is short of a part becomes a new staged tail; one
    transaction commits offset, tail and parts; then the previous tail is deleted. run() is the
    whole request, its steps are the methods it calls."""

    def __init__(self, appender: Appender, lease: Lease, upload: Upload, body: AsyncIterable[bytes],
                 new_length: int | None, final: bool, chunk_checksum: Any, limit: int, body_length: int | None,
                 too_large: str) -> None:
        self.appender = appender
        self.store = appender.store
        self.objects = appender.objects
        self.leases = appender.leases
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
        self.in_flight = max(1, self.store.parts_in_flight)
        self.reservation: Reservation | None = None  # budget for the bytes buffered now (parts in flight + this one)
        self.stream_parts = appender.streams_parts(upload, body_length)
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
        lease, upload, table = self.lease, self.upload, self.appender.table
        async with self.appender.memory.reserve() as reservation:
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
                    self.hash_full_part(self.next_part)
                    await self.dispatch(self.next_part, self.buffer)  # the last part may be short: no tail needed
                    self.next_part += 1
                    self.buffer = PartBody(0)
                await self.wait_for_parts()
                stored = self.parts_to_commit(new_offset)
                if stored is None:
                    return await table.find(upload.id)
                committed_parts, new_offset = stored
                tail_unchanged = self.received == 0 and self.next_part == self.first_part  # the buffer is the old tail
                if tail_unchanged:
                    if self.new_length == upload.length:
                        return await table.find(upload.id)  # nothing arrived: nothing to commit
                    await table.commit_append(upload, lease.token, offset=new_offset, length=self.new_length,
                                              tail_key=upload.tail_key, tail_size=upload.tail_size, parts=[],
                                              sha256=(upload.sha256_state, upload.sha256_so_far), release=False)
                    return await table.find(upload.id)
                committed = await self.commit(committed_parts, new_offset)
            finally:
                self.abandon_streaming()
                for task in self.pending:
                    task.cancel()
                if self.new_tail is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.store.delete(self.new_tail.bucket, [self.new_tail.key]))
        if upload.tail_key:
            with contextlib.suppress(Exception):
                await self.store.delete(upload.s3_bucket, [upload.tail_key])
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
            tail = await self.store.read_all(Location(upload.s3_bucket, upload.tail_key))
            if tail is None or len(tail) != upload.tail_size:
                raise RuntimeError(f"staged tail of upload {upload.id} is missing or has the wrong size")
            self.buffer.write(tail)
            if self.running is not None:
                self.running.update(tail)  # the running hash stops at the last full part: the tail comes next
            del tail
            reservation.release(upload.tail_size)

    async def receive(self) -> None:
        """Read the body into parts; a body cut off ends it early (kept in cut_off)."""
        try:
            async for chunk in chunks_with_idle_timeout(self.body, self.leases.seconds):
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
                if self.running is not None:
                    # hashed as it arrives, not when the part is full: no pause of the event loop between
                    # the body's last byte and the answer (a whole chunk at the end cost ~12 ms per 16 MiB)
                    self.running.update(chunk if take == len(chunk) else view[position:position + take])
                position += take
                if self.buffer.filled == part_size:
                    self.hash_full_part(self.next_part)
                    if self.streaming is None:
                        await self.dispatch(self.next_part, self.buffer)
                    self.streaming = None
                    self.next_part += 1
                    self.buffer = None

    def hash_full_part(self, number: int) -> None:
        """Keep the running hash's state after part `number` (its bytes were hashed as they came)."""
        if self.running is not None:
            self.state_after[number] = self.running.state()

    def committed_sha256(self, parts: list[Part]) -> tuple[bytes | None, str | None]:
        """(state after the committed parts, digest through the committed tail, the buffer)."""
        if self.running is None:
            return None, None
        state = self.state_after[parts[-1].part_number] if parts else self.upload.sha256_state
        if len(parts) == self.next_part - self.first_part:  # every part kept: the running hash is at the buffer's end
            return state, self.running.hexdigest()
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
        leases, objects, lease, upload = self.leases, self.objects, self.lease, self.upload
        # abandoned after this (the body was cut off), its bytes become the new tail: this send
        # must then store nothing and free nothing, even if its cancellation is lost (Python
        # 3.11's wait_for, used by aiopg, can swallow one)
        generation = data.generation
        try:
            await leases.acquire_part(lease, number, wait=True)
            try:
                part = await objects.send_part(upload, number, data, checksum=objects.part_checksum(upload, data))
            except Exception:  # noqa: BLE001 - a part sent while filling (stalled, failed) is resent whole
                if data.full:
                    raise
                await leases.release_part(lease, number)  # a writer taking over need not wait for it
                await data.filled_up()
                self.check_not_abandoned(number, data, generation)
                await leases.acquire_part(lease, number, wait=True)
                part = await objects.send_part(upload, number, data, checksum=objects.part_checksum(upload, data))
            self.check_not_abandoned(number, data, generation)
            self.sent[number] = part
            self.reservation.release(data.allocated)  # S3 has it: its bytes are not needed any more
            data.close()
            await leases.release_part(lease, number)  # S3 has it: a writer taking over need not wait
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
        lease, upload = self.lease, self.upload
        if self.buffer.filled:
            self.new_tail = self.objects.staging(upload, f"tail-{lease.token[:16]}")
            await self.store.put_bytes(self.new_tail, self.buffer)
        committed = await self.appender.table.commit_append(
            upload, lease.token, offset=new_offset, length=self.new_length,
            tail_key=self.new_tail.key if self.new_tail else None, tail_size=self.buffer.filled,
            parts=committed_parts, sha256=self.committed_sha256(committed_parts), release=True)
        lease.released = True  # only once the transaction is in
        self.new_tail = None  # committed: it is the upload's tail now
        return committed
