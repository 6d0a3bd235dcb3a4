"""The storage contract: what the engine and the handlers may ask of an object store.

`ObjectStore` is a Protocol, implemented by the S3 store (s3.py, aiobotocore) and the in-memory
store (memory.py); both pass the same conformance suite (tests/test_storage_conformance.py).
What a store can do beyond the core is stated in its `capabilities`, never guessed from its
attributes (tusd's composer idea). Every failure is one of the typed errors of errors.py.
Beside the contract, the two pieces of machinery both stores share: TransferSlots (how many
uploads go to the store at once) and copy_in_parts (a copy larger than one copy call allows).

Everything takes a Location (physical bucket + key) made by BucketMapping, so a store knows
nothing of SAGE buckets, users or permissions.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator, Callable, Protocol

from .errors import StorageBusy
from .keys import Location
from .part_body import PartBody

# S3's multipart limits, which every store keeps so that what works on one works on the others
MIN_PART_SIZE = 5 * 2**20
MAX_PART_SIZE = 5 * 2**30
MAX_PARTS = 10_000

Body = bytes | bytearray | io.BytesIO | PartBody


def part_size_for(part_number: int, base: int) -> int:
    """Part size for a body of unknown length: it doubles every 1000 parts, so
    10 000 parts reach far past 5 TiB while small files keep small parts."""
    return min(MAX_PART_SIZE, base * 2 ** ((part_number - 1) // 1000))


def part_size_for_length(length: int, minimum: int = MIN_PART_SIZE) -> int:
    """Smallest MiB-aligned part size >= minimum that fits length into MAX_PARTS parts."""
    needed = -(-length // MAX_PARTS)
    size = max(minimum, needed)
    return -(-size // 2**20) * 2**20


@dataclass(frozen=True)
class Capabilities:
    """What a store can do beyond the core contract."""
    stream_parts: bool    # upload_part takes a PartBody that is still filling and sends it as it fills
    presigned_urls: bool  # presign() gives URLs a plain HTTP client can use (straight-to-storage uploads)
    durable: bool         # the bytes outlive this process (false: a store for tests and development)


@dataclass
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: datetime
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)


class ObjectBody(Protocol):
    """The bytes of an open GET."""

    def iter_chunks(self, size: int) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    def close(self) -> None: ...


@dataclass
class ObjectStream:
    """An open GET: the object's info, the byte range served, and the body chunks."""
    info: ObjectInfo
    content_length: int
    content_range: str | None
    body: ObjectBody

    async def chunks(self, size: int = 256 * 1024) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.body.iter_chunks(size):
                yield chunk
        finally:
            self.body.close()

    def close(self) -> None:
        self.body.close()


@dataclass
class ListPage:
    contents: list[ObjectInfo]
    common_prefixes: list[str]
    is_truncated: bool
    next_token: str | None
    key_count: int


@dataclass
class PutResult:
    size: int
    etag: str
    sha256: str


