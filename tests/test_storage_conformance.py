"""The storage conformance suite: every operation of the storage contract (sagestore.storage.ObjectStore)
against every store: the S3 store on SeaweedFS and on moto, and the in-memory store.

Each backend is a session fixture yielding {"endpoint", "access_key", "secret_key"} (the memory
backend: a MemorySpace) plus a Behaviour describing where stores legitimately differ. Every
Behaviour field is asserted on every backend, both ways: a backend that does not enforce
something is shown to accept it, so the table below is checked, never assumed. Adding a backend
is one line in BACKENDS (plus its server fixture). Failures are the contract's typed errors
(sagestore.storage.StorageError and its kinds), whatever the store.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import AsyncIterator

import contextlib
import pytest
import requests

from support.data import sha256
from sagestore.embedded import free_port
from sagestore.storage import (ChecksumMismatch, InvalidRange, Location, MemoryObjectStore, MemorySpace, ObjectStore,
                               PartBody, S3ObjectStore, SourceChanged, StorageBusy, StorageError, StorageUnavailable,
                               md5_base64, open_object_store)
from sagestore.storage.digests import crc32c_b64
from sagestore.storage.s3 import translated

MiB = 2**20
PART = 5 * MiB  # the S3 minimum, so moto (objects in RAM) stays small


@dataclass(frozen=True)
class Behaviour:
    """What a backend answers where S3 implementations differ ('ok' = accepted)."""
    create_existing_bucket: str   # CreateBucket on a bucket we already own
    reversed_range: str           # GET Range: bytes=5-2 (syntactically invalid)
    unordered_parts: str          # CompleteMultipartUpload with parts [2, 1] (moto joins them in that order)
    wrong_part_etag: str          # ... with a part ETag that was never returned
    small_middle_part: str        # ... with a non-last part under 5 MiB
    bad_content_md5: str          # UploadPart with a Content-MD5 of other bytes
    bad_checksum_sha256: str      # UploadPart with x-amz-checksum-sha256 of other bytes
    bad_checksum_crc32c_unsigned: str  # UNSIGNED-PAYLOAD PutObject/UploadPart whose signed crc32c is of other bytes
    part_copy_beyond_source: str  # UploadPartCopy with a range past the source's end
    upload_part_after_abort: str  # UploadPart to an aborted upload
    flat_listing_order: str       # without delimiter: "bytes" (S3: UTF-8 byte order) or "tree" (path segments
                                  # compared one by one: SeaweedFS lists 'a/1' before 'a-file')
    part_copy_etag_is_range_md5: bool  # UploadPartCopy's ETag is the MD5 of the copied bytes
    checks_signatures: bool       # wrong secret, tampered or expired presigned URL refused
    presigned_urls: bool          # presigned GET/PUT/UploadPart URLs usable with a plain HTTP client
                                  # (moto with its auth mode on answers them 500; we run it with auth off)
    cut_off_part_listed: bool     # an UploadPart whose body was cut off leaves an empty part in ListParts
                                  # (the engine never trusts ListParts for sizes: its parts come from its rows)
    copy_source_if_match: bool    # CopyObject/UploadPartCopy refuse a source whose ETag is not x-amz-copy-source-if-match
                                  # (moto ignores it; the engine also checks the ETag by HEAD first)
    s3_wire: bool = True          # an S3 server behind the store: the checks through its raw client run too


SEAWEEDFS = Behaviour(
    create_existing_bucket="BucketAlreadyOwnedByYou", reversed_range="InvalidRange",
    unordered_parts="InvalidPartOrder", wrong_part_etag="InvalidPart", small_middle_part="EntityTooSmall",
    bad_content_md5="BadDigest", bad_checksum_sha256="BadDigest", bad_checksum_crc32c_unsigned="BadDigest",
    part_copy_beyond_source="InvalidRange",
    upload_part_after_abort="NoSuchUpload", flat_listing_order="tree", part_copy_etag_is_range_md5=False,
    # cut_off_part_listed: True while botocore sent Expect: 100-continue (SeaweedFS then registered
    # the part on the 100); sagestore drops that header (it made aiohttp wait without a timeout)
    checks_signatures=True, presigned_urls=True, cut_off_part_listed=False, copy_source_if_match=True)

MOTO = Behaviour(
    create_existing_bucket="ok", reversed_range="ok", unordered_parts="ok", wrong_part_etag="InvalidPart",
    small_middle_part="EntityTooSmall", bad_content_md5="ok", bad_checksum_sha256="ok",
    bad_checksum_crc32c_unsigned="ok",
    part_copy_beyond_source="ok", upload_part_after_abort="500", flat_listing_order="bytes",
    part_copy_etag_is_range_md5=True,
    checks_signatures=False, presigned_urls=True, cut_off_part_listed=False, copy_source_if_match=False)

# the in-memory store takes the strict side wherever the S3 servers above differ; it has no
# presigned URLs (its capabilities say so) and no signatures to check
MEMORY = Behaviour(
    create_existing_bucket="ok", reversed_range="InvalidRange", unordered_parts="InvalidPartOrder",
    wrong_part_etag="InvalidPart", small_middle_part="EntityTooSmall", bad_content_md5="BadDigest",
    bad_checksum_sha256="BadDigest", bad_checksum_crc32c_unsigned="BadDigest", part_copy_beyond_source="InvalidRange",
    upload_part_after_abort="NoSuchUpload", flat_listing_order="bytes", part_copy_etag_is_range_md5=True,
    checks_signatures=False, presigned_urls=False, cut_off_part_listed=False, copy_source_if_match=True,
    s3_wire=False)

# name -> (session fixture yielding the endpoint and credentials, its Behaviour)
BACKENDS: dict[str, tuple[str, Behaviour]] = {
    "seaweedfs": ("s3_backend", SEAWEEDFS),
    "moto": ("moto_backend", MOTO),
    "memory": ("memory_backend", MEMORY),
}


@dataclass(frozen=True)
class Backend:
    name: str
    endpoint: str
    access_key: str
    secret_key: str
    behaviour: Behaviour
    space: MemorySpace | None = None  # the memory backend's buckets, shared by every store opened on it


@pytest.fixture(scope="session")
def memory_backend() -> dict:
    """The in-memory store's space: what an S3 server is to the stores opened on it."""
    return {"endpoint": "", "access_key": "", "secret_key": "", "space": MemorySpace()}


