"""The upload engine against real PostgreSQL and SeaweedFS: appends with staged tails, leases,
checksums, completion and the reaper. No layer of ours is mocked."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import uuid
import zlib

import aiopg
import pytest
from aiohttp import web

from sagestore.db import close_pool, create_pool, cursor, transaction
from sagestore.db import buckets as bucket_queries
from sagestore.db.migrate import migrate
from sagestore.errors import BadRequest, Gone, Locked, NotFound, PayloadTooLarge
from sagestore.metrics import Metrics
from sagestore.config import Settings
from sagestore.storage import (STAGING_PREFIX, BucketMapping, Location, MemoryObjectStore, MemorySpace,
                               open_object_store)
from sagestore.uploads import (ChecksumMismatch, DigestMismatch, LeaseLost, MissingParts, OffsetMismatch,
                               UploadEngine)

MiB = 2**20


@pytest.fixture(params=["s3", "memory"])
def engine_settings(request, database_url, backends_dir):
    """Every test runs on SeaweedFS and on the in-memory store (which needs no S3 server at all)."""
    if request.param == "memory":
        settings = Settings(data_dir=str(backends_dir / "data"), auth_mode="noauth", database_url=database_url,
                            storage_backend="memory", reaper_interval=0)
    else:
        settings = request.getfixturevalue("settings")
    return settings.replace(s3_part_size=5 * MiB, s3_parts_in_flight=4)


@pytest.fixture
async def make_engine(engine_settings):
    """Factory of independent engine instances (own pool, client and liveness lock). On the memory
    backend they share one MemorySpace, as instances on S3 share the S3 server."""
    space = MemorySpace()
    async with contextlib.AsyncExitStack() as stack:
        async def make(settings=None, **options) -> UploadEngine:
            settings = settings or engine_settings
            pool = await create_pool(settings.database_url, 5)
            stack.push_async_callback(close_pool, pool)  # as the app does: bounded, so teardown never hangs
            await migrate(pool)
            if settings.storage_backend == "memory":
                store = MemoryObjectStore(space, part_size=settings.s3_part_size,
                                          parts_in_flight=settings.s3_parts_in_flight)
            else:
                store = await stack.enter_async_context(open_object_store(
                    endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
                    secret_key=settings.s3_secret_key, region=settings.s3_region, part_size=settings.s3_part_size,
                    parts_in_flight=settings.s3_parts_in_flight))
            mapping = BucketMapping(settings.s3_bucket_prefix, settings.s3_bucket_count, settings.s3_single_bucket)
            await store.ensure_buckets(mapping.all_s3_buckets())
            engine = UploadEngine(pool, store, mapping, settings, Metrics(), **options)
            await engine.start()
            stack.push_async_callback(engine.close)
            return engine
        yield make


async def new_bucket(engine: UploadEngine, owner: str = "alice", bucket_type: str = "model") -> str:
    bucket_id = str(uuid.uuid4())
    async with transaction(engine.pool) as cur:
        await bucket_queries.create(cur, bucket_id, "b", bucket_type, owner, False)
    return bucket_id


async def wait_for_row(engine: UploadEngine, query: str, *args, timeout: float = 30) -> None:
    """Poll until a query finds a row (a concurrent request has taken its lease)."""
    for _ in range(int(timeout * 20)):
        async with cursor(engine.pool) as cur:
            await cur.execute(query, args)
            if await cur.fetchone():
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no row for {query}")


async def chunks_of(data: bytes, size: int = 256 * 1024):
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def object_bytes(engine: UploadEngine, bucket_id: str, key: str) -> bytes | None:
    return await engine.store.read_all(engine.mapping.object(bucket_id, key))


async def staging_keys(engine: UploadEngine, upload) -> list[str]:
    prefix = Location(upload.s3_bucket, f"{STAGING_PREFIX}uploads/{upload.id}/")
    return [key async for page in engine.store.iter_keys(prefix) for key in page]


async def open_mpus(engine: UploadEngine, upload) -> list[str]:
    return [item["UploadId"] for item in await engine.store.list_multipart_uploads(upload.s3_bucket)
            if item["UploadId"] == upload.s3_upload_id]


async def test_append_unaligned_chunks_with_durable_tail_across_engine_instances(make_engine):
    """40 MiB in 7 MiB chunks (not part-aligned): full parts go to S3, the rest is a staged tail
    that a brand-new engine instance (another server) picks up."""
    first = await make_engine()
    bucket_id = await new_bucket(first)
    data = os.urandom(40 * MiB)
    upload = await first.create("tus", bucket_id, "data/big.bin", "alice", length=len(data))
    assert upload.part_size == 5 * MiB and upload.state == "open" and not upload.staged
    offset = 0
    for start in range(0, 21 * MiB, 7 * MiB):
        upload = await first.append(upload, offset, chunks_of(data[start:start + 7 * MiB]))
        offset += 7 * MiB
        assert upload.offset == offset
        assert upload.tail_size == offset % (5 * MiB)
        assert sum(part.size for part in upload.parts) == offset - upload.tail_size
        if upload.tail_size:  # the tail is a real S3 object, the previous generation is gone
            assert await staging_keys(first, upload) == [upload.tail_key]
    assert await object_bytes(first, bucket_id, "data/big.bin") is None  # nothing visible yet

    second = await make_engine()
    upload = await second.get(upload.id, "alice")
    assert upload.offset == 21 * MiB
    for start in range(21 * MiB, len(data), 7 * MiB):
        upload = await second.append(upload, upload.offset, chunks_of(data[start:start + 7 * MiB]))
    assert upload.offset == len(data) and upload.tail_key is None  # the short last part was sent directly
    assert [part.part_number for part in upload.parts] == list(range(1, 9))
    info = await second.complete(upload)
    assert info["size"] == len(data) and info["key"] == "data/big.bin"
    assert hashlib.sha256(await object_bytes(second, bucket_id, "data/big.bin")).digest() == \
        hashlib.sha256(data).digest()
    assert await staging_keys(second, upload) == []
    assert (await second.get(upload.id, "alice")).state == "completed"
    assert await second.complete(upload) == info  # idempotent
    with pytest.raises(Exception) as error:
        await second.complete(upload, sha256="a" * 64)  # never declared: cannot be checked now
    assert error.value.status == 400


async def test_deferred_length_completes_at_offset_with_tail_as_last_part(make_engine):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    data = os.urandom(12 * MiB + 12345)
    upload = await engine.create("tus", bucket_id, "deferred.bin", "alice")
    assert upload.length is None and upload.part_size_grows
    upload = await engine.append(upload, 0, chunks_of(data[:9 * MiB]))
    upload = await engine.append(upload, upload.offset, chunks_of(data[9 * MiB:]))
    assert upload.length is None and upload.tail_size == len(data) - 10 * MiB
    info = await engine.complete(upload)
    assert info["size"] == len(data)
    assert await object_bytes(engine, bucket_id, "deferred.bin") == data
    assert await staging_keys(engine, upload) == []


async def test_length_declared_later_and_final_flag(make_engine):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    upload = await engine.create("ietf", bucket_id, "final.bin", "alice")
    upload = await engine.append(upload, 0, chunks_of(b"a" * 100))
    upload = await engine.append(upload, 100, chunks_of(b"b" * 50), final=True)
    assert upload.length == 150 and upload.offset == 150
    with pytest.raises(PayloadTooLarge):
        await engine.append(upload, 150, chunks_of(b"c"))
    await engine.complete(upload)
    assert await object_bytes(engine, bucket_id, "final.bin") == b"a" * 100 + b"b" * 50

    upload = await engine.create("tus", bucket_id, "later.bin", "alice")
    upload = await engine.append(upload, 0, chunks_of(b"x" * 10), length=20)
    assert upload.length == 20
    with pytest.raises(Exception) as error:
        await engine.append(upload, 10, chunks_of(b"y"), length=30)
    assert error.value.status == 400 and (await engine.get(upload.id, "alice")).offset == 10

    # empty bodies: nothing changes, or only the length (tus PATCH with just Upload-Length)
    upload = await engine.create("tus", bucket_id, "empty.bin", "alice")
    upload = await engine.append(upload, 0, chunks_of(b"z" * 100))
    tail_key = upload.tail_key
    upload = await engine.append(upload, 100, chunks_of(b""))
    assert upload.tail_key == tail_key and upload.length is None and upload.offset == 100
    upload = await engine.append(upload, 100, chunks_of(b""), length=200)
    assert upload.tail_key == tail_key and upload.length == 200
    upload = await engine.append(upload, 100, chunks_of(b"y" * 100))
    assert upload.tail_key is None and [part.size for part in upload.parts] == [200]
    assert await staging_keys(engine, upload) == []
    await engine.complete(upload)
    assert await object_bytes(engine, bucket_id, "empty.bin") == b"z" * 100 + b"y" * 100


async def test_offset_mismatch_carries_current_offset_and_changes_nothing(make_engine):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    upload = await engine.create("offset", bucket_id, "o.bin", "alice", retain=True)
    upload = await engine.append(upload, 0, chunks_of(b"0123456789"))
    for wrong in (0, 5, 11, 1000):
        with pytest.raises(OffsetMismatch) as error:
            await engine.append(upload, wrong, chunks_of(b"zz"))
        assert error.value.offset == 10 and error.value.status == 409 and error.value.body()["offset"] == 10
    upload = await engine.get(upload.id, "alice")
    assert upload.offset == 10 and upload.tail_size == 10
    assert await engine.store.read_all(Location(upload.s3_bucket, upload.tail_key)) == b"0123456789"


async def test_body_limit_keeps_nothing(make_engine):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    upload = await engine.create("offset", bucket_id, "limit.bin", "alice", retain=True)
    upload = await engine.append(upload, 0, chunks_of(b"a" * 1000))
    with pytest.raises(PayloadTooLarge):
        await engine.append(upload, 1000, chunks_of(os.urandom(6 * MiB)), max_bytes=6 * MiB - 1)
    upload = await engine.get(upload.id, "alice")
    assert upload.offset == 1000 and upload.parts == []
    assert await staging_keys(engine, upload) == [upload.tail_key]


async def test_cut_off_body_keeps_every_durable_byte(make_engine):
    """A body that ends in a disconnect keeps what arrived: full parts plus a new tail."""
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    data = os.urandom(20 * MiB)
    upload = await engine.create("tus", bucket_id, "cut.bin", "alice", length=len(data))

    async def cut_after(blob: bytes, count: int):
        async for chunk in chunks_of(blob[:count]):
            yield chunk
        raise ConnectionResetError("client went away")

    upload = await engine.append(upload, 0, cut_after(data, 7 * MiB + 3))
    assert upload.offset == 7 * MiB + 3 and upload.tail_size == 2 * MiB + 3
    upload = await engine.append(upload, upload.offset, chunks_of(data[upload.offset:]))
    await engine.complete(upload)
    assert await object_bytes(engine, bucket_id, "cut.bin") == data


async def test_real_http_disconnect_mid_body_keeps_received_bytes(make_engine, aiohttp_server):
    """The same through aiohttp's own request stream: the client announces 20 MiB, sends 12 MiB
    and closes the socket."""
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    upload = await engine.create("tus", bucket_id, "socket.bin", "alice", length=20 * MiB)
    finished = asyncio.Event()

    async def patch(request: web.Request) -> web.Response:
        try:
            result = await engine.append(upload, 0, request.content.iter_chunked(64 * 1024))
            return web.json_response({"offset": result.offset})
        finally:
            finished.set()

    app = web.Application()
    app.router.add_patch("/u", patch)
    server = await aiohttp_server(app)
    data = os.urandom(12 * MiB)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"PATCH /u HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (20 * MiB))
    for start in range(0, len(data), MiB):
        writer.write(data[start:start + MiB])
        await writer.drain()
    writer.close()  # FIN after 12 of the announced 20 MiB: the body ends early
    await asyncio.wait_for(finished.wait(), 30)
    stored = await engine.get(upload.id, "alice")
    # aiohttp drops what it had buffered but not handed over when the body broke (never acknowledged)
    assert 11 * MiB <= stored.offset <= 12 * MiB
    assert sum(part.size for part in stored.parts) + stored.tail_size == stored.offset
    assert len(stored.parts) == 2 and stored.tail_size == stored.offset - 10 * MiB
    rest = os.urandom(8 * MiB)
    whole = data + rest
    stored = await engine.append(stored, stored.offset, chunks_of(whole[stored.offset:]))
    await engine.complete(stored)
    assert await object_bytes(engine, bucket_id, "socket.bin") == whole


async def test_chunk_checksum_mismatch_keeps_nothing(make_engine):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    upload = await engine.create("tus", bucket_id, "sum.bin", "alice")
    first = os.urandom(3 * MiB)
    sha1 = base64.b64encode(hashlib.sha1(first).digest()).decode()
    upload = await engine.append(upload, 0, chunks_of(first), chunk_checksum=("sha1", sha1))
    assert upload.offset == 3 * MiB
    before = await staging_keys(engine, upload)
    second = os.urandom(9 * MiB)  # enough to fill and send a part before the checksum is known
    bad = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    with pytest.raises(ChecksumMismatch) as error:
        await engine.append(upload, upload.offset, chunks_of(second), chunk_checksum=("sha1", bad))
    assert error.value.status == 460
    upload = await engine.get(upload.id, "alice")
    assert upload.offset == 3 * MiB and upload.parts == [] and await staging_keys(engine, upload) == before
    # a trailer-style checksum (known only after the body), crc32 this time
    crc = base64.b64encode(zlib.crc32(second).to_bytes(4, "big")).decode()
    upload = await engine.append(upload, upload.offset, chunks_of(second), chunk_checksum=lambda: ("crc32", crc))
    assert upload.offset == 12 * MiB
    await engine.complete(upload)
    assert await object_bytes(engine, bucket_id, "sum.bin") == first + second


async def test_second_writer_gets_423_and_steal_takes_over(make_engine):
    engine = await make_engine()
    other_instance = await make_engine()
    bucket_id = await new_bucket(engine)
    upload = await engine.create("ietf", bucket_id, "lease.bin", "alice")
    release = asyncio.Event()

    async def slow_body():
        yield b"old" * 1000
        await release.wait()
        yield b"more"

    old = asyncio.create_task(engine.append(upload, 0, slow_body()))
    await wait_for_row(engine, "SELECT 1 FROM uploads WHERE id = %s AND writer IS NOT NULL", upload.id)
    with pytest.raises(Locked) as error:
        await other_instance.append(upload, 0, chunks_of(b"new"))
    assert error.value.status == 423
    stolen = await other_instance.append(upload, 0, chunks_of(b"new" * 10), steal=True)
    assert stolen.offset == 30
    release.set()
    with pytest.raises(LeaseLost):
        await old
    upload = await engine.get(upload.id, "alice")
    assert upload.offset == 30
    await engine.complete(upload)
    assert await object_bytes(engine, bucket_id, "lease.bin") == b"new" * 10


async def test_uncontended_chunks_cost_one_statement_per_step(make_engine, monkeypatch):
    """A sequential upload's chunk costs one round trip per step, not a transaction each: the
    handler's read, the upload lease (with the lease of the part a whole-part body fills), the
    part lease's release and the commit (the take-over read is skipped when the row showed no
    writer); 16 before the statements were merged. A body shorter than a part takes its part's
    lease on its own. An indexed chunk likewise (15 before)."""
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    upload = await engine.create("tus", bucket_id, "counted.bin", "alice", length=11 * MiB)
    statements: list[str] = []
    execute = aiopg.Cursor.execute

    async def counted(cursor, operation, *args, **kwargs):
        statements.append(" ".join(str(operation).split())[:60])
        return await execute(cursor, operation, *args, **kwargs)

    monkeypatch.setattr(aiopg.Cursor, "execute", counted)
    for offset in (0, 5 * MiB):
        statements.clear()
        upload = await engine.get(upload.id, "alice", with_parts=False)
        assert upload.writer is None  # the previous append gave its lease back in its commit
        upload = await engine.take_over(upload)
        upload = await engine.append(upload, offset, chunks_of(os.urandom(5 * MiB)), body_length=5 * MiB)
        assert upload.offset == offset + 5 * MiB
        assert len(statements) == 4, statements
    statements.clear()
    upload = await engine.append(upload, 10 * MiB, chunks_of(os.urandom(MiB)), body_length=MiB)
    assert upload.offset == 11 * MiB
    assert len(statements) == 4, statements  # the last part, shorter: its lease is a statement of its own
    monkeypatch.undo()
    await engine.complete(upload)

    # an indexed chunk: the parts total before and after the body, the part lease, the record, the release
    session = await engine.create("session", bucket_id, "counted-session.bin", "alice", length=5 * MiB)
    monkeypatch.setattr(aiopg.Cursor, "execute", counted)
    statements.clear()
    await engine.put_part(session, 1, chunks_of(os.urandom(5 * MiB)), expected_size=5 * MiB, size_hint=5 * MiB)
    assert len(statements) == 5, statements
    monkeypatch.undo()
    assert [part.size for part in (await engine.get(session.id, "alice")).parts] == [5 * MiB]


async def test_lease_of_dead_instance_is_free_at_once(make_engine, engine_settings):
    """An instance that dies keeps no lease: its PostgreSQL liveness lock goes with it."""
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    upload = await engine.create("tus", bucket_id, "dead.bin", "alice")
    async with cursor(engine.pool) as cur:  # a lease held by an instance id that holds no lock
        await cur.execute("UPDATE uploads SET writer = 'ghost', writer_instance = 12345,"
                          " writer_until = now() + interval '1 hour' WHERE id = %s", (upload.id,))
    upload = await engine.append(upload, 0, chunks_of(b"alive"))
    assert upload.offset == 5


async def test_indexed_parts_any_order_missing_and_exact_sizes(make_engine):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    data = os.urandom(17 * MiB)
    upload = await engine.create("session", bucket_id, "s.bin", "alice", length=len(data))
    assert not upload.staged and upload.total_parts == 4 and upload.expected_part_size(4) == 2 * MiB

    def chunk(n: int) -> bytes:
        return data[(n - 1) * upload.part_size:n * upload.part_size]

    with pytest.raises(Exception) as error:
        await engine.put_part(upload, 2, chunks_of(chunk(2)[:-1]), expected_size=upload.expected_part_size(2))
    assert error.value.status == 400
    md5 = base64.b64encode(hashlib.md5(chunk(3)).digest()).decode()
    with pytest.raises(DigestMismatch):
        await engine.put_part(upload, 3, chunks_of(chunk(2)), expected_size=upload.part_size, md5=md5)
    await asyncio.gather(*(engine.put_part(upload, n, chunks_of(chunk(n)), expected_size=upload.expected_part_size(n))
                           for n in (4, 2, 3)))
    status = engine.status(await engine.get(upload.id, "alice"))
    assert status["missing_parts"] == [1] and status["received"] == len(data) - 5 * MiB
    with pytest.raises(MissingParts) as error:
        await engine.complete(upload)
    assert error.value.part_numbers == [1] and error.value.body()["missing_parts"] == [1]
    assert (await engine.get(upload.id, "alice")).state == "open"  # a failed completion reopens
    await engine.put_part(upload, 1, chunks_of(b"wrong" * MiB), expected_size=5 * MiB)
    await engine.put_part(upload, 1, chunks_of(chunk(1)), expected_size=5 * MiB, md5=base64.b64encode(
        hashlib.md5(chunk(1)).digest()).decode())  # a retry replaces the part
    info = await engine.complete(upload)
    assert info["size"] == len(data)
    assert await object_bytes(engine, bucket_id, "s.bin") == data
    assert await staging_keys(engine, upload) == []


async def test_a_hashed_session_parks_chunks_whose_turn_does_not_come(make_engine):
    """A session with a declared sha256, chunks sent before chunk 1 and answered one by one: each
    waits its turn, then is parked (a staging copy) and acknowledged; completion lists chunk 1 as
    missing, then, once it came, hashes the parked chunks from their copies in order, verifies
    the sha256 without reading the file back, and leaves no staging object."""
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    data = os.urandom(17 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    upload = await engine.create("session", bucket_id, "parked.bin", "alice", length=len(data), sha256=digest)
    assert not upload.staged and upload.sha256_state is not None

    def chunk(n: int) -> bytes:
        return data[(n - 1) * upload.part_size:n * upload.part_size]

    for number in (4, 2, 3):
        await engine.put_part(upload, number, chunks_of(chunk(number)), expected_size=upload.expected_part_size(number))
    assert sorted(await staging_keys(engine, upload)) == sorted(
        engine.objects.staging(upload, f"chunk-{n}").key for n in (2, 3, 4))
    assert engine.turns.waiting_bytes == 0
    with pytest.raises(MissingParts) as error:
        await engine.complete(upload)
    assert error.value.part_numbers == [1]
    read_back = engine.metrics.sha256_verifications.labels("read_back")._value.get()
    await engine.put_part(upload, 1, chunks_of(chunk(1)), expected_size=upload.part_size)
    current = await engine.get(upload.id, "alice")
    assert current.offset == upload.part_size  # chunk 1 hashed; the parked ones wait for completion
    info = await engine.complete(upload)
    assert info["sha256"] == digest and info["size"] == len(data)
    assert await object_bytes(engine, bucket_id, "parked.bin") == data
    assert await staging_keys(engine, upload) == []
    assert engine.metrics.sha256_verifications.labels("read_back")._value.get() == read_back


async def test_concurrent_writes_of_one_part_exactly_one_wins(make_engine):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    upload = await engine.create("session", bucket_id, "race.bin", "alice", length=5 * MiB)
    gate = asyncio.Event()
    a, b = os.urandom(5 * MiB), os.urandom(5 * MiB)

    async def held(blob: bytes):
        yield blob[:MiB]
        await gate.wait()
        yield blob[MiB:]

    first = asyncio.create_task(engine.put_part(upload, 1, held(a), expected_size=5 * MiB))
    await wait_for_row(engine, "SELECT 1 FROM upload_part_leases WHERE upload_id = %s", upload.id)
    with pytest.raises(Locked):
        await engine.put_part(upload, 1, chunks_of(b), expected_size=5 * MiB)
    gate.set()
    await first
    await engine.complete(upload)
    assert await object_bytes(engine, bucket_id, "race.bin") == a


async def test_sha256_mismatch_publishes_nothing(make_engine):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    data = os.urandom(MiB)
    upload = await engine.create("session", bucket_id, "bad.bin", "alice", length=len(data), sha256="0" * 64)
    await engine.put_part(upload, 1, chunks_of(data), expected_size=len(data))
    with pytest.raises(Exception) as error:
        await engine.complete(upload)
    assert error.value.status == 400 and "sha256 mismatch" in error.value.message
    assert error.value.body()["sha256"] == hashlib.sha256(data).hexdigest()
    assert await object_bytes(engine, bucket_id, "bad.bin") is None


async def test_retained_upload_publishes_to_several_targets(make_engine):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    other_bucket = await new_bucket(engine, bucket_type="training-data")
    data = os.urandom(6 * MiB + 1)
    upload = await engine.create("offset", bucket_id, "first.bin", "alice", retain=True)
    upload = await engine.append(upload, 0, chunks_of(data))
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(Exception) as error:
        await engine.complete(upload, sha256="1" * 64)
    assert error.value.status == 400
    assert await object_bytes(engine, bucket_id, "first.bin") is None
    info = await engine.complete(upload, sha256=digest)
    assert info["key"] == "first.bin" and info["sha256"] == digest
    again = await engine.complete(upload, target=(other_bucket, "copy/second.bin"))
    assert again["bucket_id"] == other_bucket
    assert await object_bytes(engine, other_bucket, "copy/second.bin") == data
    assert await object_bytes(engine, bucket_id, "first.bin") == data
    upload = await engine.get(upload.id, "alice")
    assert len(upload.result["published"]) == 2


async def test_get_rules_owner_bucket_key_gone(make_engine, engine_settings):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    upload = await engine.create("multipart", bucket_id, "k", "alice")
    for owner, bucket, key in (("bob", None, None), ("alice", str(uuid.uuid4()), None), ("alice", None, "other")):
        with pytest.raises(NotFound):
            await engine.get(upload.id, owner, bucket_id=bucket, key=key)
    with pytest.raises(NotFound):
        await engine.get("not-a-uuid", "alice")
    async with cursor(engine.pool) as cur:
        await cur.execute("UPDATE uploads SET expires_at = now() - interval '1 second' WHERE id = %s", (upload.id,))
    with pytest.raises(Gone):
        await engine.get(upload.id, "alice")
    await engine.reap(orphans=False)
    with pytest.raises(NotFound):
        await engine.get(upload.id, "alice")


async def test_abort_releases_everything(make_engine):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    upload = await engine.create("tus", bucket_id, "abort.bin", "alice")
    upload = await engine.append(upload, 0, chunks_of(os.urandom(7 * MiB)))
    assert await open_mpus(engine, upload) and await staging_keys(engine, upload)
    await engine.abort(upload)
    assert await open_mpus(engine, upload) == [] and await staging_keys(engine, upload) == []
    with pytest.raises(NotFound):
        await engine.get(upload.id, "alice")
    # before a bucket is deleted: every unfinished upload into it goes
    others = [await engine.create("tus", bucket_id, f"gone-{n}.bin", "alice") for n in range(2)]
    await engine.append(others[0], 0, chunks_of(b"q" * 10))
    assert await engine.abort_bucket(bucket_id) == 2
    for upload in others:
        assert await open_mpus(engine, upload) == [] and await staging_keys(engine, upload) == []


async def test_reaper_leaves_no_multipart_upload_or_staging_object(make_engine, engine_settings):
    engine = await make_engine(engine_settings.replace(upload_ttl=1.0), orphan_grace=0)
    bucket_id = await new_bucket(engine)
    uploads = []
    for protocol, retain in (("tus", False), ("offset", True), ("session", False)):
        upload = await engine.create(protocol, bucket_id, f"reap-{protocol}.bin", "alice",
                                     retain=retain, length=None if protocol != "session" else 6 * MiB)
        if protocol == "session":
            await engine.put_part(upload, 1, chunks_of(os.urandom(5 * MiB)), expected_size=5 * MiB)
        else:
            await engine.append(upload, 0, chunks_of(os.urandom(6 * MiB)))
        uploads.append(upload)
    # an S3 multipart upload that no row knows about, and a staging object of a vanished upload
    orphan_location = engine.mapping.object(bucket_id, "orphan.bin")
    orphan_id = await engine.store.create_multipart(orphan_location)
    ghost = Location(uploads[0].s3_bucket, f"{STAGING_PREFIX}uploads/{uuid.uuid4()}/tail-x")
    await engine.store.put_bytes(ghost, b"ghost")
    await asyncio.sleep(1.5)
    counts = await engine.reap()
    assert counts["uploads"] >= 3 and counts["multipart_uploads"] >= 1 and counts["staging_objects"] >= 1
    for upload in uploads:
        assert await open_mpus(engine, upload) == [] and await staging_keys(engine, upload) == []
        with pytest.raises(NotFound):
            await engine.get(upload.id, "alice")
    listed = await engine.store.list_multipart_uploads(orphan_location.bucket)
    assert orphan_id not in [item["UploadId"] for item in listed]
    assert await engine.store.head(ghost) is None
    text = engine.metrics.render()[0].decode()
    assert 'sagestore_uploads_reaped_total{what="uploads"}' in text


async def test_concatenation_copies_parts_server_side_and_merges_short_ones(make_engine):
    """tus concatenation: partial uploads without a target are kept assembled; the final upload
    takes them as UploadPartCopy parts, reading only pieces shorter than S3's minimum part."""
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    blobs = [os.urandom(7 * MiB), os.urandom(2 * MiB), os.urandom(6 * MiB), os.urandom(MiB + 5)]
    partials = []
    for blob in blobs:
        partial = await engine.create("tus", None, None, "alice", length=len(blob))
        assert partial.staged and partial.bucket_id is None
        partial = await engine.append(partial, 0, chunks_of(blob))
        result = await engine.complete(partial)
        assert result["assembled"] is True and result["size"] == len(blob)
        assert await engine.complete(partial) == result  # idempotent
        partials.append(partial)
    unfinished = await engine.create("tus", None, None, "alice", length=10)
    final = await engine.create("tus", bucket_id, "concat.bin", "alice",
                                concat_sources=[p.id for p in partials] + [unfinished.id])
    assert [u.id for u in await engine.finals_waiting_for(unfinished.id)] == [final.id]
    with pytest.raises(Exception) as error:
        await engine.concatenate(final, partials + [unfinished])
    assert error.value.status == 409
    info = await engine.concatenate(final, partials)
    assert info["size"] == sum(map(len, blobs))
    assert await object_bytes(engine, bucket_id, "concat.bin") == b"".join(blobs)
    final = await engine.get(final.id, "alice")
    assert [part.size for part in final.parts] == [7 * MiB, 5 * MiB, 4 * MiB + 5]
    assert final.state == "completed"


