"""The S3 store: the storage contract (contract.py) over one aiobotocore client: streaming put and
get, listing, multipart, presign. botocore's exceptions never leave this module: every client
call goes through `_Translating`, which turns them into the contract's typed errors.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import logging
import socket
from typing import Any, AsyncIterator, Callable, Iterator

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from .contract import (MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, Capabilities, ListPage, ObjectInfo, ObjectStream,
                       PutResult, TransferSlots, copy_in_parts, keys_page_by_page, part_size_for)
from .digests import crc32c, crc32c_b64, crc_b64
from .errors import (NOT_FOUND_CODES, UNREACHABLE, ChecksumMismatch, InvalidRange, ObjectNotFound, SourceChanged,
                     StorageError, StorageRefused, StorageUnavailable)
from .keys import Location
from .part_body import PartBody

log = logging.getLogger("sagestore.storage")


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def storage_error(error: ClientError) -> StorageError:
    """The contract's error for an S3 error answer."""
    code = error_code(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = error.response.get("Error", {}).get("Message") or code
    if code in NOT_FOUND_CODES:
        return ObjectNotFound(code, message, status=status or 404)
    if code == "InvalidRange":
        return InvalidRange(code, message, status=status or 416)
    if code in ("PreconditionFailed", "412"):
        return SourceChanged(code, message, status=status or 412)
    if status in (500, 503) or code in ("500", "503", "ServiceUnavailable", "SlowDown", "InternalError"):
        return StorageUnavailable(code, message, status=status or 503)
    if status == 400 and code != "400":  # S3 judged the request; a bare 400 is its HTTP layer's, below
        return StorageRefused(code, message, status=400)
    return StorageError(code, message, status=status or 502)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        raise storage_error(error) from error
    except BotoCoreError as error:  # connection refused or reset, timeouts, a body that failed to send
        raise StorageUnavailable(UNREACHABLE, f"{type(error).__name__}: {error}") from error


class _Translating:
    """The aiobotocore client with its errors turned into the contract's."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            with translated():
                return await method(*args, **kwargs)
        return call


class _S3Body:
    """A GET's StreamingBody, its errors translated."""

    def __init__(self, body: Any) -> None:
        self._body = body

    async def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        with translated():
            async for chunk in self._body.iter_chunks(size):
                yield chunk

    async def read(self) -> bytes:
        with translated():
            return await self._body.read()

    def close(self) -> None:
        self._body.close()


class S3ObjectStore:
    """The storage contract over S3. One instance per app; `client` is raw aiobotocore (for tests
    that check S3 itself), every call of ours goes through `_s3`, which translates errors."""

    def __init__(self, client: Any, *, part_size: int = 16 * 2**20, parts_in_flight: int = 4,
                 single_copy_limit: int = MAX_PART_SIZE, sign_payload: bool = False,
                 stream_parts: bool = True, transfers_in_flight: int = 16, transfer_wait: float = 30.0) -> None:
        if part_size < MIN_PART_SIZE or parts_in_flight < 1 or transfers_in_flight < 1:
            raise ValueError("part_size must be >= 5 MiB, parts_in_flight and transfers_in_flight >= 1")
        self.client = client
        self._s3 = _Translating(client)
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
        self._transfers = TransferSlots(transfers_in_flight, transfer_wait)

    @property
    def capabilities(self) -> Capabilities:
        # a PartBody still filling cannot be sent when payloads are signed: SigV4 hashes the whole
        # body before the request starts
        return Capabilities(stream_parts=self.stream_parts and not self.sign_payload, presigned_urls=True,
                            durable=True)

    # --- buckets -----------------------------------------------------------
    async def ensure_buckets(self, names: list[str]) -> int:
        """Create the S3 buckets that are missing; returns how many were created."""
        existing = {b["Name"] for b in (await self._s3.list_buckets()).get("Buckets", [])}
        missing = [name for name in names if name not in existing]
        semaphore = asyncio.Semaphore(16)

        async def create(name: str) -> None:
            async with semaphore:
                try:
                    await self._s3.create_bucket(Bucket=name)
                except StorageError as error:
                    if error.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        await asyncio.gather(*(create(name) for name in missing))
        return len(missing)

    async def ping(self, bucket: str) -> None:
        await self._s3.head_bucket(Bucket=bucket)

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
        async with self._transfers.hold():
            response = await self._s3.put_object(Bucket=loc.bucket, Key=loc.key, Body=data,
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
            return crc_b64(crc) if protect else None

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
        source's ETag is this one (else SourceChanged)."""
        condition = {"CopySourceIfMatch": if_match} if if_match else {}
        if size <= self.single_copy_limit:
            response = await self._s3.copy_object(
                Bucket=target.bucket, Key=target.key, CopySource={"Bucket": source.bucket, "Key": source.key},
                MetadataDirective="REPLACE", ContentType=content_type, Metadata=metadata, **condition)
            return response["CopyObjectResult"]["ETag"]
        return await copy_in_parts(self, source, target, content_type=content_type, metadata=metadata, size=size,
                                   part_size=self.copy_part_size, if_match=if_match)

    async def head(self, loc: Location) -> ObjectInfo | None:
        try:
            response = await self._s3.head_object(Bucket=loc.bucket, Key=loc.key)
        except ObjectNotFound:
            return None
        return _info(loc.key, response)

    async def open(self, loc: Location, byte_range: str | None = None) -> ObjectStream | None:
        """Start a streaming GET; None when the object does not exist. byte_range is an
        HTTP Range value ('bytes=0-99'); S3 answers InvalidRange for unsatisfiable ones."""
        kwargs: dict[str, Any] = {"Bucket": loc.bucket, "Key": loc.key}
        if byte_range:
            kwargs["Range"] = byte_range
        try:
            response = await self._s3.get_object(**kwargs)
        except ObjectNotFound:
            return None
        info = _info(loc.key, response)
        content_range = response.get("ContentRange")
        if content_range:
            info.size = int(content_range.rsplit("/", 1)[1])
        return ObjectStream(info, response["ContentLength"], content_range, _S3Body(response["Body"]))

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
        response = await self._s3.list_objects_v2(**kwargs)
        contents = [ObjectInfo(item["Key"], item["Size"], item.get("ETag", ""), item["LastModified"])
                    for item in response.get("Contents", [])]
        prefixes = [item["Prefix"] for item in response.get("CommonPrefixes", [])]
        return ListPage(contents, prefixes, bool(response.get("IsTruncated")),
                        response.get("NextContinuationToken"), response.get("KeyCount", len(contents) + len(prefixes)))

    iter_keys = keys_page_by_page

    async def delete(self, bucket: str, keys: list[str]) -> list[str]:
        """Batch delete (1000 per request); returns the keys deleted."""
        deleted: list[str] = []
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            response = await self._s3.delete_objects(
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
        response = await self._s3.create_multipart_upload(**kwargs)
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
        async with self._transfers.hold():
            return await self._s3.upload_part(Body=data, **kwargs)

    def _signable(self, data: Any) -> Any:
        """A signed payload is hashed by reading it: a (full) PartBody goes as a copy then."""
        if self.sign_payload and isinstance(data, PartBody):
            return io.BytesIO(data.getvalue())
        return data

    async def upload_part_copy(self, loc: Location, upload_id: str, part_number: int, source: Location,
                               byte_range: tuple[int, int] | None = None, *, if_match: str | None = None) -> str:
        kwargs: dict[str, Any] = {"Bucket": loc.bucket, "Key": loc.key, "UploadId": upload_id,
                                  "PartNumber": part_number, "CopySource": {"Bucket": source.bucket, "Key": source.key}}
        if byte_range:
            kwargs["CopySourceRange"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        if if_match:
            kwargs["CopySourceIfMatch"] = if_match
        response = await self._s3.upload_part_copy(**kwargs)
        return response["CopyPartResult"]["ETag"]

    async def list_parts(self, loc: Location, upload_id: str) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        marker = 0
        while True:
            response = await self._s3.list_parts(Bucket=loc.bucket, Key=loc.key, UploadId=upload_id,
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
        response = await self._s3.complete_multipart_upload(
            Bucket=loc.bucket, Key=loc.key, UploadId=upload_id, MultipartUpload={"Parts": parts})
        return response["ETag"]

    async def abort_multipart(self, loc: Location, upload_id: str) -> None:
        with contextlib.suppress(ObjectNotFound):
            await self._s3.abort_multipart_upload(Bucket=loc.bucket, Key=loc.key, UploadId=upload_id)

    async def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
        uploads: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            response = await self._s3.list_multipart_uploads(**kwargs)
            uploads.extend(response.get("Uploads", []))
            if not response.get("IsTruncated"):
                return uploads
            kwargs["KeyMarker"] = response.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = response.get("NextUploadIdMarker")

    # --- presigned URLs ----------------------------------------------------
    async def presign(self, operation: str, loc: Location, expires: int, **params: Any) -> str:
        return await self._s3.generate_presigned_url(
            operation, Params={"Bucket": loc.bucket, "Key": loc.key, **params}, ExpiresIn=expires)

def _info(key: str, response: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(key=key, size=int(response.get("ContentLength", 0)), etag=response.get("ETag", ""),
                      last_modified=response.get("LastModified"),
                      content_type=response.get("ContentType") or "application/octet-stream",
                      metadata=dict(response.get("Metadata") or {}))

@contextlib.asynccontextmanager
async def open_object_store(*, endpoint: str, access_key: str, secret_key: str, region: str,
                            part_size: int = 16 * 2**20, parts_in_flight: int = 4,
                            max_connections: int = 64, transfers_in_flight: int = 16,
                            single_copy_limit: int = MAX_PART_SIZE,
                            sign_payload: bool = False, stream_parts: bool = True,
                            connect_timeout: float = 5.0, read_timeout: float = 15.0,
                            max_attempts: int = 2) -> AsyncIterator[S3ObjectStore]:
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
        client.meta.events.register("needs-retry.s3", _retry_once_when_refused_on_the_wire)
        yield S3ObjectStore(client, part_size=part_size, parts_in_flight=parts_in_flight,
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


def _retry_once_when_refused_on_the_wire(response: Any, attempts: int, operation: Any, **_: Any) -> float | None:
    """A 400 without an S3 error document is the S3 server's HTTP layer refusing bytes it could not
    parse as a request (seen once under load, on a kept-alive connection), not S3 judging ours:
    sent again, on a new connection (the server closes that one), like a connection error. HEAD
    answers never have a document, so they are left alone; one retry, so a request that is
    really malformed still fails fast."""
    if response is None or attempts > 1 or operation.http.get("method") == "HEAD":
        return None
    http, parsed = response
    if http.status_code != 400 or parsed.get("Error", {}).get("Code") != "400":
        return None
    log.warning("S3 %s answered 400 without an S3 error document; sending it again", operation.name)
    return 0.05


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