@pytest.fixture(scope="session")
def moto_backend() -> dict[str, str]:
    """A moto server over HTTP (objects in RAM, no signature checks)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # generous: moto's first answer is slow on a loaded machine
    while True:
        try:
            requests.get(endpoint + "/", timeout=10)
            break
        except requests.RequestException:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("moto server did not start")
            time.sleep(0.1)
    yield {"endpoint": endpoint, "access_key": "moto-access", "secret_key": "moto-secret"}
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="session", params=list(BACKENDS))
def backend(request) -> Backend:
    fixture_name, behaviour = BACKENDS[request.param]
    server = request.getfixturevalue(fixture_name)
    return Backend(request.param, server["endpoint"], server["access_key"], server["secret_key"], behaviour,
                   server.get("space"))


def _open(backend: Backend, **overrides):
    if backend.space is not None:
        return _open_memory(backend.space, **overrides)
    kwargs = dict(endpoint=backend.endpoint, access_key=backend.access_key, secret_key=backend.secret_key,
                  region="us-east-1", part_size=PART, parts_in_flight=3)
    return open_object_store(**{**kwargs, **overrides})


@contextlib.asynccontextmanager
async def _open_memory(space: MemorySpace, *, transfers_in_flight: int = 16, read_timeout: float = 15.0,
                       max_attempts: int = 2, **_credentials) -> AsyncIterator[MemoryObjectStore]:
    """A memory store with the options _open gives S3 stores (the S3 call bound is its transfer wait)."""
    yield MemoryObjectStore(space, part_size=PART, parts_in_flight=3, transfers_in_flight=transfers_in_flight,
                            transfer_wait=read_timeout * max_attempts)


def with_limits(store: ObjectStore, *, single_copy_limit: int) -> ObjectStore:
    """The same store (same bucket space) with small copy limits: the path taken above 5 GiB."""
    if isinstance(store, MemoryObjectStore):
        limited: ObjectStore = MemoryObjectStore(store.space, part_size=PART, single_copy_limit=single_copy_limit)
    else:
        limited = S3ObjectStore(store.client, part_size=PART, single_copy_limit=single_copy_limit)
    limited.copy_part_size = PART
    return limited


async def presigned(store: ObjectStore, *args, **params) -> str | None:
    """A presigned URL; None from a store whose capabilities say it has none (presign then raises)."""
    if not store.capabilities.presigned_urls:
        with pytest.raises(StorageError):
            await store.presign(*args, **params)
        return None
    return await store.presign(*args, **params)


@pytest.fixture(scope="session")
async def store(backend) -> AsyncIterator[ObjectStore]:
    async with _open(backend) as store:
        yield store


@pytest.fixture(scope="session")
async def bucket(store) -> str:
    name = f"conformance-{uuid.uuid4().hex[:10]}"
    await store.ensure_buckets([name])
    return name


@pytest.fixture
def at(bucket):
    """Location factory under a prefix of this test's own."""
    prefix = f"t-{uuid.uuid4().hex[:10]}/"

    def location(key: str = "") -> Location:
        return Location(bucket, prefix + key)
    return location


async def outcome(awaitable) -> str:
    """'ok', or the store's error code the call failed with."""
    try:
        await awaitable
        return "ok"
    except StorageError as error:
        return error.code


async def s3_call(awaitable):
    """A call of an S3 store's raw aiobotocore client, its errors translated as the store's own calls."""
    with translated():
        return await awaitable


async def odd_chunks(data: bytes, sizes=(1, 7, 0, 65_537, 1_000_003, 13)) -> AsyncIterator[bytes]:
    """data in chunks of awkward sizes (including empty ones), as a request body arrives."""
    offset, index = 0, 0
    while offset < len(data):
        size = sizes[index % len(sizes)]
        yield data[offset:offset + size]
        offset += size
        index += 1
        if index % 8 == 0:
            await asyncio.sleep(0)


async def read(store: ObjectStore, location: Location, byte_range: str | None = None) -> bytes:
    stream = await store.open(location, byte_range)
    assert stream is not None
    return b"".join([chunk async for chunk in stream.chunks(100_000)])