async def test_bad_inputs_are_400_and_change_nothing(make_engine):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    sequential = await engine.create("tus", bucket_id, "seq.bin", "alice")
    indexed = await engine.create("session", bucket_id, "idx.bin", "alice", length=MiB)
    attempts = [
        engine.put_part(sequential, 1, chunks_of(b"x")),
        engine.append(indexed, 0, chunks_of(b"x")),
        engine.append(sequential, -1, chunks_of(b"x")),
        engine.put_part(indexed, 2, chunks_of(b"x"), expected_size=indexed.expected_part_size(1)),
        engine.put_part(indexed, 1, chunks_of(b"x"), checksums={"sha256": "not base64!"}),
        engine.put_part(indexed, 1, chunks_of(b"x"), checksums={"whirlpool": "AAAA"}),
        engine.create("tus", bucket_id, "../escape", "alice"),
        engine.create("tus", bucket_id, "k", "alice", sha256="xyz"),
        engine.create("tus", bucket_id, "k", "alice", checksum_algorithm="MD5"),
        engine.create("session", bucket_id, "k", "alice", length=100 * MiB, part_size=MiB),
        engine.complete(sequential, sha256="a" * 64),
    ]
    for attempt in attempts:
        with pytest.raises(Exception) as error:
            await attempt
        assert error.value.status == 400, error.value
    with pytest.raises(PayloadTooLarge):
        await engine.create("tus", bucket_id, "k", "alice", length=engine.settings.max_upload_size + 1)
    for upload in (sequential, indexed):
        fresh = await engine.get(upload.id, "alice")
        assert fresh.state == "open" and fresh.offset == 0 and fresh.parts == []


