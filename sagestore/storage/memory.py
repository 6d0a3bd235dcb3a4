"""The in-memory store: the storage contract kept in this process's memory, for tests and
development (`SAGESTORE_STORAGE_BACKEND=memory`). It passes the same conformance suite as the S3
store and answers as S3 does where S3 servers agree (ETags, ranges, part rules, error codes);
where they differ it takes the strict side, declared in the suite's Behaviour table. Its bytes
die with the process (capabilities.durable is false) and it has no presigned URLs.

A MemorySpace is what an S3 server is to its clients: stores opened on one space see the same
buckets, as two instances of the app see one S3.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import re
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable

from awscrt import checksums as _awscrt_checksums

from .contract import (MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, Body, Capabilities, ListPage, ObjectInfo, ObjectStream,
                       PutResult, TransferSlots, copy_in_parts, keys_page_by_page, part_size_for)
from .digests import crc32c_b64, md5_base64
from .errors import (UNREACHABLE, ChecksumMismatch, InvalidRange, ObjectNotFound, SourceChanged, StorageError,
                     StorageRefused, StorageUnavailable)
from .keys import Location
from .part_body import PartBody

# S3's own wording, so callers see what S3 would have said
_INVALID_PART = ("One or more of the specified parts could not be found.  The part may not have been uploaded, "
                 "or the specified entity tag may not match the part's entity tag.")
_INVALID_PART_ORDER = ("The list of parts was not in ascending order. The parts list must be specified in order "
                       "by part number.")
_ENTITY_TOO_SMALL = "Your proposed upload is smaller than the minimum allowed object size."
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def _normal(etag: Any) -> str:
    return str(etag or "").strip().strip('"').lower()


def _checksum(algorithm: str, data: bytes) -> str:
    """base64 of the big-endian digest, as x-amz-checksum-* carries it."""
    name = algorithm.upper()
    if name == "CRC32":
        raw = zlib.crc32(data).to_bytes(4, "big")
    elif name == "CRC32C":
        raw = _awscrt_checksums.crc32c(data).to_bytes(4, "big")
    elif name == "CRC64NVME":
        raw = _awscrt_checksums.crc64nvme(data).to_bytes(8, "big")
    elif name in ("SHA1", "SHA256"):
        raw = hashlib.new(name.lower(), data).digest()
    else:
        raise StorageRefused("InvalidArgument", f"unsupported checksum algorithm {algorithm!r}")
    return base64.b64encode(raw).decode()


@dataclass
class _Object:
    data: bytes
    etag: str
    content_type: str
    metadata: dict[str, str]
    last_modified: datetime = field(default_factory=_now)

    def info(self, key: str) -> ObjectInfo:
        return ObjectInfo(key, len(self.data), self.etag, self.last_modified, self.content_type, dict(self.metadata))


@dataclass
class _Part:
    data: bytes
    etag: str
    checksums: dict[str, str]  # {"ChecksumSHA256": base64, ...}
    last_modified: datetime = field(default_factory=_now)


@dataclass
class _Multipart:
    key: str
    content_type: str
    metadata: dict[str, str]
    checksum_algorithm: str | None
    initiated: datetime = field(default_factory=_now)
    parts: dict[int, _Part] = field(default_factory=dict)


class MemorySpace:
    """The buckets, objects and unfinished multipart uploads that stores opened on it share."""

    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, _Object]] = {}
        self.uploads: dict[str, dict[str, _Multipart]] = {}  # bucket -> upload id -> upload


class _MemoryBody:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    async def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        while self._position < len(self._data):
            chunk = self._data[self._position:self._position + size]
            self._position += len(chunk)
            yield chunk
            await asyncio.sleep(0)

    async def read(self) -> bytes:
        rest = self._data[self._position:]
        self._position = len(self._data)
        return rest

    def close(self) -> None:
        self._position = len(self._data)


class MemoryObjectStore:
    """The storage contract in memory. stream_parts=False declares that a part must be whole before
    it is sent (as the S3 store with s3_stream_parts off), so the engine's other path runs here too."""

    def __init__(self, space: MemorySpace | None = None, *, part_size: int = 16 * 2**20, parts_in_flight: int = 4,
                 single_copy_limit: int = MAX_PART_SIZE, transfers_in_flight: int = 16,
                 transfer_wait: float = 30.0, stream_parts: bool = True) -> None:
        if part_size < MIN_PART_SIZE or parts_in_flight < 1 or transfers_in_flight < 1:
            raise ValueError("part_size must be >= 5 MiB, parts_in_flight and transfers_in_flight >= 1")
        self.capabilities = Capabilities(stream_parts=stream_parts, presigned_urls=False, durable=False)
        self.space = space if space is not None else MemorySpace()
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        self.single_copy_limit = single_copy_limit
        self.copy_part_size = 512 * 2**20
        self._transfers = TransferSlots(transfers_in_flight, transfer_wait)

    # --- where things are ----------------------------------------------------
    def _bucket(self, name: str) -> dict[str, _Object]:
        bucket = self.space.buckets.get(name)
        if bucket is None:
            raise ObjectNotFound("NoSuchBucket", "The specified bucket does not exist")
        return bucket

    def _object(self, loc: Location) -> _Object | None:
        return self.space.buckets.get(loc.bucket, {}).get(loc.key)

    def _multipart(self, loc: Location, upload_id: str) -> _Multipart:
        self._bucket(loc.bucket)
        upload = self.space.uploads.get(loc.bucket, {}).get(upload_id)
        if upload is None or upload.key != loc.key:
            raise ObjectNotFound("NoSuchUpload", "The specified multipart upload does not exist")
        return upload

    async def _received(self, data: Body) -> bytes:
        """The bytes of a body; a PartBody is read as an upload sends it, so a part that stalls or is
        abandoned fails here as its request to S3 would (StorageUnavailable) and stores nothing."""
        if isinstance(data, PartBody):
            pieces = []
            try:
                async for piece in data.sending():
                    pieces.append(bytes(piece))
            except ConnectionError as error:
                raise StorageUnavailable(UNREACHABLE, f"the body failed: {error}") from error
            return b"".join(pieces)
        if isinstance(data, io.BytesIO):
            with data.getbuffer() as view:
                return bytes(view[data.tell():])
        return bytes(data)

    # --- buckets -------------------------------------------------------------
    async def ensure_buckets(self, names: list[str]) -> int:
        """Returns how many were missing when it looked (two calls at once both create, as on S3)."""
        missing = [name for name in names if name not in self.space.buckets]
        await asyncio.sleep(0)
        for name in missing:
            self.space.buckets.setdefault(name, {})
            self.space.uploads.setdefault(name, {})
        return len(missing)

    async def ping(self, bucket: str) -> None:
        self._bucket(bucket)

    # --- whole objects -------------------------------------------------------
    async def put_bytes(self, loc: Location, data: Body, *, content_type: str = "application/octet-stream",
                        metadata: dict[str, str] | None = None, crc32c: str | None = None) -> str:
        self._bucket(loc.bucket)
        async with self._transfers.hold():
            body = await self._received(data)
        if crc32c is not None and crc32c != crc32c_b64(body):
            raise StorageRefused("BadDigest", "The CRC32C you specified did not match the calculated checksum.")
        stored = _Object(body, _etag(body), content_type, dict(metadata or {}))
        self._bucket(loc.bucket)[loc.key] = stored
        return stored.etag

    async def put_stream(self, loc: Location, chunks: AsyncIterator[bytes], *,
                         content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None,
                         on_bytes: Callable[[int], None] | None = None, sha256_metadata_key: str | None = "sha256",
                         expected_sha256: str | None = None) -> PutResult:
        """As the S3 store's: one object for a body shorter than a part, else a multipart upload."""
        digest = hashlib.sha256()
        total = 0
        metadata = dict(metadata or {})
        if expected_sha256 is not None:
            expected_sha256 = expected_sha256.lower()
            if sha256_metadata_key:
                metadata[sha256_metadata_key] = expected_sha256
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        current = bytearray()

        async def send_part() -> None:
            nonlocal upload_id, current
            if len(parts) + 1 > MAX_PARTS:
                raise ValueError("body too large for one object")
            if upload_id is None:
                upload_id = await self.create_multipart(loc, content_type=content_type, metadata=metadata)
            number = len(parts) + 1
            response = await self.upload_part(loc, upload_id, number, bytes(current))
            parts.append({"PartNumber": number, "ETag": response["ETag"]})
            current = bytearray()

        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                total += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    size = part_size_for(len(parts) + 1, self.part_size)
                    take = min(len(view), size - len(current))
                    current += view[:take]
                    view = view[take:]
                    if len(current) == size:
                        await send_part()
            sha256 = digest.hexdigest()
            if expected_sha256 is not None and not hmac.compare_digest(sha256, expected_sha256):
                raise ChecksumMismatch("sha256", expected_sha256, sha256)
            if upload_id is None:
                if sha256_metadata_key:
                    metadata[sha256_metadata_key] = sha256
                etag = await self.put_bytes(loc, bytes(current), content_type=content_type, metadata=metadata)
                return PutResult(total, etag, sha256)
            if current:
                await send_part()
            etag = await self.complete_multipart(loc, upload_id, parts)
            upload_id = None
            if sha256_metadata_key and expected_sha256 is None:
                metadata[sha256_metadata_key] = sha256
                etag = await self.replace_metadata(loc, content_type=content_type, metadata=metadata, size=total)
            return PutResult(total, etag, sha256)
        finally:
            if upload_id is not None:
                await self.abort_multipart(loc, upload_id)

    async def replace_metadata(self, loc: Location, *, content_type: str, metadata: dict[str, str], size: int,
                               if_match: str | None = None) -> str:
        return await self.copy(loc, loc, content_type=content_type, metadata=metadata, size=size, if_match=if_match)

    async def copy(self, source: Location, target: Location, *, content_type: str, metadata: dict[str, str],
                   size: int, if_match: str | None = None) -> str:
        if size > self.single_copy_limit:
            return await copy_in_parts(self, source, target, content_type=content_type, metadata=metadata, size=size,
                                       part_size=self.copy_part_size, if_match=if_match)
        found = self._source(source, if_match)
        self._bucket(target.bucket)[target.key] = copied = _Object(found.data, _etag(found.data), content_type,
                                                                   dict(metadata))
        return copied.etag

    def _source(self, source: Location, if_match: str | None) -> _Object:
        self._bucket(source.bucket)
        found = self._object(source)
        if found is None:
            raise ObjectNotFound("NoSuchKey", "The specified key does not exist.")
        if if_match and _normal(if_match) != _normal(found.etag):
            raise SourceChanged("PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
        return found

    async def head(self, loc: Location) -> ObjectInfo | None:
        found = self._object(loc)
        return found.info(loc.key) if found is not None else None

    async def open(self, loc: Location, byte_range: str | None = None) -> ObjectStream | None:
        found = self._object(loc)
        if found is None:
            return None
        size = len(found.data)
        if not byte_range:
            return ObjectStream(found.info(loc.key), size, None, _MemoryBody(found.data))
        start, end = _satisfiable(byte_range, size)
        return ObjectStream(found.info(loc.key), end - start + 1, f"bytes {start}-{end}/{size}",
                            _MemoryBody(found.data[start:end + 1]))

    async def read_all(self, loc: Location) -> bytes | None:
        found = self._object(loc)
        return found.data if found is not None else None

    async def list(self, prefix: Location, *, delimiter: str | None = "/", max_keys: int = 1000,
                   continuation_token: str | None = None, start_after: str | None = None) -> ListPage:
        """Byte order; with a delimiter each common prefix is one entry, at its first key."""
        bucket = self._bucket(prefix.bucket)
        after, after_prefix = start_after, False
        if continuation_token:
            after, after_prefix = _read_token(continuation_token)
        keys = sorted((key for key in bucket if key.startswith(prefix.key)), key=lambda key: key.encode())
        entries: list[tuple[str, bool]] = []  # (key or common prefix, is a prefix)
        for key in keys:
            if after is not None and (key.encode() <= after.encode() or (after_prefix and key.startswith(after))):
                continue
            if delimiter:
                cut = key.find(delimiter, len(prefix.key))
                if cut >= 0:
                    common = key[:cut + len(delimiter)]
                    if not entries or entries[-1] != (common, True):
                        entries.append((common, True))
                    continue
            entries.append((key, False))
        page = entries[:max(0, max_keys)]
        truncated = len(entries) > len(page)
        return ListPage(contents=[ObjectInfo(key, len(bucket[key].data), bucket[key].etag, bucket[key].last_modified)
                                  for key, is_prefix in page if not is_prefix],
                        common_prefixes=[name for name, is_prefix in page if is_prefix], is_truncated=truncated,
                        next_token=_token(*page[-1]) if truncated and page else None, key_count=len(page))

    iter_keys = keys_page_by_page

    async def delete(self, bucket: str, keys: list[str]) -> list[str]:
        objects = self._bucket(bucket)
        for key in keys:
            objects.pop(key, None)
        return list(keys)

    async def delete_prefix(self, prefix: Location) -> int:
        objects = self._bucket(prefix.bucket)
        doomed = [key for key in objects if key.startswith(prefix.key)]
        for key in doomed:
            del objects[key]
        return len(doomed)

    # --- multipart uploads ---------------------------------------------------
    async def create_multipart(self, loc: Location, *, content_type: str = "application/octet-stream",
                               metadata: dict[str, str] | None = None, checksum_algorithm: str | None = None) -> str:
        self._bucket(loc.bucket)
        upload_id = uuid.uuid4().hex
        self.space.uploads.setdefault(loc.bucket, {})[upload_id] = _Multipart(
            loc.key, content_type, dict(metadata or {}), checksum_algorithm.upper() if checksum_algorithm else None)
        return upload_id

    async def upload_part(self, loc: Location, upload_id: str, part_number: int, data: Body, *,
                          content_md5: str | None = None,
                          checksums: dict[str, str] | None = None) -> dict[str, Any]:
        self._check_part_number(part_number)
        self._multipart(loc, upload_id)
        async with self._transfers.hold():
            body = await self._received(data)
        if content_md5 is not None and content_md5 != md5_base64(body):
            raise StorageRefused("BadDigest", "The Content-MD5 you specified did not match what we received.")
        declared = {}
        for algorithm, value in (checksums or {}).items():
            if value != _checksum(algorithm, body):
                raise StorageRefused("BadDigest", f"The {algorithm.upper()} you specified did not match the "
                                                  "calculated checksum.")
            declared["Checksum" + algorithm.upper()] = value
        upload = self._multipart(loc, upload_id)  # it may have been aborted meanwhile
        part = _Part(body, _etag(body), self._part_checksums(upload, body, declared))
        upload.parts[part_number] = part
        return {"ETag": part.etag, **part.checksums}

    @staticmethod
    def _part_checksums(upload: _Multipart, body: bytes, declared: dict[str, str]) -> dict[str, str]:
        if upload.checksum_algorithm and "Checksum" + upload.checksum_algorithm not in declared:
            declared["Checksum" + upload.checksum_algorithm] = _checksum(upload.checksum_algorithm, body)
        return declared

    @staticmethod
    def _check_part_number(part_number: int) -> None:
        if not 1 <= part_number <= MAX_PARTS:
            raise StorageRefused("InvalidArgument", f"Part number must be an integer between 1 and {MAX_PARTS}")

    async def upload_part_copy(self, loc: Location, upload_id: str, part_number: int, source: Location,
                               byte_range: tuple[int, int] | None = None, *, if_match: str | None = None) -> str:
        self._check_part_number(part_number)
        upload = self._multipart(loc, upload_id)
        data = self._source(source, if_match).data
        if byte_range is not None:
            start, end = byte_range
            if start < 0 or end < start or end >= len(data):
                raise InvalidRange("InvalidRange", "The requested range is not satisfiable")
            data = data[start:end + 1]
        part = _Part(data, _etag(data), self._part_checksums(upload, data, {}))
        upload.parts[part_number] = part
        return part.etag

    async def list_parts(self, loc: Location, upload_id: str) -> list[dict[str, Any]]:
        upload = self._multipart(loc, upload_id)
        return [{"PartNumber": number, "Size": len(part.data), "ETag": part.etag, "LastModified": part.last_modified,
                 **part.checksums} for number, part in sorted(upload.parts.items())]

    async def complete_multipart(self, loc: Location, upload_id: str, parts: list[dict[str, Any]]) -> str:
        if not parts:
            raise ValueError("a multipart upload needs at least one part; store empty objects with put_bytes")
        upload = self._multipart(loc, upload_id)
        chosen: list[_Part] = []
        previous = 0
        for entry in parts:
            number = entry["PartNumber"]
            if number <= previous:
                raise StorageRefused("InvalidPartOrder", _INVALID_PART_ORDER)
            previous = number
            part = upload.parts.get(number)
            if part is None or _normal(entry.get("ETag")) != _normal(part.etag):
                raise StorageRefused("InvalidPart", _INVALID_PART)
            chosen.append(part)
        if any(len(part.data) < MIN_PART_SIZE for part in chosen[:-1]):
            raise StorageRefused("EntityTooSmall", _ENTITY_TOO_SMALL)
        joined = hashlib.md5(b"".join(bytes.fromhex(_normal(part.etag)) for part in chosen)).hexdigest()
        stored = _Object(b"".join(part.data for part in chosen), f'"{joined}-{len(chosen)}"', upload.content_type,
                         dict(upload.metadata))
        self._bucket(loc.bucket)[loc.key] = stored
        del self.space.uploads[loc.bucket][upload_id]
        return stored.etag

    async def abort_multipart(self, loc: Location, upload_id: str) -> None:
        with contextlib.suppress(KeyError):
            if self.space.uploads[loc.bucket][upload_id].key == loc.key:
                del self.space.uploads[loc.bucket][upload_id]

    async def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
        self._bucket(bucket)
        uploads = [{"Key": upload.key, "UploadId": upload_id, "Initiated": upload.initiated}
                   for upload_id, upload in self.space.uploads.get(bucket, {}).items() if upload.key.startswith(prefix)]
        return sorted(uploads, key=lambda item: (item["Key"].encode(), item["Initiated"]))

    async def presign(self, operation: str, loc: Location, expires: int, **params: Any) -> str:
        raise StorageError("NotImplemented", "the in-memory store has no presigned URLs", status=501)


def _satisfiable(byte_range: str, size: int) -> tuple[int, int]:
    """(start, end), inclusive, of an HTTP Range value within `size` bytes; InvalidRange otherwise
    (a reversed or malformed range too: S3 servers differ there, this store is strict)."""
    match = _RANGE.match(byte_range.strip())
    if match is None or match.groups() == ("", ""):
        raise InvalidRange("InvalidRange", "The requested range is not satisfiable")
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
        if int(last) == 0:
            start = size
    else:
        start = int(first)
        end = size - 1 if last == "" else min(int(last), size - 1)
        if last != "" and int(last) < start:
            start = size
    if start >= size or start > end:
        raise InvalidRange("InvalidRange", "The requested range is not satisfiable")
    return start, end


def _token(name: str, is_prefix: bool) -> str:
    return base64.urlsafe_b64encode(json.dumps([name, is_prefix]).encode()).decode()


def _read_token(token: str) -> tuple[str, bool]:
    try:
        name, is_prefix = json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(name, str) and isinstance(is_prefix, bool):
            return name, is_prefix
    except (ValueError, TypeError):
        pass
    raise StorageRefused("InvalidArgument", "The continuation token provided is incorrect")