def quoted_md5(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


# --- buckets ---------------------------------------------------------------

async def test_ensure_buckets_is_idempotent_and_safe_concurrently(store, backend):
    names = [f"conformance-{uuid.uuid4().hex[:10]}" for _ in range(3)]
    assert await store.ensure_buckets(names[:2]) == 2
    assert await store.ensure_buckets(names[:2]) == 0
    # two instances starting at once: both may see the bucket missing and both create it (always so
    # in memory; over the wire the second listing can come after the first creation, as in a CI
    # run under load): neither fails, and the bucket is created
    created = await asyncio.gather(store.ensure_buckets(names), store.ensure_buckets(names))
    assert sorted(created) in ([0, 1], [1, 1])
    if not backend.behaviour.s3_wire:
        assert created == [1, 1]
    for name in names:
        await store.ping(name)
    if backend.behaviour.s3_wire:
        answer = await outcome(s3_call(store.client.create_bucket(Bucket=names[0])))
        assert answer == backend.behaviour.create_existing_bucket


# --- whole objects -----------------------------------------------------------

async def test_put_bytes_head_open(store, at):
    data = os.urandom(300_001)
    location = at("dir/ü file.bin")
    etag = await store.put_bytes(location, data, content_type="application/x-test", metadata={"owner": "alice"})
    assert etag == quoted_md5(data)
    info = await store.head(location)
    assert (info.key, info.size, info.etag, info.content_type) == (location.key, len(data), etag, "application/x-test")
    assert info.metadata == {"owner": "alice"}
    stream = await store.open(location)
    assert stream.content_length == len(data) and stream.content_range is None
    assert stream.info.metadata == {"owner": "alice"} and stream.info.size == len(data)
    assert b"".join([chunk async for chunk in stream.chunks(65_536)]) == data
    assert await store.read_all(location) == data


async def test_head_and_open_of_missing_object_are_none(store, at, bucket):
    assert await store.head(at("missing")) is None
    assert await store.open(at("missing")) is None
    assert await store.open(at("missing"), "bytes=0-9") is None
    assert await store.read_all(at("missing")) is None
    assert await store.head(Location(bucket + "-nonexistent", "k")) is None


async def test_put_stream_small_body_is_one_put_object(store, at, bucket):
    data = os.urandom(PART - 1)
    seen = []
    result = await store.put_stream(at("small"), odd_chunks(data), content_type="text/x-small",
                                    metadata={"owner": "bob"}, on_bytes=seen.append)
    assert (result.size, result.sha256) == (len(data), sha256(data))
    assert sum(seen) == len(data)
    assert result.etag == quoted_md5(data)  # a single PutObject: the ETag is the body's MD5
    info = await store.head(at("small"))
    assert info.metadata == {"owner": "bob", "sha256": sha256(data)}
    assert info.content_type == "text/x-small"
    assert await read(store, at("small")) == data
    assert await store.list_multipart_uploads(bucket, at().key) == []


@pytest.mark.parametrize("sha256_key", ["sha256", None])
async def test_put_stream_large_body_is_multipart(store, at, bucket, sha256_key):
    data = os.urandom(2 * PART + 123_457)
    location = at("big.bin")
    result = await store.put_stream(location, odd_chunks(data), content_type="application/x-big",
                                    metadata={"owner": "carol"}, sha256_metadata_key=sha256_key)
    assert (result.size, result.sha256) == (len(data), sha256(data))
    info = await store.head(location)
    assert info.size == len(data) and info.content_type == "application/x-big"
    assert await read(store, location) == data
    assert await store.list_multipart_uploads(bucket, at().key) == []
    if sha256_key:
        assert info.metadata == {"owner": "carol", "sha256": sha256(data)}
    else:
        # no metadata rewrite: the multipart ETag shows the three parts
        assert info.metadata == {"owner": "carol"}
        assert result.etag.strip('"').endswith("-3") and info.etag == result.etag


@pytest.mark.parametrize("size", [1000, 2 * PART + 77], ids=["single-put", "multipart"])
async def test_put_stream_with_declared_sha256(store, at, bucket, size):
    data = os.urandom(size)
    result = await store.put_stream(at("declared"), odd_chunks(data), metadata={"owner": "gus"},
                                    expected_sha256=sha256(data).upper())
    assert result.sha256 == sha256(data)
    if size > PART:
        # known from the start, so no metadata rewrite after completion: the multipart ETag stays
        assert result.etag.strip('"').endswith("-3")
    info = await store.head(at("declared"))
    assert info.metadata == {"owner": "gus", "sha256": sha256(data)}
    assert await read(store, at("declared")) == data

    with pytest.raises(ChecksumMismatch) as caught:
        await store.put_stream(at("mismatch"), odd_chunks(data), expected_sha256=sha256(b"other"))
    assert (caught.value.expected, caught.value.actual) == (sha256(b"other"), sha256(data))
    assert await store.head(at("mismatch")) is None
    assert await store.list_multipart_uploads(bucket, at().key) == []


async def test_put_stream_exact_part_multiple(store, at):
    data = os.urandom(2 * PART)
    result = await store.put_stream(at("exact"), odd_chunks(data, (PART,)), sha256_metadata_key=None)
    assert result.etag.strip('"').endswith("-2")
    assert await read(store, at("exact")) == data


async def test_put_stream_zero_bytes(store, at):
    async def nothing():
        for _ in range(3):
            yield b""
    result = await store.put_stream(at("empty"), nothing())
    assert (result.size, result.sha256) == (0, sha256(b""))
    info = await store.head(at("empty"))
    assert info.size == 0 and info.metadata == {"sha256": sha256(b"")}
    assert await read(store, at("empty")) == b""


@pytest.mark.parametrize("fail_after", [PART // 2, 2 * PART + 10], ids=["before-first-part", "after-two-parts"])
async def test_put_stream_failing_body_leaves_nothing(store, at, bucket, fail_after):
    async def broken() -> AsyncIterator[bytes]:
        sent = 0
        while sent < fail_after:
            yield os.urandom(100_003)
            sent += 100_003
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put_stream(at("broken"), broken())
    assert await store.head(at("broken")) is None
    assert await store.list_multipart_uploads(bucket, at().key) == []


async def test_put_stream_cancelled_mid_way_leaves_nothing(store, at, bucket):
    received = 0
    stalled = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        nonlocal received
        while received < 2 * PART + 1:
            yield b"x" * 65_536
            received += 65_536
        stalled.set()
        await asyncio.sleep(3600)
        yield b"never"

    task = asyncio.create_task(store.put_stream(at("cancelled"), stalls()))
    await asyncio.wait_for(stalled.wait(), 30)
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.head(at("cancelled")) is None
    assert await store.list_multipart_uploads(bucket, at().key) == []


# --- ranges ------------------------------------------------------------------

@pytest.mark.parametrize("byte_range, start, end", [
    ("bytes=0-9", 0, 9), ("bytes=10-", 10, 99), ("bytes=-5", 95, 99), ("bytes=99-", 99, 99),
    ("bytes=90-200", 90, 99), ("bytes=0-0", 0, 0),
])
async def test_streaming_get_with_range(store, at, byte_range, start, end):
    data = bytes(range(100))
    await store.put_bytes(at("r"), data)
    stream = await store.open(at("r"), byte_range)
    assert stream.content_range == f"bytes {start}-{end}/100"
    assert stream.content_length == end - start + 1
    assert stream.info.size == 100  # the whole object's size, from Content-Range
    assert b"".join([chunk async for chunk in stream.chunks()]) == data[start:end + 1]


@pytest.mark.parametrize("byte_range", ["bytes=100-", "bytes=1000-2000", "bytes=-0"])
async def test_unsatisfiable_range_is_invalid_range(store, at, byte_range):
    await store.put_bytes(at("r"), bytes(range(100)))
    with pytest.raises(InvalidRange) as caught:
        await store.open(at("r"), byte_range)
    assert caught.value.code == "InvalidRange"
    assert caught.value.status == 416


async def test_range_on_empty_object_is_invalid_range(store, at):
    await store.put_bytes(at("e"), b"")
    assert await outcome(store.open(at("e"), "bytes=0-9")) == "InvalidRange"


async def test_reversed_range(store, at, backend):
    """RFC 9110 says ignore an invalid range and send everything (moto); SeaweedFS answers 416.
    Callers must therefore validate Range headers themselves before calling open()."""
    data = bytes(range(100))
    await store.put_bytes(at("r"), data)
    result = await outcome(store.open(at("r"), "bytes=5-2"))
    assert result == backend.behaviour.reversed_range
    if result == "ok":
        stream = await store.open(at("r"), "bytes=5-2")
        assert stream.content_range is None and await stream.body.read() == data


# --- listing -----------------------------------------------------------------

NAMES = ["a/1", "a/2", "b/x/y", "B", "c.txt", "é.txt", "~tilde", "a-file", "z/deep/er/k", "sp ace"] + \
        [f"f{number:02d}" for number in range(16)]


async def _populate(store, at, names=NAMES) -> None:
    semaphore = asyncio.Semaphore(16)

    async def put(name):
        async with semaphore:
            await store.put_bytes(at(name), name.encode())
    await asyncio.gather(*(put(name) for name in names))


async def test_list_with_delimiter(store, at):
    await _populate(store, at)
    page = await store.list(at())
    assert page.common_prefixes == [at("a/").key, at("b/").key, at("z/").key]
    files = sorted(name for name in NAMES if "/" not in name)
    assert [item.key for item in page.contents] == [at(name).key for name in files]
    assert files[0] == "B" and files[-1] == "é.txt"  # byte order: upper case first, UTF-8 last
    assert [item.size for item in page.contents] == [len(name.encode()) for name in files]
    assert all(item.etag == quoted_md5(name.encode()) for item, name in zip(page.contents, files))
    assert not page.is_truncated and page.next_token is None
    assert page.key_count == len(files) + 3

    nested = await store.list(at("b/"))
    assert nested.common_prefixes == [at("b/x/").key] and nested.contents == []
    deep = await store.list(at("b/x/"))
    assert [item.key for item in deep.contents] == [at("b/x/y").key]
    assert (await store.list(at("nothing-here/"))).contents == []


def flat_order(names: list[str], backend: Backend) -> list[str]:
    if backend.behaviour.flat_listing_order == "tree":
        return sorted(names, key=lambda name: name.split("/"))
    return sorted(names)


async def test_list_without_delimiter_and_start_after(store, at, backend):
    await _populate(store, at)
    page = await store.list(at(), delimiter=None)
    expected = [at(name).key for name in flat_order(NAMES, backend)]
    assert [item.key for item in page.contents] == expected
    assert page.common_prefixes == []
    for start in ("f05", "a-file", "a/1", "B"):
        after = await store.list(at(), delimiter=None, start_after=at(start).key)
        assert [item.key for item in after.contents] == expected[expected.index(at(start).key) + 1:]


@pytest.mark.parametrize("delimiter, max_keys", [(None, 7), ("/", 4), ("/", 1)])
async def test_list_pagination(store, at, delimiter, max_keys):
    await _populate(store, at)
    everything = await store.list(at(), delimiter=delimiter)
    keys, prefixes, token, pages = [], [], None, 0
    while True:
        page = await store.list(at(), delimiter=delimiter, max_keys=max_keys, continuation_token=token)
        pages += 1
        assert 0 < len(page.contents) + len(page.common_prefixes) <= max_keys
        keys += [item.key for item in page.contents]
        prefixes += page.common_prefixes
        if not page.is_truncated:
            assert page.next_token is None
            break
        assert page.next_token
        token = page.next_token
    assert keys == [item.key for item in everything.contents]
    assert prefixes == everything.common_prefixes
    assert pages == -(-(len(keys) + len(prefixes)) // max_keys)


async def test_iter_keys(store, at, backend):
    await _populate(store, at)
    pages = [page async for page in store.iter_keys(at())]
    assert pages == [[at(name).key for name in flat_order(NAMES, backend)]]
    assert [page async for page in store.iter_keys(at("nothing/"))] == []


# --- deleting ------------------------------------------------------------------

async def test_delete_batch(store, at, backend):
    await _populate(store, at)
    doomed = [at(name).key for name in NAMES[:5]] + [at("never-existed").key]
    assert await store.delete(at().bucket, doomed) == doomed
    left = [key for page in [p async for p in store.iter_keys(at())] for key in page]
    assert left == [at(name).key for name in flat_order(NAMES[5:], backend)]
    assert await store.delete(at().bucket, []) == []


async def test_delete_prefix_over_1000_keys(store, at):
    names = [f"many/{number:05d}" for number in range(1100)]
    await _populate(store, at, names + ["many-sibling", "other/keep"])
    pages = [page async for page in store.iter_keys(at("many/"))]
    assert [len(page) for page in pages] == [1000, 100]
    assert await store.delete_prefix(at("many/")) == 1100
    assert [page async for page in store.iter_keys(at("many/"))] == []
    # the prefix ends in '/', so the sibling 'many-sibling' is untouched
    left = [key for page in [p async for p in store.iter_keys(at())] for key in page]
    assert left == [at("many-sibling").key, at("other/keep").key]


async def test_delete_of_over_1000_keys_in_one_call(store, at):
    names = [f"k{number:04d}" for number in range(1001)]
    await _populate(store, at, names)
    assert len(await store.delete(at().bucket, [at(name).key for name in names])) == 1001
    assert [page async for page in store.iter_keys(at())] == []


# --- multipart primitives -------------------------------------------------------

async def _two_parts(store, location, first=PART, second=1000):
    upload_id = await store.create_multipart(location, content_type="application/x-mp", metadata={"owner": "dan"})
    data = [os.urandom(first), os.urandom(second)]
    parts = []
    for number, body in enumerate(data, start=1):
        response = await store.upload_part(location, upload_id, number, body)
        parts.append({"PartNumber": number, "ETag": response["ETag"]})
    return upload_id, data, parts


async def test_multipart_create_upload_list_complete(store, at, bucket):
    location = at("mp.bin")
    upload_id, data, parts = await _two_parts(store, location)
    uploads = await store.list_multipart_uploads(bucket, at().key)
    assert [(upload["Key"], upload["UploadId"]) for upload in uploads] == [(location.key, upload_id)]
    listed = await store.list_parts(location, upload_id)
    assert [(part["PartNumber"], part["Size"], part["ETag"]) for part in listed] == \
        [(1, PART, quoted_md5(data[0])), (2, 1000, quoted_md5(data[1]))]
    assert [part["ETag"] for part in parts] == [quoted_md5(data[0]), quoted_md5(data[1])]
    assert await store.head(location) is None  # nothing visible before completion
    etag = await store.complete_multipart(location, upload_id, parts)
    assert etag.strip('"').endswith("-2")
    info = await store.head(location)
    assert (info.size, info.content_type, info.metadata) == (PART + 1000, "application/x-mp", {"owner": "dan"})
    assert await read(store, location) == b"".join(data)
    assert await store.list_multipart_uploads(bucket, at().key) == []


async def test_bodies_may_be_bytesio(store, at):
    """An owned BytesIO body spares aiohttp's copy of a bytes body (see put_bytes)."""
    data = os.urandom(PART + 10)
    assert await store.put_bytes(at("bio"), io.BytesIO(data)) == quoted_md5(data)
    upload_id = await store.create_multipart(at("bio-mp"))
    parts = []
    for number, body in enumerate([data[:PART], data[PART:]], start=1):
        response = await store.upload_part(at("bio-mp"), upload_id, number, io.BytesIO(body),
                                           content_md5=md5_base64(body))
        parts.append({"PartNumber": number, "ETag": response["ETag"]})
    await store.complete_multipart(at("bio-mp"), upload_id, parts)
    assert await read(store, at("bio")) == await read(store, at("bio-mp")) == data


async def test_part_body_is_sent_while_it_fills(store, at):
    """A PartBody goes to S3 while it is written: UploadPart starts with no bytes yet, the bytes
    follow in uneven pieces, and the part holds exactly them (with the full part's CRC32C when
    the body is complete before it is sent)."""
    data = os.urandom(PART)
    location = at("streamed")
    upload_id = await store.create_multipart(location)
    body = PartBody(PART)
    sending = asyncio.create_task(store.upload_part(location, upload_id, 1, body))
    for start in range(0, PART, 700_001):
        await asyncio.sleep(0.01)
        assert not sending.done()  # it waits for the rest of the part
        body.write(data[start:start + 700_001])
    streamed = await asyncio.wait_for(sending, 60)
    assert streamed["ETag"] == quoted_md5(data)
    tail = PartBody(PART)  # filled before sending, truncated to its bytes: the last part may be short
    tail.write(b"the end")
    tail.truncate()
    last = await store.upload_part(location, upload_id, 2, tail)
    await store.complete_multipart(location, upload_id, [{"PartNumber": 1, "ETag": streamed["ETag"]},
                                                         {"PartNumber": 2, "ETag": last["ETag"]}])
    assert await read(store, location) == data + b"the end"
    small = PartBody(10)
    small.write(b"0123456789")
    assert await store.put_bytes(at("whole"), small) == quoted_md5(b"0123456789")
    assert await read(store, at("whole")) == b"0123456789"


async def test_an_abandoned_part_body_fails_its_upload_at_once_and_stores_nothing(store, at, backend):
    """A body that will not fill (its client went away) fails the UploadPart in flight at once,
    instead of S3 waiting for bytes that never come; its bytes can still be stored afterwards."""
    location = at("abandoned")
    upload_id = await store.create_multipart(location)
    body = PartBody(PART)
    sending = asyncio.create_task(store.upload_part(location, upload_id, 1, body))
    body.write(os.urandom(MiB))
    await asyncio.sleep(0.2)
    body.abandon()
    # botocore reports the body's ConnectionAbortedError as a connection error (StorageUnavailable);
    # within the deadline, retries included, i.e. well before the 120 s read timeout
    with pytest.raises(StorageUnavailable):
        await asyncio.wait_for(sending, 60)
    listed = await store.list_parts(location, upload_id)
    if backend.behaviour.cut_off_part_listed:
        assert listed and {(part["PartNumber"], part["Size"]) for part in listed} == {(1, 0)}
    else:
        assert listed == []
    body.truncate()  # what did arrive goes elsewhere whole (the engine's staged tail)
    assert await store.put_bytes(at("tail"), body) == quoted_md5(body.getvalue())
    await store.abort_multipart(location, upload_id)


async def test_a_send_begun_before_abandon_never_stores_the_truncated_bytes(store, at, backend):
    """The engine abandons a part body and at once truncates it into its staged tail. A send that
    began before (and whose cancellation may be lost) must fail, not go on to store the truncated
    bytes as the part; a send begun after the truncation stores them whole."""
    location = at("abandoned-then-truncated")
    upload_id = await store.create_multipart(location)
    body = PartBody(PART)
    sending = asyncio.create_task(store.upload_part(location, upload_id, 1, body))
    data = os.urandom(MiB)
    body.write(data)
    await asyncio.sleep(0.2)
    body.abandon()
    body.truncate()  # synchronously, as the engine does: now the body is "full" at 1 MiB
    with pytest.raises(StorageUnavailable):
        await asyncio.wait_for(sending, 60)
    assert all(int(part["Size"]) == 0 for part in await store.list_parts(location, upload_id))
    again = await store.upload_part(location, upload_id, 1, body)  # begun after: the whole short part
    assert again["ETag"] == quoted_md5(data)
    await store.abort_multipart(location, upload_id)


async def test_a_stalled_part_body_gives_up_and_is_sent_whole_later(store, at):
    """A send that waits too long for the next bytes fails (retries included) instead of holding
    an S3 request open; once the body is whole it is sent again, and S3 has exactly its bytes."""
    data = os.urandom(PART)
    location = at("stalled")
    upload_id = await store.create_multipart(location)
    body = PartBody(PART)
    body.STALL_SECONDS = 0.5
    body.write(data[:MiB])
    # PartStalled, reported by botocore as a connection error: one stall, then the retries fail at once
    with pytest.raises(StorageUnavailable):
        await asyncio.wait_for(store.upload_part(location, upload_id, 1, body), 60)
    body.write(data[MiB:])
    response = await store.upload_part(location, upload_id, 1, body)
    assert response["ETag"] == quoted_md5(data)
    await store.complete_multipart(location, upload_id, [{"PartNumber": 1, "ETag": response["ETag"]}])
    assert await read(store, location) == data


@pytest.mark.parametrize("make", [lambda **options: S3ObjectStore(None, **options), MemoryObjectStore],
                         ids=["s3", "memory"])
def test_object_store_refuses_parts_below_the_s3_minimum(make):
    with pytest.raises(ValueError):
        make(part_size=PART - 1)
    with pytest.raises(ValueError):
        make(part_size=PART, parts_in_flight=0)


async def test_multipart_part_overwritten_by_retry(store, at):
    location = at("retry.bin")
    upload_id, data, parts = await _two_parts(store, location)
    again = os.urandom(1000)
    response = await store.upload_part(location, upload_id, 2, again)
    parts[1]["ETag"] = response["ETag"]
    await store.complete_multipart(location, upload_id, parts)
    assert await read(store, location) == data[0] + again


async def test_complete_with_parts_out_of_order(store, at, backend):
    location = at("order.bin")
    upload_id, data, parts = await _two_parts(store, location, PART, PART)
    result = await outcome(store.complete_multipart(location, upload_id, [parts[1], parts[0]]))
    assert result == backend.behaviour.unordered_parts
    if result == "ok":
        # moto assembles the parts in the order listed: ObjectStore callers must sort
        assert await read(store, location) == data[1] + data[0]
    else:
        assert await store.head(location) is None
        await store.abort_multipart(location, upload_id)


async def test_complete_with_wrong_etag(store, at, backend):
    location = at("etag.bin")
    upload_id, _, parts = await _two_parts(store, location)
    wrong = [parts[0], {"PartNumber": 2, "ETag": '"' + "0" * 32 + '"'}]
    assert await outcome(store.complete_multipart(location, upload_id, wrong)) == backend.behaviour.wrong_part_etag
    missing = [parts[0], {"PartNumber": 3, "ETag": parts[1]["ETag"]}]
    assert await outcome(store.complete_multipart(location, upload_id, missing)) == backend.behaviour.wrong_part_etag
    assert await store.head(location) is None
    await store.complete_multipart(location, upload_id, parts)  # the right list still completes


async def test_complete_with_small_middle_part(store, at, backend, bucket):
    location = at("small.bin")
    upload_id = await store.create_multipart(location)
    parts = []
    for number, body in enumerate([b"a" * 1000, b"b" * 10], start=1):
        response = await store.upload_part(location, upload_id, number, body)
        parts.append({"PartNumber": number, "ETag": response["ETag"]})
    assert await outcome(store.complete_multipart(location, upload_id, parts)) == backend.behaviour.small_middle_part
    assert await store.head(location) is None
    await store.abort_multipart(location, upload_id)
    assert await store.list_multipart_uploads(bucket, at().key) == []


async def test_complete_without_parts_is_refused_before_any_call(store, at, bucket):
    location = at("no-parts")
    upload_id = await store.create_multipart(location)
    with pytest.raises(ValueError):
        await store.complete_multipart(location, upload_id, [])
    assert [upload["UploadId"] for upload in await store.list_multipart_uploads(bucket, at().key)] == [upload_id]
    await store.abort_multipart(location, upload_id)


async def test_abort(store, at, bucket, backend):
    location = at("abort.bin")
    upload_id, _, _ = await _two_parts(store, location)
    await store.abort_multipart(location, upload_id)
    assert await store.list_multipart_uploads(bucket, at().key) == []
    assert await store.head(location) is None
    await store.abort_multipart(location, upload_id)  # aborting twice is harmless
    assert await outcome(store.upload_part(location, upload_id, 3, b"late")) == \
        backend.behaviour.upload_part_after_abort


async def test_upload_part_content_md5(store, at, backend):
    location = at("md5.bin")
    upload_id = await store.create_multipart(location)
    good = await store.upload_part(location, upload_id, 1, b"hello", content_md5=md5_base64(b"hello"))
    assert good["ETag"] == quoted_md5(b"hello")
    wrong = store.upload_part(location, upload_id, 2, b"hello", content_md5=md5_base64(b"other"))
    assert await outcome(wrong) == backend.behaviour.bad_content_md5
    checksum = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    wrong = store.upload_part(location, upload_id, 3, b"hello", checksums={"sha256": checksum})
    assert await outcome(wrong) == backend.behaviour.bad_checksum_sha256
    numbers = [part["PartNumber"] for part in await store.list_parts(location, upload_id)]
    rejected = [number for number, behaviour in [(2, backend.behaviour.bad_content_md5),
                                                 (3, backend.behaviour.bad_checksum_sha256)] if behaviour != "ok"]
    assert numbers == [number for number in (1, 2, 3) if number not in rejected]
    await store.abort_multipart(location, upload_id)


async def test_unsigned_payload_is_verified_by_its_signed_crc32c(store, at, backend):
    """The store sends UNSIGNED-PAYLOAD (s3_sign_payload false): a body that does not match
    the signed x-amz-checksum-crc32c is refused (a request corrupted on the way), nothing stored."""
    assert getattr(store, "sign_payload", False) is False
    wrong = crc32c_b64(b"other bytes")
    assert await outcome(store.put_bytes(at("put.bin"), b"hello", crc32c=wrong)) == \
        backend.behaviour.bad_checksum_crc32c_unsigned
    if backend.behaviour.bad_checksum_crc32c_unsigned != "ok":
        assert await store.head(at("put.bin")) is None
    await store.put_bytes(at("good.bin"), b"hello")  # the checksum the store computes itself
    assert await read(store, at("good.bin")) == b"hello"
    location = at("parts.bin")
    upload_id = await store.create_multipart(location)
    wrong = store.upload_part(location, upload_id, 1, b"hello", checksums={"crc32c": crc32c_b64(b"other")})
    assert await outcome(wrong) == backend.behaviour.bad_checksum_crc32c_unsigned
    first = os.urandom(PART)
    parts = [{"PartNumber": 1, "ETag": (await store.upload_part(location, upload_id, 1, first))["ETag"]},
             {"PartNumber": 2, "ETag": (await store.upload_part(location, upload_id, 2, b"tail"))["ETag"]}]
    await store.complete_multipart(location, upload_id, parts)
    assert await read(store, location) == first + b"tail"


async def test_upload_part_copy(store, at, backend):
    source = os.urandom(PART + 3000)
    await store.put_bytes(at("source"), source)
    location = at("assembled")
    upload_id = await store.create_multipart(location, content_type="application/x-asm")
    first = await store.upload_part_copy(location, upload_id, 1, at("source"), (0, PART - 1))
    middle = os.urandom(PART)
    second = await store.upload_part(location, upload_id, 2, middle)
    third = await store.upload_part_copy(location, upload_id, 3, at("source"), (PART, PART + 2999))
    # SeaweedFS derives the ETag from its internal chunks of the source; either way
    # CompleteMultipartUpload accepts exactly what UploadPartCopy returned
    assert (first.strip('"') == quoted_md5(source[:PART]).strip('"')) == backend.behaviour.part_copy_etag_is_range_md5
    beyond = store.upload_part_copy(location, upload_id, 4, at("source"), (PART, PART + 10_000))
    assert await outcome(beyond) == backend.behaviour.part_copy_beyond_source
    parts = [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second["ETag"]},
             {"PartNumber": 3, "ETag": third}]
    await store.complete_multipart(location, upload_id, parts)
    assert await read(store, location) == source[:PART] + middle + source[PART:]
    assert (await store.head(location)).content_type == "application/x-asm"


async def test_list_parts_paginates(store, at, backend):
    location = at("many-parts")
    upload_id = await store.create_multipart(location)
    for number in range(1, 8):
        await store.upload_part(location, upload_id, number, bytes([number]) * 10)
    if backend.behaviour.s3_wire:
        response = await store.client.list_parts(Bucket=location.bucket, Key=location.key, UploadId=upload_id,
                                                 MaxParts=3)
        assert [part["PartNumber"] for part in response["Parts"]] == [1, 2, 3] and response["IsTruncated"]
    assert [part["PartNumber"] for part in await store.list_parts(location, upload_id)] == list(range(1, 8))
    await store.abort_multipart(location, upload_id)


# --- copy ----------------------------------------------------------------------

async def test_copy_replaces_metadata(store, at):
    data = os.urandom(70_000)
    await store.put_bytes(at("src"), data, content_type="text/plain", metadata={"owner": "eve", "x": "1"})
    etag = await store.copy(at("src"), at("dst"), content_type="application/x-copy", metadata={"owner": "fay"},
                            size=len(data))
    assert etag.strip('"') == hashlib.md5(data).hexdigest()
    target = await store.head(at("dst"))
    assert (target.content_type, target.metadata) == ("application/x-copy", {"owner": "fay"})
    assert await read(store, at("dst")) == data
    source = await store.head(at("src"))
    assert (source.content_type, source.metadata) == ("text/plain", {"owner": "eve", "x": "1"})


async def test_copy_onto_itself_rewrites_metadata(store, at):
    data = os.urandom(1000)
    await store.put_bytes(at("self"), data, metadata={"a": "1"})
    await store.replace_metadata(at("self"), content_type="text/x-new", metadata={"b": "2"}, size=len(data))
    info = await store.head(at("self"))
    assert (info.content_type, info.metadata, info.size) == ("text/x-new", {"b": "2"}, 1000)
    assert await read(store, at("self")) == data


@pytest.mark.parametrize("single_copy_limit", [5 * 2**30, 0], ids=["one-copy", "part-by-part"])
async def test_copy_if_match_copies_only_the_object_it_names(store, at, bucket, backend, single_copy_limit):
    """What a retained upload's later publication relies on: a copy from an object that may have
    been replaced since fails (PreconditionFailed) instead of copying the new bytes."""
    chunked = with_limits(store, single_copy_limit=single_copy_limit)
    data = os.urandom(PART + 10)
    etag = await store.put_bytes(at("named"), data)
    await chunked.copy(at("named"), at("copied"), content_type="x/y", metadata={}, size=len(data), if_match=etag)
    assert await read(store, at("copied")) == data
    await chunked.replace_metadata(at("named"), content_type="x/z", metadata={"sha256": "s"}, size=len(data),
                                   if_match=etag)
    assert (await store.head(at("named"))).metadata == {"sha256": "s"}
    replaced = os.urandom(PART + 10)
    await store.put_bytes(at("named"), replaced)
    late = chunked.copy(at("named"), at("late"), content_type="x/y", metadata={}, size=len(data), if_match=etag)
    if not backend.behaviour.copy_source_if_match:
        await late  # documented: such a backend copies the replaced bytes
        return
    with pytest.raises(SourceChanged) as error:
        await late
    assert error.value.code in ("PreconditionFailed", "412")
    assert await store.head(at("late")) is None
    assert await store.list_multipart_uploads(bucket, at().key) == []


@pytest.mark.parametrize("onto_itself", [False, True])
async def test_copy_part_by_part(store, at, bucket, onto_itself):
    """The path taken above 5 GiB, exercised with small limits on the same client."""
    chunked = with_limits(store, single_copy_limit=0)
    data = os.urandom(2 * PART + 4321)
    await store.put_bytes(at("src"), data, metadata={"old": "yes"})
    target = at("src") if onto_itself else at("dst")
    etag = await chunked.copy(at("src"), target, content_type="application/x-parts", metadata={"new": "yes"},
                              size=len(data))
    assert etag.strip('"').endswith("-3")
    info = await store.head(target)
    assert (info.size, info.content_type, info.metadata) == (len(data), "application/x-parts", {"new": "yes"})
    assert await read(store, target) == data
    assert await store.list_multipart_uploads(bucket, at().key) == []


# --- presigned URLs and signatures ------------------------------------------------

async def test_presigned_put_and_get(store, at, backend):
    put_url = await presigned(store, "put_object", at("pre"), 300)
    if put_url is None:
        return
    response = await asyncio.to_thread(requests.put, put_url, data=b"presigned body")
    if not backend.behaviour.presigned_urls:
        # such a backend cannot serve direct-to-storage uploads; this documents it, the suite goes on
        assert response.status_code >= 400 and await store.head(at("pre")) is None
        return
    assert response.status_code == 200
    assert await store.read_all(at("pre")) == b"presigned body"
    get_url = await store.presign("get_object", at("pre"), 300)
    response = await asyncio.to_thread(requests.get, get_url)
    assert (response.status_code, response.content) == (200, b"presigned body")
    response = await asyncio.to_thread(requests.get, get_url, headers={"Range": "bytes=0-8"})
    assert (response.status_code, response.content) == (206, b"presigned")

    tampered = get_url.replace(at("pre").key.split("/")[0], "t-0000000000")
    response = await asyncio.to_thread(requests.get, tampered)
    assert response.status_code == (403 if backend.behaviour.checks_signatures else 404)


async def test_presigned_upload_part(store, at, backend):
    location = at("pre-mp")
    upload_id = await store.create_multipart(location)
    data = [os.urandom(PART), b"tail"]
    parts = []
    for number, body in enumerate(data, start=1):
        url = await presigned(store, "upload_part", location, 300, UploadId=upload_id, PartNumber=number)
        if url is None:
            await store.abort_multipart(location, upload_id)
            return
        response = await asyncio.to_thread(requests.put, url, data=body)
        if not backend.behaviour.presigned_urls:
            assert response.status_code >= 400
            await store.abort_multipart(location, upload_id)
            return
        assert response.status_code == 200
        assert response.headers["ETag"] == quoted_md5(body)
        parts.append({"PartNumber": number, "ETag": response.headers["ETag"]})
    await store.complete_multipart(location, upload_id, parts)
    assert await read(store, location) == b"".join(data)


async def test_expired_presigned_url(store, at, backend):
    await store.put_bytes(at("exp"), b"data")
    url = await presigned(store, "get_object", at("exp"), 1)
    if url is None:
        return
    await asyncio.sleep(2.1)
    response = await asyncio.to_thread(requests.get, url)
    if backend.behaviour.checks_signatures:
        assert response.status_code == 403 and b"AccessDenied" in response.content
    else:
        assert response.status_code == 200


async def test_wrong_secret_is_refused(backend, at):
    async with _open(backend, secret_key="not-the-secret") as wrong:
        listing = await outcome(wrong.list(at()))
        put = await outcome(wrong.put_bytes(at("forged"), b"x"))
        url = await presigned(wrong, "get_object", at("forged"), 60)
        if backend.behaviour.checks_signatures:
            assert listing == put == "SignatureDoesNotMatch"
            # a HEAD error has no body: it must surface as an error, never as "missing"
            with pytest.raises(StorageError) as caught:
                await wrong.head(at("forged"))
            assert caught.value.status == 403
            response = await asyncio.to_thread(requests.get, url)
            assert response.status_code == 403 and b"SignatureDoesNotMatch" in response.content
        else:
            assert listing == put == "ok"


async def test_uploads_beyond_the_transfer_slots_queue_while_s3_makes_progress_and_fail_when_it_stops(backend, at):
    """With one S3 upload slot and a 1 s bound: four uploads of 0.6 s each all succeed one after
    another (2.4 s in all; each wait saw an upload finish within 1 s), but an upload queued behind
    one that finishes nothing for longer than the bound gets StorageBusy (503 at the API)."""
    async with _open(backend, transfers_in_flight=1, read_timeout=1.0, max_attempts=1) as store:
        async def slow_upload(name: str, pieces: int = 6) -> str:
            body = PartBody(pieces * 1000)
            sending = asyncio.create_task(_put_streamed(store, at(name), body))
            for _ in range(pieces):
                await asyncio.sleep(0.1)
                body.write(b"x" * 1000)
            return await sending
        results = await asyncio.gather(*(slow_upload(f"queued-{n}") for n in range(4)))
        assert len(results) == 4
        for n in range(4):
            assert await read(store, at(f"queued-{n}")) == b"x" * 6000
        stuck = PartBody(10)  # holds the only slot and sends nothing for 2 s
        stuck.STALL_SECONDS = 2.0
        holder = asyncio.create_task(_put_streamed(store, at("stuck"), stuck))
        await asyncio.sleep(0.1)
        with pytest.raises(StorageBusy):
            await store.put_bytes(at("behind"), b"waits for a slot")
        stuck.write(b"0123456789")
        await holder
        assert await store.put_bytes(at("behind"), b"now it goes")
        assert await read(store, at("behind")) == b"now it goes"


async def _put_streamed(store: ObjectStore, location: Location, body: PartBody) -> str:
    """A multipart upload of one part sent while its PartBody fills (the engine's streamed part)."""
    upload_id = await store.create_multipart(location)
    part = await store.upload_part(location, upload_id, 1, body)
    await store.complete_multipart(location, upload_id, [{"PartNumber": 1, "ETag": part["ETag"]}])
    return part["ETag"]