async def test_two_reapers_share_the_work_without_doubles(make_engine, engine_settings, fresh_database_url):
    # Deterministic under any load: a database of its own (on the session's, uploads other tests
    # left would expire meanwhile and be reaped too), and the uploads expire when the test says
    # so (their expiry moved to the past) instead of racing a short TTL against the writes.
    own = engine_settings.replace(database_url=fresh_database_url)
    first = await make_engine(own)
    second = await make_engine(own)
    bucket_id = await new_bucket(first)
    uploads = [await first.create("tus", bucket_id, f"r{n}.bin", "alice") for n in range(8)]
    for upload in uploads[:4]:
        await first.append(upload, 0, chunks_of(b"t" * 1000))
    async with transaction(first.pool) as cur:
        await cur.execute("UPDATE uploads SET expires_at = now() - interval '1 second'")
    async with cursor(first.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM uploads WHERE expires_at < now()"
                          " AND state IN ('open', 'completing', 'completed')")
        due = (await cur.fetchone())["n"]
    results = await asyncio.gather(first.reap(batch=2, orphans=False), second.reap(batch=2, orphans=False))
    assert sum(result["uploads"] for result in results) == due == 8
    for upload in uploads:
        assert await open_mpus(first, upload) == [] and await staging_keys(first, upload) == []


