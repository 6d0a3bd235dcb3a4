"""Request bodies of the S3 door as streams of the object's bytes, checked as they pass.

`aws_chunked` decodes the aws-chunked framing (`<hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n`
... `0...\\r\\n<trailers>\\r\\n`) piece by piece, never holding more than one framing line: data is
passed on as views of the pieces received. Chunk signatures are checked as each chunk ends, the
trailer (its x-amz-checksum-* value and, when signed, its signature) at the end.

`checked_body` wraps a decoded stream with what the request declared about it (its length,
Content-Md5, x-amz-checksum-*, a signed payload's sha256) and raises the S3 error at the end of
the stream when something does not hold. A consumer that publishes only after the stream ended
(put_stream, the engine's parts) therefore publishes nothing for a bad body.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
from typing import AsyncIterator, Callable

from ..uploads.checksums import new_digest
from .errors import error
from .sigv4 import ChunkSignatures

MAX_LINE = 4096  # a chunk header or trailer line; real ones are under 200 bytes
MAX_TRAILER_LINES = 16
CHECKSUM_HEADERS = {"x-amz-checksum-crc32": "crc32", "x-amz-checksum-crc32c": "crc32c",
                    "x-amz-checksum-crc64nvme": "crc64nvme", "x-amz-checksum-sha1": "sha1",
                    "x-amz-checksum-sha256": "sha256"}
HASH_BATCH = 1 << 20  # bytes hashed per worker-thread call


class _Reader:
    """Bytes from an async iterator of pieces, with line reads for the framing."""

    def __init__(self, pieces: AsyncIterator[bytes]) -> None:
        self.pieces = pieces
        self.buffer = memoryview(b"")

    async def _more(self) -> bool:
        async for piece in self.pieces:
            if piece:
                self.buffer = memoryview(bytes(self.buffer) + piece) if self.buffer else memoryview(piece)
                return True
        return False

    async def line(self) -> bytes:
        while True:
            index = bytes(self.buffer[:MAX_LINE + 2]).find(b"\r\n")
            if index >= 0:
                line = bytes(self.buffer[:index])
                self.buffer = self.buffer[index + 2:]
                return line
            if len(self.buffer) > MAX_LINE:
                raise error("InvalidRequest", "aws-chunked framing line too long")
            if not await self._more():
                raise error("IncompleteBody", "the aws-chunked body ended inside its framing")

    async def data(self, size: int) -> AsyncIterator[memoryview]:
        """The next `size` bytes, as views of the pieces received."""
        while size > 0:
            if not self.buffer and not await self._more():
                raise error("IncompleteBody")
            take = self.buffer[:size]
            self.buffer = self.buffer[len(take):]
            size -= len(take)
            yield take


async def aws_chunked(pieces: AsyncIterator[bytes], signatures: ChunkSignatures | None, *,
                      trailer_names: tuple[str, ...], signed_trailer: bool,
                      on_trailers: Callable[[dict[str, str]], None]) -> AsyncIterator[memoryview]:
    """The decoded bytes of an aws-chunked body. `signatures` checks each chunk's signature (None:
    unsigned chunks); the trailer section must carry exactly `trailer_names` (and, when
    `signed_trailer`, x-amz-trailer-signature); `on_trailers` receives them at the end."""
    reader = _Reader(pieces)
    while True:
        header = (await reader.line()).decode("latin-1")
        size_text, _, extension = header.partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise error("InvalidRequest", "malformed aws-chunked chunk header") from None
        if size < 0 or len(size_text.strip()) > 16:
            raise error("InvalidRequest", "malformed aws-chunked chunk header")
        given = None
        if signatures is not None:
            name, _, given = extension.strip().partition("=")
            if name != "chunk-signature" or len(given) != 64:
                raise error("AccessDenied", "an aws-chunked chunk lacks its chunk-signature")
        digest = hashlib.sha256() if signatures is not None else None
        async for view in reader.data(size):
            if digest is not None:
                digest.update(view)
            yield view
        if signatures is not None:
            signatures.check_chunk(digest.hexdigest(), given)
        if size == 0:
            break
        if await reader.line() != b"":
            raise error("InvalidRequest", "an aws-chunked chunk is longer than its declared size")
    trailers: dict[str, str] = {}
    trailer_signature = None
    for _ in range(MAX_TRAILER_LINES + 1):
        line = (await reader.line()).decode("latin-1")
        if line == "":
            break
        name, sep, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if not sep or name in trailers:
            raise error("InvalidRequest", "malformed aws-chunked trailer")
        if name == "x-amz-trailer-signature":
            trailer_signature = value
        else:
            trailers[name] = value
    else:
        raise error("InvalidRequest", "too many aws-chunked trailer lines")
    if set(trailers) != set(trailer_names):
        raise error("InvalidRequest", f"the trailer must carry {', '.join(trailer_names) or 'nothing'} as "
                                      "x-amz-trailer declared")
    if signed_trailer and trailer_names:
        if trailer_signature is None or signatures is None:
            raise error("AccessDenied", "the trailer lacks its x-amz-trailer-signature")
        signatures.check_trailer(sorted(trailers.items()), trailer_signature)
    if reader.buffer or await reader._more():
        raise error("InvalidRequest", "bytes after the end of the aws-chunked body")
    on_trailers(trailers)


class ThreadedHasher:
    """Digests of a stream computed in a worker thread, a batch at a time, while the event loop goes
    on receiving: hashlib and zlib release the GIL on large buffers."""

    def __init__(self, algorithms: set[str]) -> None:
        self.digests = {name: new_digest(name) for name in algorithms}
        self.pending: list[memoryview | bytes] = []
        self.pending_size = 0
        self.running: asyncio.Future | None = None

    def _update(self, pieces: list) -> None:
        for piece in pieces:
            for digest in self.digests.values():
                digest.update(piece)

    async def feed(self, piece: memoryview | bytes) -> None:
        if not self.digests:
            return
        self.pending.append(piece)
        self.pending_size += len(piece)
        if self.pending_size >= HASH_BATCH:
            await self._flush()

    async def _flush(self) -> None:
        if self.running is not None:
            await self.running
        batch, self.pending, self.pending_size = self.pending, [], 0
        self.running = asyncio.ensure_future(asyncio.to_thread(self._update, batch)) if batch else None

    async def finish(self) -> dict[str, bytes]:
        await self._flush()
        if self.running is not None:
            await self.running
            self.running = None
        return {name: digest.digest() for name, digest in self.digests.items()}

    def cancel(self) -> None:
        if self.running is not None and not self.running.done():
            self.running.cancel()


def decode_checksum(header: str, value: str) -> bytes:
    algorithm = CHECKSUM_HEADERS[header]
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise error("InvalidDigest", f"{header} is not valid base64") from None
    if len(raw) != len(new_digest(algorithm).digest()):
        raise error("InvalidDigest", f"{header} has the wrong length for {algorithm}")
    return raw


class BodyChecks:
    """What a request declared about its (decoded) body, checked once the body has passed."""

    def __init__(self, *, length: int | None, content_md5: str | None, checksums: dict[str, bytes],
                 payload_sha256: str | None, want_md5: bool, trailer_names: tuple[str, ...] = ()) -> None:
        self.length = length
        self.expected_md5 = None
        if content_md5 is not None:
            try:
                self.expected_md5 = base64.b64decode(content_md5.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise error("InvalidDigest") from None
            if len(self.expected_md5) != 16:
                raise error("InvalidDigest")
        self.checksums = dict(checksums)  # header name -> raw digest declared up front
        self.trailer_names = trailer_names  # checksum headers that come in the trailer
        self.payload_sha256 = payload_sha256
        algorithms = {CHECKSUM_HEADERS[name] for name in (*self.checksums, *trailer_names)}
        if want_md5 or self.expected_md5 is not None:
            algorithms.add("md5")
        if payload_sha256 is not None:
            algorithms.add("sha256")
        self.hasher = ThreadedHasher(algorithms)
        self.received = 0
        self.md5: bytes | None = None
        self.results: dict[str, bytes] = {}

    def take_trailers(self, trailers: dict[str, str]) -> None:
        for name in self.trailer_names:
            self.checksums[name] = decode_checksum(name, trailers[name])

    async def stream(self, decoded: AsyncIterator[memoryview | bytes]) -> AsyncIterator[memoryview | bytes]:
        try:
            async for piece in decoded:
                self.received += len(piece)
                if self.length is not None and self.received > self.length:
                    raise error("InvalidRequest", "the body is longer than its declared length")
                await self.hasher.feed(piece)
                yield piece
            await self.finish()
        finally:
            self.hasher.cancel()

    async def finish(self) -> None:
        if self.length is not None and self.received != self.length:
            raise error("IncompleteBody")
        self.results = await self.hasher.finish()
        self.md5 = self.results.get("md5")
        if self.expected_md5 is not None and not hmac.compare_digest(self.expected_md5, self.md5):
            raise error("BadDigest", "The Content-MD5 you specified did not match what we received.")
        if self.payload_sha256 is not None and not hmac.compare_digest(
                self.payload_sha256, self.results["sha256"].hex()):
            raise error("XAmzContentSHA256Mismatch")
        for name, expected in self.checksums.items():
            if not hmac.compare_digest(expected, self.results[CHECKSUM_HEADERS[name]]):
                raise error("BadDigest", f"The {name} you specified did not match the calculated checksum.")

    def checksum_headers(self) -> dict[str, str]:
        """The checksums the client declared (and we verified), to echo in the response."""
        return {name: base64.b64encode(value).decode() for name, value in self.checksums.items()}
