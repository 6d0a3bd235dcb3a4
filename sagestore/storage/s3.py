"""The S3 layer: one aiobotocore client, streaming put/get, listing, multipart, presign.

Everything takes a Location (physical bucket + key), produced by BucketMapping,
so this module knows nothing of SAGE buckets, users or permissions.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from awscrt import checksums as _awscrt_checksums
from botocore.exceptions import ClientError

from .keys import Location

MIN_PART_SIZE = 5 * 2**20
MAX_PART_SIZE = 5 * 2**30
MAX_PARTS = 10_000

def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))

def is_not_found(error: ClientError) -> bool:
    return error_code(error) in ("404", "NoSuchKey", "NotFound", "NoSuchUpload", "NoSuchBucket")

@dataclass
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: datetime
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)

@dataclass
class ObjectStream:
    """An open GET: the object's info, the byte range served, and the body chunks."""
    info: ObjectInfo
    content_length: int
    content_range: str | None
    body: Any

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

class ChecksumMismatch(ValueError):
    """The body's digest differs from the one declared; nothing was stored."""

    def __init__(self, algorithm: str, expected: str, actual: str) -> None:
        super().__init__(f"{algorithm} mismatch: declared {expected}, received {actual}")
        self.algorithm, self.expected, self.actual = algorithm, expected, actual

@dataclass
class PutResult:
    size: int
    etag: str
    sha256: str