async def test_client_parts_completion_retried_after_a_crash_past_complete_multipart(make_engine):
    """A completion that died between S3's CompleteMultipartUpload and its commit (found by the
    kill -9 matrix, seed 20261203): S3 no longer lists the parts, and the retry with the same list
    used to be 404 forever. It now checks the list against the recorded parts and finishes."""
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    upload = await engine.create("multipart", bucket_id, "crashed.bin", "alice")
    data = [os.urandom(5 * MiB), os.urandom(123)]
    parts = []
    for number, blob in enumerate(data, start=1):
        part = await engine.put_part(upload, number, chunks_of(blob))
        parts.append({"part_number": number, "etag": part.etag})
    first = await engine.complete(upload, parts=parts)
    # the crash: S3 completed the upload, our commit never happened
    async with transaction(engine.pool) as cur:
        await cur.execute("UPDATE uploads SET state = 'open', result = NULL WHERE id = %s", (upload.id,))
    again = await engine.complete(await engine.get(upload.id, "alice"), parts=parts)
    assert again["etag"] == first["etag"] and again["size"] == sum(map(len, data))
    assert (await engine.get(upload.id, "alice")).state == "completed"
    assert await object_bytes(engine, bucket_id, "crashed.bin") == b"".join(data)
    wrong = [parts[0], {"part_number": 2, "etag": '"' + "0" * 32 + '"'}]
    async with transaction(engine.pool) as cur:
        await cur.execute("UPDATE uploads SET state = 'open', result = NULL WHERE id = %s", (upload.id,))
    with pytest.raises(BadRequest):  # a list that is not what was recorded is still refused
        await engine.complete(await engine.get(upload.id, "alice"), parts=wrong)