class ObjectStore(Protocol):
    """An object store as the engine and the handlers use it. ETags are quoted, as S3 sends them."""

    capabilities: Capabilities
    part_size: int        # put_stream's part size (doubling every 1000 parts)
    parts_in_flight: int  # how many parts one streamed upload or append keeps on their way at once

    # --- buckets
    async def ensure_buckets(self, names: list[str]) -> int:
        """Create the buckets that are missing; returns how many this call found missing."""

    async def ping(self, bucket: str) -> None:
        """Raise unless the store answers for this bucket."""

    # --- whole objects
    async def put_bytes(self, loc: Location, data: Body, *, content_type: str = "application/octet-stream",
                        metadata: dict[str, str] | None = None, crc32c: str | None = None) -> str:
        """Store a whole object; returns its ETag. crc32c (base64), when given, must match (BadDigest)."""

    async def put_stream(self, loc: Location, chunks: AsyncIterator[bytes], *,
                         content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None,
                         on_bytes: Callable[[int], None] | None = None, sha256_metadata_key: str | None = "sha256",
                         expected_sha256: str | None = None) -> PutResult:
        """Store a body of unknown length in bounded memory; the object appears only when the whole
        body is stored. Its sha256 goes into metadata[sha256_metadata_key]; with expected_sha256 a
        body that does not match raises ChecksumMismatch and publishes nothing."""

    async def replace_metadata(self, loc: Location, *, content_type: str, metadata: dict[str, str], size: int,
                               if_match: str | None = None) -> str:
        """Rewrite an object's metadata in place; returns its (possibly new) ETag."""

    async def copy(self, source: Location, target: Location, *, content_type: str, metadata: dict[str, str],
                   size: int, if_match: str | None = None) -> str:
        """Server-side copy of any size (also onto itself); the target gets content_type and metadata.
        if_match: only while the source's ETag is this one (else SourceChanged)."""

    async def head(self, loc: Location) -> ObjectInfo | None:
        """The object's info; None when it (or its bucket) does not exist."""

    async def open(self, loc: Location, byte_range: str | None = None) -> ObjectStream | None:
        """A streaming GET; None when the object does not exist. byte_range is an HTTP Range value
        ('bytes=0-99'); an unsatisfiable one raises InvalidRange."""

    async def read_all(self, loc: Location) -> bytes | None:
        """A small object's bytes (staging tails), or None."""

    async def list(self, prefix: Location, *, delimiter: str | None = "/", max_keys: int = 1000,
                   continuation_token: str | None = None, start_after: str | None = None) -> ListPage:
        """One page of keys under a prefix, in byte order (or the store's own, see the suite)."""

    def iter_keys(self, prefix: Location) -> AsyncIterator[list[str]]:
        """Every key under a prefix, a page (<= 1000) at a time."""

    async def delete(self, bucket: str, keys: list[str]) -> list[str]:
        """Delete keys (missing ones too); returns the keys deleted."""

    async def delete_prefix(self, prefix: Location) -> int:
        """Delete every key under a prefix; returns how many."""

    # --- multipart uploads
    async def create_multipart(self, loc: Location, *, content_type: str = "application/octet-stream",
                               metadata: dict[str, str] | None = None, checksum_algorithm: str | None = None) -> str:
        """Start a multipart upload; returns its id."""

    async def upload_part(self, loc: Location, upload_id: str, part_number: int, data: Body, *,
                          content_md5: str | None = None,
                          checksums: dict[str, str] | None = None) -> dict[str, Any]:
        """Store one part ({"ETag": ...}); a retry of the number replaces it. Content-MD5 and
        checksums ({algorithm: base64}) are the caller's claims about the bytes."""

    async def upload_part_copy(self, loc: Location, upload_id: str, part_number: int, source: Location,
                               byte_range: tuple[int, int] | None = None, *, if_match: str | None = None) -> str:
        """A part copied server-side from (a range, inclusive, of) an object; returns its ETag."""

    async def list_parts(self, loc: Location, upload_id: str) -> list[dict[str, Any]]:
        """The stored parts: {PartNumber, Size, ETag, Checksum<ALGORITHM>?} in part order."""

    async def complete_multipart(self, loc: Location, upload_id: str, parts: list[dict[str, Any]]) -> str:
        """Publish the upload from [{PartNumber, ETag, Checksum<ALGORITHM>?}] in ascending order;
        returns the object's ETag. An empty list is a ValueError (store empty objects with put_bytes)."""

    async def abort_multipart(self, loc: Location, upload_id: str) -> None:
        """Drop the upload and its parts; aborting an unknown upload is not an error."""

    async def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
        """The unfinished uploads of a bucket: {Key, UploadId, Initiated}."""

    # --- presigned URLs (capabilities.presigned_urls)
    async def presign(self, operation: str, loc: Location, expires: int, **params: Any) -> str:
        """A URL for an S3 operation (get_object, put_object, upload_part) valid `expires` seconds."""


async def copy_in_parts(store: ObjectStore, source: Location, target: Location, *, content_type: str,
                        metadata: dict[str, str], size: int, part_size: int, if_match: str | None = None) -> str:
    """A server-side copy as a multipart upload of part copies: how a store copies more than one
    copy call may (S3: 5 GiB). Nothing appears at the target unless every part is copied."""
    upload_id = await store.create_multipart(target, content_type=content_type, metadata=metadata)
    try:
        step = part_size_for_length(size, part_size)
        parts = []
        for number, start in enumerate(range(0, size, step), start=1):
            end = min(size, start + step) - 1
            etag = await store.upload_part_copy(target, upload_id, number, source, (start, end), if_match=if_match)
            parts.append({"PartNumber": number, "ETag": etag})
        return await store.complete_multipart(target, upload_id, parts)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(store.abort_multipart(target, upload_id))
        raise


class TransferSlots:
    """Uploads beyond `count` wait here rather than at the store: 100 parts of 16 MiB sent at once
    to one SeaweedFS each took longer than the read timeout, so all of them failed (503) and their
    retries made it worse. A long queue is not an outage: a wait gives up (StorageBusy) only when
    no upload has finished for `wait` seconds (the bound of one store call)."""

    def __init__(self, count: int, wait: float) -> None:
        self._slots = asyncio.Semaphore(count)
        self.wait = wait
        self._last_end = 0.0

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            since = max(started, self._last_end)
            try:
                await asyncio.wait_for(self._slots.acquire(), max(0.0, since + self.wait - loop.time()))
                break
            except asyncio.TimeoutError:
                if self._last_end <= since:  # nothing finished meanwhile: the store is stuck
                    raise StorageBusy(f"no upload to storage finished for {self.wait:.0f} s") from None
        try:
            yield
        finally:
            self._last_end = loop.time()
            self._slots.release()


async def keys_page_by_page(store: "ObjectStore", prefix: Location) -> AsyncIterator[list[str]]:
    """ObjectStore.iter_keys for every store, built on its `list`: every key under a prefix, a page at a time."""
    token = None
    while True:
        page = await store.list(prefix, delimiter=None, continuation_token=token)
        if page.contents:
            yield [item.key for item in page.contents]
        if not page.is_truncated or not page.next_token:
            return
        token = page.next_token