def part_size_for(part_number: int, base: int) -> int:
    """Part size for a body of unknown length: it doubles every 1000 parts, so
    10 000 parts reach far past 5 TiB while small files keep small parts."""
    return min(MAX_PART_SIZE, base * 2 ** ((part_number - 1) // 1000))

def part_size_for_length(length: int, minimum: int = MIN_PART_SIZE) -> int:
    """Smallest MiB-aligned part size >= minimum that fits length into MAX_PARTS parts."""
    needed = -(-length // MAX_PARTS)
    size = max(minimum, needed)
    return -(-size // 2**20) * 2**20

class ObjectStore:
    """The storage interface every other layer uses. One instance per app."""

    def __init__(self, client: Any, *, part_size: int = 16 * 2**20, parts_in_flight: int = 4,
                 single_copy_limit: int = MAX_PART_SIZE, sign_payload: bool = False,
                 stream_parts: bool = True, transfers_in_flight: int = 16, transfer_wait: float = 30.0) -> None:
        if part_size < MIN_PART_SIZE or parts_in_flight < 1 or transfers_in_flight < 1:
            raise ValueError("part_size must be >= 5 MiB, parts_in_flight and transfers_in_flight >= 1")
        self.client = client
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        # S3 copies at most 5 GiB in one CopyObject; larger copies go part by part through
        # UploadPartCopy, which moves every byte. SeaweedFS has no such limit and rewrites
        # only metadata when an object is copied onto itself, so it may be raised there.
        self.single_copy_limit = single_copy_limit
        self.copy_part_size = 512 * 2**20
        # False: the client sends UNSIGNED-PAYLOAD (configured in open_object_store) and every
        # PutObject/UploadPart carries a signed checksum header that S3 verifies instead
        self.sign_payload = sign_payload
        self.stream_parts = stream_parts
        # Uploads beyond this wait here rather than at S3: 100 parts of 16 MiB sent at once to
        # one SeaweedFS each took longer than the read timeout, so all of them failed (503)
        # and their retries made it worse. A long queue is not an outage: the wait gives up
        # only when no upload has finished for transfer_wait seconds (the bound of one S3 call).
        self._transfer_slots = asyncio.Semaphore(transfers_in_flight)
        self.transfer_wait = transfer_wait
        self._last_transfer_end = 0.0

    @contextlib.asynccontextmanager
    async def _transfer(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            since = max(started, self._last_transfer_end)
            try:
                await asyncio.wait_for(self._transfer_slots.acquire(), max(0.0, since + self.transfer_wait - loop.time()))
                break
            except asyncio.TimeoutError:
                if self._last_transfer_end <= since:  # nothing finished meanwhile: S3 is stuck
                    raise StorageBusy(f"no S3 upload finished for {self.transfer_wait:.0f} s") from None
        try:
            yield
        finally:
            self._last_transfer_end = loop.time()
            self._transfer_slots.release()

    # --- buckets -----------------------------------------------------------
    async def ensure_buckets(self, names: list[str]) -> int:
        """Create the S3 buckets that are missing; returns how many were created."""
        existing = {b["Name"] for b in (await self.client.list_buckets()).get("Buckets", [])}
        missing = [name for name in names if name not in existing]
        semaphore = asyncio.Semaphore(16)

        async def create(name: str) -> None:
            async with semaphore:
                try:
                    await self.client.create_bucket(Bucket=name)
                except ClientError as error:
                    if error_code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        await asyncio.gather(*(create(name) for name in missing))
        return len(missing)

    async def ping(self, bucket: str) -> None:
        await self.client.head_bucket(Bucket=bucket)

    # --- whole objects -----------------------------------------------------
    async def put_bytes(self, loc: Location, data: bytes | io.BytesIO | PartBody, *,
                        content_type: str = "application/octet-stream",
                        metadata: dict[str, str] | None = None, crc32c: str | None = None) -> str:
        """Store a whole object. A BytesIO you no longer need saves a copy: botocore turns
        bytes into a BytesIO that shares them, and aiohttp's getbuffer() then copies it.
        crc32c: the body's base64 CRC32C if the caller already has it (else computed when needed)."""
        kwargs: dict[str, Any] = {}
        data = self._signable(data)
        if not self.sign_payload:
            kwargs["ChecksumCRC32C"] = crc32c or crc32c_b64(data)
        if isinstance(data, PartBody):
            data = data.sending()
            kwargs["ContentLength"] = len(data)
        async with self._transfer():
            response = await self.client.put_object(Bucket=loc.bucket, Key=loc.key, Body=data,
                                                    ContentType=content_type, Metadata=metadata or {}, **kwargs)
        return response["ETag"]

    async def put_stream(self, loc: Location, chunks: AsyncIterator[bytes], *,
                         content_type: str = "application/octet-stream",
                         metadata: dict[str, str] | None = None,
                         on_bytes: Callable[[int], None] | None = None,
                         sha256_metadata_key: str | None = "sha256",
                         expected_sha256: str | None = None) -> PutResult:
        """Store a body of unknown length. Small bodies become one PutObject; larger
        ones a multipart upload with at most parts_in_flight part buffers in memory.
        The object appears only when the whole body has been stored.

        The body's sha256 goes into metadata[sha256_metadata_key]. Multipart objects learn
        it only at the end and get it by copying the object onto itself, unless the
        caller declares expected_sha256: then it is stored from the start, and a body
        that does not match raises ChecksumMismatch and publishes nothing."""
        digest = hashlib.sha256()
        total = 0
        body: PartBody | None = None  # the part being received; its blocks follow the bytes received
        previous_digest: asyncio.Task | None = None
        upload_id: str | None = None
        part_number = 0
        parts: list[dict[str, Any]] = []
        in_flight: set[asyncio.Task] = set()
        metadata = dict(metadata or {})
        protect = not self.sign_payload  # unsigned payloads travel with a signed CRC32C instead
        if expected_sha256 is not None:
            expected_sha256 = expected_sha256.lower()
            if sha256_metadata_key:
                metadata[sha256_metadata_key] = expected_sha256

        def hash_part(part: PartBody) -> str | None:
            """The whole-file sha256 and the part's CRC32C, in a worker thread (hashlib and
            awscrt release the GIL, so this overlaps the event loop's socket I/O)."""
            crc = 0
            for view in part.views():
                digest.update(view)
                if protect:
                    crc = crc32c(view, crc)
            return _crc_b64(crc) if protect else None

        def start_digest(part: PartBody) -> asyncio.Task:
            """Hash a filled part; the digests run one after another, in body order."""
            nonlocal previous_digest
            part.truncate()
            previous = previous_digest

            async def run() -> str | None:
                if previous is not None:
                    await previous
                return await asyncio.to_thread(hash_part, part)
            previous_digest = asyncio.ensure_future(run())
            return previous_digest

        async def send(number: int, part: PartBody, hashed: asyncio.Task) -> None:
            crc = await hashed
            try:
                response = await self.upload_part(loc, upload_id, number, part,
                                                  checksums={"crc32c": crc} if crc else None)
            finally:
                part.close()  # frees the part's bytes now
            entry = {"PartNumber": number, "ETag": response["ETag"]}
            if crc:
                entry["ChecksumCRC32C"] = crc  # the upload was created with CRC32C: Complete lists them
            parts.append(entry)

        async def settle(keep: int) -> None:
            """Wait until at most `keep` parts are in flight; re-raise the first failure."""
            while len(in_flight) > keep:
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                in_flight.difference_update(done)
                for task in done:
                    task.result()

        async def dispatch_part() -> None:
            nonlocal upload_id, part_number, body
            if part_number + 1 > MAX_PARTS:
                raise ValueError("body too large for one object")
            if upload_id is None:
                upload_id = await self.create_multipart(loc, content_type=content_type, metadata=metadata,
                                                        checksum_algorithm="CRC32C" if protect else None)
            part, body = body, None
            part_number += 1
            in_flight.add(asyncio.create_task(send(part_number, part, start_digest(part))))
            # free a slot before allocating the next part, so at most parts_in_flight bodies exist
            await settle(self.parts_in_flight - 1)

        async def clean_up() -> None:
            for task in in_flight:
                task.cancel()
            # let cancelled part uploads finish before the abort, so none lands after it
            await asyncio.gather(*in_flight, return_exceptions=True)
            if previous_digest is not None:
                await asyncio.gather(previous_digest, return_exceptions=True)
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await self.abort_multipart(loc, upload_id)

        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                total += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
                view = memoryview(chunk)
                while view:
                    size = part_size_for(part_number + 1, self.part_size)
                    if body is None:
                        body = PartBody(size)
                    take = min(len(view), size - body.filled)
                    body.write(view[:take])  # the one copy of the request's bytes
                    view = view[take:]
                    if body.filled == size:
                        await dispatch_part()
            if upload_id is None:
                body = body or PartBody(0)
                crc = await start_digest(body)
                sha256 = digest.hexdigest()
                if expected_sha256 is not None and not hmac.compare_digest(sha256, expected_sha256):
                    raise ChecksumMismatch("sha256", expected_sha256, sha256)
                if sha256_metadata_key:
                    metadata[sha256_metadata_key] = sha256
                etag = await self.put_bytes(loc, body, content_type=content_type, metadata=metadata,
                                            crc32c=crc)
                return PutResult(total, etag, sha256)
            if body is not None and body.filled:
                await dispatch_part()
            await settle(0)
            sha256 = digest.hexdigest()
            if expected_sha256 is not None and not hmac.compare_digest(sha256, expected_sha256):
                raise ChecksumMismatch("sha256", expected_sha256, sha256)
            parts.sort(key=lambda p: p["PartNumber"])
            etag = await self.complete_multipart(loc, upload_id, parts)
            upload_id = None
            if sha256_metadata_key and expected_sha256 is None:
                metadata[sha256_metadata_key] = sha256
                etag = await self.replace_metadata(loc, content_type=content_type, metadata=metadata, size=total)
            return PutResult(total, etag, sha256)
        finally:
            if in_flight or upload_id is not None or previous_digest is not None and not previous_digest.done():
                await asyncio.shield(clean_up())

    async def replace_metadata(self, loc: Location, *, content_type: str, metadata: dict[str, str],
                               size: int, if_match: str | None = None) -> str:
        """Rewrite an object's metadata in place (server-side; no bytes pass through us)."""
        return await self.copy(loc, loc, content_type=content_type, metadata=metadata, size=size,
                               if_match=if_match)

    async def copy(self, source: Location, target: Location, *, content_type: str,
                   metadata: dict[str, str], size: int, if_match: str | None = None) -> str:
        """Server-side copy of any size (also onto itself), through UploadPartCopy when over 5 GiB.
        The target gets content_type and metadata, not the source's. if_match: only while the
        source's ETag is this one (else ClientError PreconditionFailed)."""
        condition = {"CopySourceIfMatch": if_match} if if_match else {}
        if size <= self.single_copy_limit:
            response = await self.client.copy_object(
                Bucket=target.bucket, Key=target.key, CopySource={"Bucket": source.bucket, "Key": source.key},
                MetadataDirective="REPLACE", ContentType=content_type, Metadata=metadata, **condition)
            return response["CopyObjectResult"]["ETag"]
        upload_id = await self.create_multipart(target, content_type=content_type, metadata=metadata)
        try:
            step = part_size_for_length(size, self.copy_part_size)
            parts = []
            for number, start in enumerate(range(0, size, step), start=1):
                end = min(size, start + step) - 1
                response = await self.client.upload_part_copy(
                    Bucket=target.bucket, Key=target.key, UploadId=upload_id, PartNumber=number,
                    CopySource={"Bucket": source.bucket, "Key": source.key}, CopySourceRange=f"bytes={start}-{end}",
                    **condition)
                parts.append({"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]})
            return await self.complete_multipart(target, upload_id, parts)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.abort_multipart(target, upload_id))
            raise

    async def head(self, loc: Location) -> ObjectInfo | None:
        try:
            response = await self.client.head_object(Bucket=loc.bucket, Key=loc.key)
        except ClientError as error:
            if is_not_found(error):
                return None
            raise
        return _info(loc.key, response)

    async def open(self, loc: Location, byte_range: str | None = None) -> ObjectStream | None:
        """Start a streaming GET; None when the object does not exist. byte_range is an
        HTTP Range value ('bytes=0-99'); S3 answers InvalidRange for unsatisfiable ones."""
        kwargs: dict[str, Any] = {"Bucket": loc.bucket, "Key": loc.key}
        if byte_range:
            kwargs["Range"] = byte_range
        try:
            response = await self.client.get_object(**kwargs)
        except ClientError as error:
            if is_not_found(error):
                return None
            raise
        info = _info(loc.key, response)
        content_range = response.get("ContentRange")
        if content_range:
            info.size = int(content_range.rsplit("/", 1)[1])
        return ObjectStream(info, response["ContentLength"], content_range, response["Body"])

    async def read_all(self, loc: Location) -> bytes | None:
        """Small objects only (staging tails, manifests)."""
        stream = await self.open(loc)
        if stream is None:
            return None
        try:
            return await stream.body.read()
        finally:
            stream.close()

    async def list(self, prefix: Location, *, delimiter: str | None = "/", max_keys: int = 1000,
                   continuation_token: str | None = None, start_after: str | None = None) -> ListPage:
        kwargs: dict[str, Any] = {"Bucket": prefix.bucket, "Prefix": prefix.key, "MaxKeys": max_keys}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if continuation_token:
            kwargs["ContinuationToken"] = continuation_token
        if start_after:
            kwargs["StartAfter"] = start_after
        response = await self.client.list_objects_v2(**kwargs)
        contents = [ObjectInfo(item["Key"], item["Size"], item.get("ETag", ""), item["LastModified"])
                    for item in response.get("Contents", [])]
        prefixes = [item["Prefix"] for item in response.get("CommonPrefixes", [])]
        return ListPage(contents, prefixes, bool(response.get("IsTruncated")),
                        response.get("NextContinuationToken"), response.get("KeyCount", len(contents) + len(prefixes)))

    async def iter_keys(self, prefix: Location) -> AsyncIterator[list[str]]:
        """All keys under a prefix, a page (<= 1000) at a time."""
        token = None
        while True:
            page = await self.list(prefix, delimiter=None, continuation_token=token)
            if page.contents:
                yield [item.key for item in page.contents]
            if not page.is_truncated or not page.next_token:
                return
            token = page.next_token

    async def delete(self, bucket: str, keys: list[str]) -> list[str]:
        """Batch delete (1000 per request); returns the keys deleted."""
        deleted: list[str] = []
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            response = await self.client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
            errors = response.get("Errors", [])
            if errors:
                raise RuntimeError(f"S3 refused to delete {len(errors)} objects: {errors[0].get('Code')}")
            deleted.extend(batch)
        return deleted

    async def delete_prefix(self, prefix: Location) -> int:
        count = 0
        # delete page by page: listing restarts from scratch so deletions never skip keys
        while True:
            page = await self.list(prefix, delimiter=None)
            if not page.contents:
                return count
            count += len(await self.delete(prefix.bucket, [item.key for item in page.contents]))

    # --- multipart ---------------------------------------------------------
    async def create_multipart(self, loc: Location, *, content_type: str = "application/octet-stream",
                               metadata: dict[str, str] | None = None,
                               checksum_algorithm: str | None = None) -> str:
        kwargs: dict[str, Any] = {"Bucket": loc.bucket, "Key": loc.key, "ContentType": content_type,
                                  "Metadata": metadata or {}}
        if checksum_algorithm:
            kwargs["ChecksumAlgorithm"] = checksum_algorithm
        response = await self.client.create_multipart_upload(**kwargs)
        return response["UploadId"]

    async def upload_part(self, loc: Location, upload_id: str, part_number: int,
                          data: bytes | io.BytesIO | PartBody, *, content_md5: str | None = None,
                          checksums: dict[str, str] | None = None) -> dict[str, Any]:
        """UploadPart. A PartBody that is not full yet is sent while it fills (see PartBody);
        such a part carries no CRC32C, which is known only at its end."""
        data = self._signable(data)
        kwargs: dict[str, Any] = {"Bucket": loc.bucket, "Key": loc.key, "UploadId": upload_id,
                                  "PartNumber": part_number}
        if content_md5:
            kwargs["ContentMD5"] = content_md5
        for algorithm, value in (checksums or {}).items():
            kwargs["Checksum" + algorithm.upper()] = value
        if not self.sign_payload and not content_md5 and not checksums and \
                not (isinstance(data, PartBody) and not data.full):
            # the payload is not signed: a signed CRC32C makes S3 verify the body (BadDigest).
            # An upload created with another algorithm must get that one's checksum from the caller.
            kwargs["ChecksumCRC32C"] = crc32c_b64(data)
        if isinstance(data, PartBody):
            data = data.sending()
            kwargs["ContentLength"] = len(data)
        async with self._transfer():
            return await self.client.upload_part(Body=data, **kwargs)

    @property
    def can_stream_parts(self) -> bool:
        """Whether upload_part may take a PartBody that is still filling: not when switched off,
        nor when payloads are signed (SigV4 hashes the whole body before the request starts)."""
        return self.stream_parts and not self.sign_payload

    def _signable(self, data: Any) -> Any:
        """A signed payload is hashed by reading it: a (full) PartBody goes as a copy then."""
        if self.sign_payload and isinstance(data, PartBody):
            return io.BytesIO(data.getvalue())
        return data

    async def upload_part_copy(self, loc: Location, upload_id: str, part_number: int, source: Location,
                               byte_range: tuple[int, int] | None = None) -> str:
        kwargs: dict[str, Any] = {"Bucket": loc.bucket, "Key": loc.key, "UploadId": upload_id,
                                  "PartNumber": part_number, "CopySource": {"Bucket": source.bucket, "Key": source.key}}
        if byte_range:
            kwargs["CopySourceRange"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        response = await self.client.upload_part_copy(**kwargs)
        return response["CopyPartResult"]["ETag"]

    async def list_parts(self, loc: Location, upload_id: str) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        marker = 0
        while True:
            response = await self.client.list_parts(Bucket=loc.bucket, Key=loc.key, UploadId=upload_id,
                                                    PartNumberMarker=marker)
            parts.extend(response.get("Parts", []))
            if not response.get("IsTruncated"):
                return parts
            marker = int(response["NextPartNumberMarker"])

    async def complete_multipart(self, loc: Location, upload_id: str, parts: list[dict[str, Any]]) -> str:
        """Publish the upload. parts must be in ascending PartNumber order: SeaweedFS
        refuses other orders (InvalidPartOrder) but moto joins them as listed."""
        if not parts:
            # S3 needs at least one part (SeaweedFS answers a misleading NoSuchUpload)
            raise ValueError("a multipart upload needs at least one part; store empty objects with put_bytes")
        response = await self.client.complete_multipart_upload(
            Bucket=loc.bucket, Key=loc.key, UploadId=upload_id, MultipartUpload={"Parts": parts})
        return response["ETag"]

    async def abort_multipart(self, loc: Location, upload_id: str) -> None:
        try:
            await self.client.abort_multipart_upload(Bucket=loc.bucket, Key=loc.key, UploadId=upload_id)
        except ClientError as error:
            if not is_not_found(error):
                raise

    async def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
        uploads: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            response = await self.client.list_multipart_uploads(**kwargs)
            uploads.extend(response.get("Uploads", []))
            if not response.get("IsTruncated"):
                return uploads
            kwargs["KeyMarker"] = response.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = response.get("NextUploadIdMarker")

    # --- presigned URLs ----------------------------------------------------
    async def presign(self, operation: str, loc: Location, expires: int, **params: Any) -> str:
        return await self.client.generate_presigned_url(
            operation, Params={"Bucket": loc.bucket, "Key": loc.key, **params}, ExpiresIn=expires)

class StorageBusy(TimeoutError):
    """Every S3 upload slot of this instance stayed taken for the whole wait (a slow or frozen S3)."""


class PartStalled(ConnectionAbortedError):
    """A PartBody sent while filling waited too long for its next bytes."""


class PartBody:
    """A part's bytes, which can go to S3 while they are still arriving: UploadPart starts as soon
    as the part's first bytes arrive and sends each piece as it is written, so receiving a request
    body and storing it overlap instead of alternating.

    Memory follows the bytes written, never the size declared: the bytes live in blocks of BLOCK
    bytes, each allocated when the first byte for it arrives and never moved or resized (a piece
    being sent may still be referenced by the transport), so `allocated` is at most one block more
    than `filled`. `size` is what an UploadPart sent now declares (the part's full size, or the
    bytes filled after truncate()).

    A request sends it through sending(): to botocore a file-like Body of len() bytes (seek/tell
    for its signer, which never reads an unsigned payload); to aiohttp an async iterable. A body
    that will not be filled to its size
    must be abandoned, so the request in flight (and any retry of it) fails instead of waiting for
    bytes that never come; truncate() then makes it a whole body of the bytes it has. Each
    abandon() starts a new `generation`: a send begun before it never completes with the
    truncated bytes, which by then belong to whoever truncated them (a staged tail).
    """

    BLOCK = 2**20
    SEND_PIECE = 256 * 2**10
    # a send that waits longer than this for the next bytes gives up (PartStalled): S3 servers drop
    # idle requests anyway, and a stalled sender must not keep its part from a writer taking over
    STALL_SECONDS = 2.0

    def __init__(self, size: int) -> None:
        self._blocks: list[bytearray] = []
        self.filled = 0
        self.size = size
        self._grew = asyncio.Event()
        self._abandoned: BaseException | None = None
        self.generation = 0
        self._stalled = False  # once a send stalled, sends before the body is full fail at once (no retries)

    @property
    def allocated(self) -> int:
        return len(self._blocks) * self.BLOCK

    def allocated_after(self, more: int) -> int:
        """What `allocated` will be once `more` bytes are written."""
        return -(-(self.filled + more) // self.BLOCK) * self.BLOCK

    def write(self, data: bytes | memoryview) -> int:
        """Append data (the one copy of the request's bytes)."""
        with memoryview(data) as view:
            position = 0
            while position < len(view):
                index, offset = divmod(self.filled, self.BLOCK)
                if index == len(self._blocks):
                    self._blocks.append(bytearray(self.BLOCK))
                take = min(self.BLOCK - offset, len(view) - position)
                self._blocks[index][offset:offset + take] = view[position:position + take]
                position += take
                self.filled += take
        self._grew.set()
        return len(data)

    def truncate(self) -> None:
        self.size = self.filled

    def close(self) -> None:
        """Free the bytes (the part is stored); the body is empty afterwards."""
        self._blocks = []
        self.filled = self.size = 0

    @property
    def full(self) -> bool:
        return self.filled >= self.size

    def views(self, start: int = 0, end: int | None = None) -> Iterator[memoryview]:
        """The filled bytes [start, end) as views of the blocks, in order."""
        end = self.filled if end is None else min(end, self.filled)
        while start < end:
            index, offset = divmod(start, self.BLOCK)
            stop = min(end, start + self.BLOCK - offset)
            yield memoryview(self._blocks[index])[offset:offset + stop - start]
            start = stop

    def getvalue(self) -> bytes:
        return b"".join(self.views())

    def abandon(self, reason: BaseException | None = None) -> None:
        self._abandoned = reason or ConnectionAbortedError("the part body was abandoned")
        self.generation += 1
        self._grew.set()

    @property
    def abandoned(self) -> bool:
        return self._abandoned is not None

    async def filled_up(self) -> None:
        """Wait until the body is full; raises if it is abandoned first."""
        while not self.full:
            if self._abandoned is not None:
                raise self._abandoned
            self._grew.clear()
            await self._grew.wait()

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return True

    def sending(self) -> "_PartSend":
        """What one UploadPart or PutObject sends (retries included)."""
        return _PartSend(self)

    async def _pieces(self, size: int, generation: int) -> AsyncIterator[memoryview]:
        sent = 0  # every iteration starts over: a retry resends from the blocks, which keep every byte
        if self._stalled and not self.full:
            raise PartStalled("this part stalled before; it is sent again once it is whole")
        while True:
            # truncate() makes an abandoned body whole again, for sends begun after it only
            if self._abandoned is not None and (generation != self.generation or not self.full):
                raise self._abandoned
            if sent >= size:
                break
            if sent >= self.filled:
                self._grew.clear()
                try:
                    await asyncio.wait_for(self._grew.wait(), self.STALL_SECONDS)
                except asyncio.TimeoutError:
                    self._stalled = True
                    raise PartStalled(f"no new bytes for {self.STALL_SECONDS} s") from None
                continue
            for view in self.views(sent, min(size, sent + self.SEND_PIECE)):
                yield view
                sent += len(view)


class _PartSend:
    """One request's view of a PartBody: its length is the body's size when the request began
    (its Content-Length), and it fails, retries included, once the body is abandoned after that."""

    def __init__(self, body: PartBody) -> None:
        self.body = body
        self.size = body.size
        self.generation = body.generation

    # botocore's face: a stream it validates, measures and would rewind on a retry
    def read(self, *_: Any) -> bytes:
        raise io.UnsupportedOperation("PartBody is sent as an async iterable")

    def seek(self, *_: Any) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return True

    # aiohttp's face
    def __aiter__(self) -> AsyncIterator[memoryview]:
        return self.body._pieces(self.size, self.generation)


def crc32c(data: Any, previous: int = 0) -> int:
    return _awscrt_checksums.crc32c(data, previous)

def _crc_b64(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode()

def crc32c_b64(data: bytes | bytearray | memoryview | io.BytesIO | PartBody) -> str:
    """base64 of the big-endian CRC32C, as x-amz-checksum-crc32c carries it (~10 GB/s)."""
    if isinstance(data, PartBody):
        value = 0
        for view in data.views():
            value = crc32c(view, value)
        return _crc_b64(value)
    if isinstance(data, io.BytesIO):
        with data.getbuffer() as view:
            return _crc_b64(crc32c(view[data.tell():]))
    return _crc_b64(crc32c(data))

def _info(key: str, response: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(key=key, size=int(response.get("ContentLength", 0)), etag=response.get("ETag", ""),
                      last_modified=response.get("LastModified"),
                      content_type=response.get("ContentType") or "application/octet-stream",
                      metadata=dict(response.get("Metadata") or {}))

def md5_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()

@contextlib.asynccontextmanager
async def open_object_store(*, endpoint: str, access_key: str, secret_key: str, region: str,
                            part_size: int = 16 * 2**20, parts_in_flight: int = 4,
                            max_connections: int = 64, transfers_in_flight: int = 16,
                            single_copy_limit: int = MAX_PART_SIZE,
                            sign_payload: bool = False, stream_parts: bool = True,
                            connect_timeout: float = 5.0, read_timeout: float = 15.0,
                            max_attempts: int = 2) -> AsyncIterator[ObjectStore]:
    """The single aiobotocore client of an app (or a CLI command).

    The timeouts bound every wait on S3, so an outage (or a frozen S3) fails a call within
    about max_attempts x (connect_timeout or read_timeout) instead of hanging: read_timeout
    is how long S3 may stay silent once a request is sent, and also, as TCP_USER_TIMEOUT,
    how long bytes we sent may stay unacknowledged (a frozen peer stops reading; aiohttp
    has no write timeout and its read timer starts only after the body)."""
    config = AioConfig(
        signature_version="s3v4",
        # botocore hashes every payload it sends over http:// for SigV4 (a third of our upload
        # CPU); unsigned, the body is protected by the signed checksum header ObjectStore adds
        s3={"addressing_style": "path", "payload_signing_enabled": sign_payload},
        max_pool_connections=max_connections,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        connector_args={"socket_factory": _socket_factory(read_timeout)},
        # the flexible CRC32 checksums are computed only where an API demands them
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = get_session()
    async with session.create_client("s3", endpoint_url=endpoint, region_name=region,
                                     aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                     config=config) as client:
        client.meta.events.register("before-sign.s3", _no_expect_continue)
        yield ObjectStore(client, part_size=part_size, parts_in_flight=parts_in_flight,
                          single_copy_limit=single_copy_limit, sign_payload=sign_payload,
                          stream_parts=stream_parts, transfers_in_flight=transfers_in_flight,
                          transfer_wait=read_timeout * max_attempts)

def _no_expect_continue(request: Any, **_: Any) -> None:
    """botocore asks for `Expect: 100-continue` on PutObject/UploadPart, and aiohttp waits for the
    100 with no timeout at all (its read timer starts after the body): an S3 that accepted the
    connection and then froze held such a request forever. Without it the body goes at once and
    the read timeout covers the wait for the answer. (Not signed: SigV4 skips Expect anyway.)"""
    if "Expect" in request.headers:
        del request.headers["Expect"]


def _socket_factory(unacknowledged_timeout: float) -> Callable[[Any], socket.socket]:
    """Sockets to S3 that give up when sent bytes stay unacknowledged (or the peer's window
    stays shut) for longer than the bound; keep-alive probes find dead idle connections."""
    def make(addr_info: Any) -> socket.socket:
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=type_, proto=proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(unacknowledged_timeout * 1000))
        except OSError:
            sock.close()
            raise
        return sock
    return make

AsyncCallable = Callable[..., Awaitable[Any]]