def verifications(engine: UploadEngine, how: str) -> float:
    return engine.metrics.registry.get_sample_value("sagestore_upload_sha256_verifications_total",
                                                    {"how": how}) or 0.0


async def test_sequential_upload_is_hashed_as_it_comes_and_assembled_at_its_target(make_engine):
    """An offset upload's sha256 is committed with every offset (any instance takes it up), so
    completion verifies it before CompleteMultipartUpload at the target: no staging object, no
    read-back, no copy; publishing elsewhere copies from the published target while it is intact."""
    first, second = await make_engine(), await make_engine()
    bucket_id, other_bucket = await new_bucket(first), await new_bucket(first, bucket_type="training-data")
    data = os.urandom(17 * MiB + 5)

    async def cut_after(blob: bytes, count: int):
        async for chunk in chunks_of(blob[:count]):
            yield chunk
        raise ConnectionResetError("client went away")

    upload = await first.create("offset", bucket_id, "in/place.bin", "alice", retain=True)
    assert not upload.staged and upload.s3_key == first.mapping.object(bucket_id, "in/place.bin").key
    upload = await first.append(upload, 0, cut_after(data, 7 * MiB + 3))  # cut off: 1 part + a tail
    assert upload.sha256_so_far == hashlib.sha256(data[:upload.offset]).hexdigest()
    upload = await second.get(upload.id, "alice")  # another instance goes on from the committed state
    for end in (12 * MiB + 1, len(data)):
        upload = await second.append(upload, upload.offset, chunks_of(data[upload.offset:end]))
        assert upload.sha256_so_far == hashlib.sha256(data[:end]).hexdigest()
    digest = hashlib.sha256(data).hexdigest()

    with pytest.raises(BadRequest) as error:
        await second.complete(upload, sha256="2" * 64)
    assert "sha256 mismatch" in error.value.message and error.value.body()["sha256"] == digest
    assert await object_bytes(second, bucket_id, "in/place.bin") is None  # nothing was published
    assert (await second.get(upload.id, "alice")).state == "open" and await open_mpus(second, upload)

    read_back = verifications(second, "read_back")
    info = await second.complete(upload, sha256=digest)
    assert info["sha256"] == digest and info["size"] == len(data)
    assert verifications(second, "read_back") == read_back and verifications(second, "received") >= 1
    head = await second.store.head(second.mapping.object(bucket_id, "in/place.bin"))
    assert head.metadata["sha256"] == digest  # GET's Repr-Digest comes from it
    assert head.etag.strip('"') == info["etag"].strip('"')
    assert await object_bytes(second, bucket_id, "in/place.bin") == data
    assert await staging_keys(second, upload) == []  # never a staged object, and the tails are gone

    again = await second.complete(upload, target=(other_bucket, "copies/one.bin"))
    assert again["sha256"] == digest and await object_bytes(second, other_bucket, "copies/one.bin") == data
    assert await second.complete(upload) == info  # its own target again: the same answer, no copy
    # the published target replaced: a later publication must not copy someone else's bytes
    await second.store.put_bytes(second.mapping.object(bucket_id, "in/place.bin"), b"replaced")
    with pytest.raises(Gone):
        await second.complete(upload, target=(other_bucket, "copies/two.bin"))
    assert await object_bytes(second, other_bucket, "copies/two.bin") is None


async def test_tus_upload_with_a_declared_sha256_is_verified_without_staging(make_engine):
    engine = await make_engine()
    bucket_id = await new_bucket(engine)
    data = os.urandom(6 * MiB)
    wrong = await engine.create("tus", bucket_id, "tus-wrong.bin", "alice", length=len(data), sha256="3" * 64)
    assert not wrong.staged
    wrong = await engine.append(wrong, 0, chunks_of(data))
    with pytest.raises(BadRequest):
        await engine.complete(wrong)
    assert await object_bytes(engine, bucket_id, "tus-wrong.bin") is None
    digest = hashlib.sha256(data).hexdigest()
    right = await engine.create("tus", bucket_id, "tus-right.bin", "alice", length=len(data), sha256=digest)
    right = await engine.append(right, 0, chunks_of(data))
    assert (await engine.complete(right))["sha256"] == digest
    assert await object_bytes(engine, bucket_id, "tus-right.bin") == data
