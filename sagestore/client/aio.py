"""AsyncClient: the sagestore API over aiohttp. Client (sync.py) runs this same code on a private
event loop, so both have the same methods and behaviour.

Uploads: a file up to `threshold` is one streamed PUT with its sha256 in Repr-Digest; a larger one
is an indexed session (several chunks in flight) that the server hashes in order (verifySha256):
the client hashes each chunk as it sends it and gives the sha256 at completion, so the file is read
once. A rerun of the same upload (same user, bucket, key and size, and the same first bytes: the
local sha256 of the server's hashed prefix equals its sha256SoFar) continues that session and sends
the chunks after the prefix; other sessions of that key are aborted, never completed.

Downloads: parallel Range GETs (If-Range: the ETag) into `<target>.part`, with the ranges done
so far in `<target>.part.json`, so a rerun continues; the sha256 is checked against the server's
Repr-Digest, then the file is renamed into place.
"""
from __future__ import annotations

import asyncio
import base64
import email.utils
import errno
import fnmatch
import hashlib
import json
import mimetypes
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, BinaryIO, Callable, Iterable
from urllib.parse import quote

import aiohttp
from yarl import URL

from .config import MiB, TransferConfig
from .errors import (ChecksumMismatch, NotFound, ObjectChanged, RangeNotSatisfiable, SagestoreError, TransferError,
                     UnexpectedAnswer, UnsafeKey, error_for)
from .terminal import safe_text

Progress = Callable[[int], Any]  # called with byte counts as they are sent or received (negative: resent)
Notice = Callable[[str], Any]  # called with one line of text, e.g. before each retry

RETRY_STATUSES = frozenset({423, 500, 502, 503, 504})
SHARE_FIELDS = ("id", "method", "bucket_id", "key", "expires_at")
SEND_PIECE = 1 * MiB
HASH_READ = 8 * MiB
MAX_WRITE_PIECES = 256  # per pwritev: well under IOV_MAX (1024), however small the received pieces
# how much a response may buffer before aiohttp stops reading its socket (its default, 64 KiB,
# pauses and resumes reading many times per MiB of a download: ~15% of the client's transfer CPU)
READ_BUFFER = 1 * MiB


@dataclass
class FileInfo:
    """What HEAD tells about a file. sha256 is None when the server does not know it."""
    bucket_id: str
    key: str
    size: int
    etag: str
    sha256: str | None
    content_type: str
    last_modified: str | None


def parse_repr_digest(value: str | None) -> str | None:
    """The sha-256 of an RFC 9530 Repr-Digest header, as hex."""
    for member in (value or "").split(","):
        name, _, rest = member.strip().partition("=")
        if name.strip().lower() == "sha-256" and rest.startswith(":") and rest.endswith(":"):
            try:
                raw = base64.b64decode(rest[1:-1], validate=True)
            except ValueError:
                return None
            return raw.hex() if len(raw) == 32 else None
    return None


def retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def reason_of(problem: BaseException, read_timeout: float = 0) -> str:
    """A connection failure in words (no library class names)."""
    if isinstance(problem, aiohttp.ClientConnectorDNSError):
        return "the host name does not resolve"
    if isinstance(problem, aiohttp.ClientConnectorError):
        if problem.os_error.errno == errno.ECONNREFUSED or isinstance(problem.os_error, ConnectionRefusedError):
            return "connection refused"
        return (problem.os_error.strerror or str(problem.os_error) or "cannot connect").lower()
    if isinstance(problem, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(problem, aiohttp.ClientPayloadError):
        return "the answer was cut short"
    if isinstance(problem, aiohttp.ClientResponseError):
        return "the answer is not valid HTTP"
    if isinstance(problem, asyncio.TimeoutError):
        return f"no answer within {read_timeout:g} s" if read_timeout else "timed out"
    if isinstance(problem, aiohttp.ClientOSError) and problem.strerror:
        return problem.strerror.lower()
    return "the connection failed"


def unreachable(problem: BaseException) -> bool:
    """Nothing listens there (refused) or the name does not resolve: retrying will not help soon."""
    return isinstance(problem, aiohttp.ClientConnectorDNSError) or (
        isinstance(problem, aiohttp.ClientConnectorError)
        and (problem.os_error.errno == errno.ECONNREFUSED or isinstance(problem.os_error, ConnectionRefusedError)))


def local_path_of(target_dir: str | os.PathLike, relative_key: str) -> Path:
    """Where a listed file lands under target_dir, or UnsafeKey when its key could leave it:
    an absolute path, a '.', '..' or empty segment, a backslash, a drive letter or a control
    character. The check is on the key's text and again on the resolved path."""
    segments = relative_key.split("/")
    if not relative_key or relative_key.startswith("/") or "\\" in relative_key \
            or any(segment in ("", ".", "..") for segment in segments) \
            or (len(segments[0]) >= 2 and segments[0][1] == ":") \
            or any(ord(char) < 32 or ord(char) == 127 for char in relative_key):
        raise UnsafeKey(f"refusing key {safe_text(relative_key)!r}: its local path would not stay inside "
                        f"{os.fspath(target_dir)}")
    root = Path(target_dir).resolve()
    if not Path(root, *segments).resolve().is_relative_to(root):  # a symlinked folder inside target_dir
        raise UnsafeKey(f"refusing key {safe_text(relative_key)!r}: its local path resolves outside {root}")
    return Path(target_dir, *segments)


def matches(path: str, include: Iterable[str] | None, exclude: Iterable[str] | None) -> bool:
    """fnmatch patterns against a relative path (and its file name): included unless excluded."""
    name = path.rsplit("/", 1)[-1]
    include, exclude = list(include or []), list(exclude or [])
    if include and not any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in include):
        return False
    return not any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in exclude)


def _pwrite_all(fd: int, pieces: list[bytes], position: int) -> None:
    """Write the pieces at position (pwritev may write less than asked)."""
    views = [memoryview(piece) for piece in pieces]
    while views:
        count = os.pwritev(fd, views, position)
        position += count
        while views and count >= len(views[0]):
            count -= len(views[0])
            views.pop(0)
        if views and count:
            views[0] = views[0][count:]


class _PrefixHasher:
    """The sha256 of a `.part` file whose chunks land in any order: each chunk is hashed (read
    back from the page cache, in a thread) as soon as every chunk before it has landed, so the
    digest is ready with the last chunk instead of costing a whole second read at the end."""

    def __init__(self, path: Path, chunk: int, size: int, done: set[int]) -> None:
        self.path, self.chunk, self.size = path, chunk, size
        self.landed = set(done)  # an earlier run's chunks are in the file already
        self.next = 0
        self.digest = hashlib.sha256()
        self.more = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    def landed_chunk(self, number: int) -> None:
        self.landed.add(number)
        self.more.set()

    async def _run(self) -> None:
        with open(self.path, "rb", buffering=0) as handle:
            while self.next * self.chunk < self.size:
                if self.next not in self.landed:
                    self.more.clear()
                    await self.more.wait()
                    continue
                await asyncio.to_thread(self._hash_chunk, handle, self.next)
                self.next += 1

    def _hash_chunk(self, handle: BinaryIO, number: int) -> None:
        position, end = number * self.chunk, min(self.size, (number + 1) * self.chunk)
        buffer = bytearray(min(HASH_READ, end - position))
        view = memoryview(buffer)
        while position < end:
            count = os.preadv(handle.fileno(), [view[:min(len(buffer), end - position)]], position)
            if not count:
                raise OSError(f"{self.path} ended at {position} of {self.size} bytes")
            self.digest.update(view[:count])
            position += count

    async def hexdigest(self) -> str:
        await self.task
        return self.digest.hexdigest()

    def cancel(self) -> None:
        self.task.cancel()


def file_sha256(path_or_file: str | os.PathLike | BinaryIO) -> str:
    """sha256 of a file in big reads (hashlib releases the GIL: run it in a thread)."""
    digest = hashlib.sha256()
    buffer = bytearray(HASH_READ)
    view = memoryview(buffer)
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "rb", buffering=0) as handle:
            while count := handle.readinto(buffer):
                digest.update(view[:count])
    else:
        path_or_file.seek(0)
        while chunk := path_or_file.read(HASH_READ):
            digest.update(chunk)
    return digest.hexdigest()


class _Source:
    """A local file to upload, read at offsets (os.pread on a real file: no shared file position)."""

    def __init__(self, source: str | os.PathLike | BinaryIO) -> None:
        self._spool = None
        if isinstance(source, (str, os.PathLike)):
            self.path: str | None = os.fspath(source)
            self._handle = open(self.path, "rb", buffering=0)
        else:
            self.path = None
            if not (hasattr(source, "seekable") and source.seekable()):
                self._spool = tempfile.TemporaryFile()  # a pipe or socket: spool it to know size and sha256
                while chunk := source.read(HASH_READ):
                    self._spool.write(chunk)
                source = self._spool
            self._handle = source
        try:
            self._fd: int | None = self._handle.fileno()
            os.pread(self._fd, 0, 0)
        except (OSError, AttributeError, ValueError):
            self._fd = None
        self._handle.seek(0, os.SEEK_END)
        self.size = self._handle.tell()
        self._handle.seek(0)

    def read_at(self, offset: int, size: int) -> bytes:
        if self._fd is not None:
            data = os.pread(self._fd, size, offset)
        else:
            self._handle.seek(offset)
            data = self._handle.read(size)
        if len(data) != size:
            raise TransferError(f"the local file changed while it was read (short read at {offset})")
        return data

    def sha256(self) -> str:
        return file_sha256(self.path) if self.path else file_sha256(self._handle)

    def sha256_of_prefix(self, length: int) -> Any:
        """A hashlib sha256 of the first `length` bytes, to be fed on."""
        digest = hashlib.sha256()
        for offset in range(0, min(length, self.size), HASH_READ):
            digest.update(self.read_at(offset, min(HASH_READ, length - offset)))
        return digest

    def close(self) -> None:
        if self.path is not None or self._spool is not None:
            self._handle.close()


class _InOrderHasher:
    """The whole-file sha256, fed with the chunks read for sending, in index order: a chunk's
    feed waits for the one before it, so at most the chunks in flight are held."""

    def __init__(self, digest: Any, next_chunk: int) -> None:
        self.digest = digest
        self.next = next_chunk
        self.turn = asyncio.Condition()

    async def feed(self, number: int, data: bytes) -> None:
        async with self.turn:
            await self.turn.wait_for(lambda: self.next == number)
        await asyncio.to_thread(self.digest.update, data)
        async with self.turn:
            self.next += 1
            self.turn.notify_all()


class AsyncClient:
    """The sagestore API. `url` is the server's base URL (http://host:port); `token` is sent as
    `Authorization: Bearer <token>`; None is anonymous (public buckets can be read)."""

    def __init__(self, url: str, token: str | None = None, *, config: TransferConfig | None = None,
                 on_retry: Notice | None = None) -> None:
        self.url = url.rstrip("/")
        self.config = config or TransferConfig()
        self._token = token
        self._session: aiohttp.ClientSession | None = None
        self._on_retry = on_retry  # told one line before each retry
        self._answered = False  # the server has answered once: later refusals are a restart, retried

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}({self.url!r}, token={'<set>' if self._token else None})"

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"User-Agent": "sagestore-client/1"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            self._session = aiohttp.ClientSession(
                headers=headers, auto_decompress=False, read_bufsize=READ_BUFFER,
                connector=aiohttp.TCPConnector(limit=max(16, 2 * self.config.concurrency)),
                timeout=aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout,
                                              sock_read=self.config.read_timeout))
        return self._session

    def _target(self, path: str, **params: Any) -> URL:
        url = URL(self.url + path, encoded=True)
        query = {name: str(value) for name, value in params.items() if value is not None}
        return url.update_query(query) if query else url

    @staticmethod
    def _file_path(bucket_id: str, key: str) -> str:
        return f"/api/v1/objects/{quote(str(bucket_id), safe='')}/{quote(key, safe='/')}"

    # ------------------------------------------------------------------ requests with retries
    def _delay(self, attempt: int, headers: Any = None) -> float:
        wait = retry_after(headers)
        if wait is None:  # full jitter: spread clients that failed together
            wait = random.uniform(0, min(self.config.max_backoff, self.config.backoff * 2 ** attempt))
        return min(wait, max(self.config.max_backoff, 60.0))

    async def _call(self, method: str, url: URL, handle: Callable[[aiohttp.ClientResponse], Any], *,
                    body: Callable[[], Any] | None = None, json_body: Any = None, headers: dict | None = None,
                    ok: tuple[int, ...] = (200,), on_retry: Callable[[], Any] | None = None) -> Any:
        """One request with retries: `handle(response)` turns a response with an `ok` status into the
        result (it may read a body; a connection failure while it does is retried too). `body()`
        makes a fresh request body for every attempt."""
        attempt = 0
        while True:
            try:
                kwargs: dict[str, Any] = {"headers": headers}
                if body is not None:
                    kwargs["data"] = body()
                elif json_body is not None:
                    kwargs["json"] = json_body
                async with self._http().request(method, url, **kwargs) as response:
                    self._answered = True
                    if response.status in ok:
                        return await handle(response)
                    try:
                        payload = json.loads(await response.read() or b"null")
                    except (ValueError, aiohttp.ClientError):
                        payload = None
                    error = error_for(response.status, payload, response.reason or "")
                    if response.status not in RETRY_STATUSES or attempt >= self.config.retries:
                        raise error
                    retry_headers = response.headers
                    reason = f"HTTP {response.status}: {error.message}"
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError,
                    asyncio.TimeoutError) as problem:  # ClientResponseError: an answer that is not valid HTTP
                reason = reason_of(problem, self.config.read_timeout)
                if not self._answered and unreachable(problem):
                    # nothing to wait for at the first contact: say so at once
                    raise TransferError(f"cannot reach {self.url}: {reason}"
                                        + ("; is `sagestore serve` running?" if reason == "connection refused"
                                           else "")) from None
                if attempt >= self.config.retries:
                    raise TransferError(f"{method} {url.path} failed after {attempt + 1} attempts: {reason} "
                                        f"({self.url})") from None
                retry_headers = None
            if on_retry is not None:
                on_retry()
            wait = self._delay(attempt, retry_headers)
            if self._on_retry is not None:
                self._on_retry(f"retrying {method} {url.path} in {wait:.1f} s (attempt {attempt + 2} of "
                               f"{self.config.retries + 1}): {reason}")
            await asyncio.sleep(wait)
            attempt += 1

    async def _json(self, method: str, path: str, *, params: dict | None = None, json_body: Any = None,
                    ok: tuple[int, ...] = (200,)) -> Any:
        async def read(response: aiohttp.ClientResponse) -> Any:
            raw = await response.read()
            try:
                return json.loads(raw) if raw else None
            except (ValueError, UnicodeDecodeError):
                kind = safe_text(response.headers.get("Content-Type", "no Content-Type"))[:100]
                raise UnexpectedAnswer(f"{method} {path}: the server's answer is not JSON (HTTP {response.status}, "
                                       f"{kind}); is {self.url} a sagestore server?",
                                       status=response.status) from None
        return await self._call(method, self._target(path, **(params or {})), read, json_body=json_body, ok=ok)

    async def _json_object(self, method: str, path: str, field: str | None = None, kind: type = dict,
                           **kwargs: Any) -> Any:
        """_json, checked to be a JSON object (or its `field` to be of `kind`)."""
        answer = await self._json(method, path, **kwargs)
        value = answer.get(field) if field is not None and isinstance(answer, dict) else answer
        if not isinstance(answer, dict) or not isinstance(value, kind):
            what = f"a JSON object with {field!r}" if field else "a JSON object"
            raise UnexpectedAnswer(f"{method} {path}: expected {what}, got {type(answer).__name__}")
        return value

    # ------------------------------------------------------------------ buckets
    async def create_bucket(self, type: str, name: str = "", public: bool = False) -> dict[str, Any]:
        return await self._json("POST", "/api/v1/objects",
                                params={"type": type, "name": name, "public": "true" if public else None})

    async def get_bucket(self, bucket_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/api/v1/objects/{quote(bucket_id, safe='')}")

    async def list_buckets(self, owner: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        return await self._json("GET", "/api/v1/objects", params={"owner": owner, "name": name})

    async def update_bucket(self, bucket_id: str, *, name: str | None = None, type: str | None = None,
                            archived: bool | None = None) -> dict[str, Any]:
        changes = {k: v for k, v in (("name", name), ("type", type), ("archived", archived)) if v is not None}
        return await self._json("PATCH", f"/api/v1/objects/{quote(bucket_id, safe='')}", json_body=changes)

    async def delete_bucket(self, bucket_id: str) -> dict[str, Any]:
        return await self._json("DELETE", f"/api/v1/objects/{quote(bucket_id, safe='')}")

    # ------------------------------------------------------------------ permissions
    async def list_permissions(self, bucket_id: str) -> list[dict[str, Any]]:
        return await self._json("GET", f"/api/v1/objects/{quote(bucket_id, safe='')}", params={"permissions": ""})

    async def grant(self, bucket_id: str, grantee_type: str, grantee: str, permission: str) -> dict[str, Any]:
        return await self._json("PUT", f"/api/v1/objects/{quote(bucket_id, safe='')}", params={"permissions": ""},
                                json_body={"granteeType": grantee_type, "grantee": grantee,
                                           "permission": permission})

    async def revoke(self, bucket_id: str, grantee_type: str, grantee: str,
                     permission: str | None = None) -> dict[str, Any]:
        spec = f"{grantee_type}:{grantee}" + (f":{permission}" if permission else "")
        return await self._json("DELETE", f"/api/v1/objects/{quote(bucket_id, safe='')}",
                                params={"permissions": "", "grantee": spec})

    async def make_public(self, bucket_id: str) -> dict[str, Any]:
        return await self.grant(bucket_id, "GROUP", "AllUsers", "READ")

    async def make_private(self, bucket_id: str) -> dict[str, Any]:
        return await self.revoke(bucket_id, "GROUP", "AllUsers")

    # ------------------------------------------------------------------ share links
    async def create_share(self, bucket_id: str, key: str, *, method: str = "GET",
                           expires_in: int = 3600) -> dict[str, Any]:
        return await self._json("POST", "/api/v1/shares", ok=(200, 201), json_body={
            "bucket_id": bucket_id, "key": key, "method": method, "expires_in": int(expires_in)})

    async def list_shares(self, bucket_id: str | None = None) -> list[dict[str, Any]]:
        """The caller's share links (with bucket_id: every link on that bucket the caller may see;
        its owner sees those others made too). Each has id, url, method, bucket_id, key,
        expires_at, created_by, created_at and revoked."""
        shares = await self._json_object("GET", "/api/v1/shares", "shares", list, params={"bucket_id": bucket_id})
        for share in shares:
            if not isinstance(share, dict) or not all(isinstance(share.get(field), str) for field in SHARE_FIELDS):
                raise UnexpectedAnswer(f"GET /api/v1/shares: a share link without {', '.join(SHARE_FIELDS)}")
        return shares

    async def revoke_share(self, share_id: str) -> None:
        await self._json("DELETE", f"/api/v1/shares/{quote(share_id, safe='')}", ok=(200, 204))

    # ------------------------------------------------------------------ unfinished uploads
    async def list_uploads(self, bucket_id: str | None = None, key: str | None = None) -> list[dict[str, Any]]:
        sessions = await self._json_object("GET", "/api/v1/attachment/sessions", "sessions", list,
                                           params={"bucket_id": bucket_id, "key": key, "limit": 1000})
        if not all(isinstance(session, dict) and isinstance(session.get("sessionId"), str) for session in sessions):
            raise UnexpectedAnswer("GET /api/v1/attachment/sessions: an upload without a sessionId")
        return sessions

    async def abort_upload(self, upload_id: str) -> None:
        await self._json("POST", f"/api/v1/attachment/session/{quote(upload_id, safe='')}/abort", ok=(204,))

    # ------------------------------------------------------------------ files: listing, stat, delete
    async def list_page(self, bucket_id: str, folder: str = "", *, recursive: bool = False,
                        limit: int | None = None, continuation_token: str | None = None) -> dict[str, Any]:
        """One raw listing page (S3 ListObjectsV2 shape; keys relative to `folder`)."""
        if folder and not folder.endswith("/"):
            folder += "/"
        return await self._json_object("GET", self._file_path(bucket_id, folder), params={
            "recursive": "true" if recursive else None, "limit": limit, "ContinuationToken": continuation_token})

    async def list(self, bucket_id: str, prefix: str = "", *, recursive: bool = False) -> AsyncIterator[dict]:
        """Files (and, not recursive, sub-folders) under a folder, page after page. Files are
        {"key", "size", "etag", "last_modified"}; folders {"prefix"}; keys are full keys."""
        folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        token = None
        while True:
            page = await self.list_page(bucket_id, folder, recursive=recursive, continuation_token=token)
            try:
                prefixes = [{"prefix": folder + common["Prefix"]} for common in page.get("CommonPrefixes") or []]
                files = [{"key": folder + item["Key"], "size": int(item["Size"]), "etag": item.get("ETag", ""),
                          "last_modified": item.get("LastModified", "")} for item in page.get("Contents") or []]
                if not all(isinstance(entry.get("key", entry.get("prefix")), str) for entry in prefixes + files):
                    raise TypeError("a key is not a string")
            except (KeyError, TypeError, ValueError, AttributeError) as problem:
                raise UnexpectedAnswer(f"the listing of bucket {bucket_id} is malformed: {problem}") from None
            for entry in prefixes + files:
                yield entry
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def stat(self, bucket_id: str, key: str) -> FileInfo:
        """What the server says of a file; NotFound names the key and the bucket."""
        async def info(response: aiohttp.ClientResponse) -> FileInfo:
            try:
                size = int(response.headers.get("Content-Length", 0))
            except ValueError:
                raise UnexpectedAnswer(f"HEAD sage://{bucket_id}/{key}: Content-Length is not a number") from None
            return FileInfo(bucket_id, key, size,
                            response.headers.get("ETag", ""), parse_repr_digest(response.headers.get("Repr-Digest")),
                            response.headers.get("Content-Type", ""), response.headers.get("Last-Modified"))
        try:
            return await self._call("HEAD", self._target(self._file_path(bucket_id, key)), info)
        except NotFound:
            # a HEAD answer has no body to say which of the two is missing
            raise NotFound(f"no file {safe_text(key)!r} in bucket {safe_text(bucket_id)} "
                           "(or no such bucket, or you may not read it)") from None

    async def read(self, bucket_id: str, key: str, start: int = 0, end: int | None = None, *,
                   etag: str | None = None) -> bytes:
        """Bytes [start, end) of a file in one GET (end exclusive, None: to the end of the file; a
        negative start without end: the last -start bytes). A range past the end gives b"". With
        `etag`, ObjectChanged is raised, before the body is read, if the file is another one now."""
        if end is not None and (start < 0 or end <= start):
            raise ValueError("read: end needs 0 <= start < end (a negative start goes without end)")
        headers = {}
        if start < 0:
            headers["Range"] = f"bytes={start}"
        elif start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"

        async def body(response: aiohttp.ClientResponse) -> bytes:
            if etag is not None and response.headers.get("ETag") != etag:
                raise ObjectChanged(f"{key} changed while it was read (ETag {response.headers.get('ETag')}, "
                                    f"expected {etag})")
            data = await response.read()
            if response.status == 200 and headers:  # the whole file came back: cut the range out of it
                data = data[start:] if start < 0 else data[start:end]
            return data
        try:
            return await self._call("GET", self._target(self._file_path(bucket_id, key)), body, headers=headers,
                                    ok=(200, 206))
        except RangeNotSatisfiable:
            return b""

    async def delete(self, bucket_id: str, key: str) -> dict[str, Any]:
        return await self._json("DELETE", self._file_path(bucket_id, key))

    # ------------------------------------------------------------------ uploads
    async def upload_file(self, bucket_id: str, key: str, source: str | os.PathLike | BinaryIO, *,
                          progress: Progress | None = None, content_type: str | None = None,
                          on_resume: Progress | None = None) -> dict[str, Any]:
        """Upload a path or a binary file object to `key`; returns the server's file info (with
        `sha256`, verified by the server, and `resumed`: bytes already on the server). The bytes
        a rerun finds on the server go to `on_resume` when given, else to `progress`."""
        report = progress or (lambda n: None)
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", key)
        content_type = content_type or mimetypes.guess_type(str(name))[0] or "application/octet-stream"
        local = await asyncio.to_thread(_Source, source)
        try:
            if local.size <= self.config.threshold:  # its Repr-Digest goes first: one read more, of a small file
                sha256 = await asyncio.to_thread(local.sha256)
                return await self._put_whole(bucket_id, key, local, sha256, content_type, report)
            return await self._upload_session(bucket_id, key, local, content_type, report, on_resume or report)
        finally:
            local.close()

    async def _put_whole(self, bucket_id: str, key: str, local: _Source, sha256: str, content_type: str,
                         report: Progress) -> dict[str, Any]:
        sent = [0]

        async def body() -> AsyncIterator[bytes]:
            for offset in range(0, local.size, SEND_PIECE):
                piece = await asyncio.to_thread(local.read_at, offset, min(SEND_PIECE, local.size - offset))
                yield piece
                sent[0] += len(piece)
                report(len(piece))

        def resent() -> None:
            report(-sent[0])
            sent[0] = 0

        headers = {"Content-Type": content_type, "Content-Length": str(local.size),
                   "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(sha256)).decode()}:"}

        async def done(response: aiohttp.ClientResponse) -> dict[str, Any]:
            answer = await response.json()
            return {"bucket_id": answer.get("bucket-id", bucket_id), "key": answer.get("key", key),
                    "size": local.size, "sha256": sha256, "resumed": 0}

        return await self._call("PUT", self._target(self._file_path(bucket_id, key)), done,
                                body=lambda: body() if local.size else b"", headers=headers, on_retry=resent)

    async def _find_session(self, bucket_id: str, key: str, local: _Source) -> tuple[dict[str, Any], Any] | None:
        """The open session this upload can continue, with the sha256 of the local file's first
        bytesHashed bytes (the server's sha256SoFar matched it); every other session of the key is
        aborted, so a changed file never completes an old upload."""
        found = None
        for upload in await self.list_uploads(bucket_id, key):
            if upload["key"] != key or upload.get("state") != "open" or upload.get("protocol") != "session":
                continue
            if found is None and upload.get("fileSize") == local.size and upload.get("sha256") is None \
                    and upload.get("sha256SoFar"):
                prefix = await asyncio.to_thread(local.sha256_of_prefix, int(upload["bytesHashed"]))
                if prefix.hexdigest() == upload["sha256SoFar"]:
                    found = (upload, prefix)
                    continue
            try:
                await self.abort_upload(upload["sessionId"])
            except SagestoreError:
                pass  # completing or gone meanwhile: either way it is not ours to continue
        return found

    async def _upload_session(self, bucket_id: str, key: str, local: _Source, content_type: str,
                              report: Progress, report_resumed: Progress) -> dict[str, Any]:
        """An indexed session hashed in order (verifySha256): the client hashes each chunk as it
        sends it, in index order, and gives the sha256 at completion, so the file is read once."""
        found = await self._find_session(bucket_id, key, local)
        if found is None:
            started = await self._json("POST", "/api/v1/attachment/initiate", ok=(201,), json_body={
                "bucket_id": bucket_id, "key": key, "fileName": key.rsplit("/", 1)[-1], "fileSize": local.size,
                "contentType": content_type, "verifySha256": True})
            session_id, chunk_size, total = started["sessionId"], started["chunkSize"], started["totalChunks"]
            hashed, digest = 0, hashlib.sha256()
        else:
            session, digest = found
            session_id, chunk_size, total = session["sessionId"], session["chunkSize"], session["totalChunks"]
            # every hashed prefix ends on a chunk boundary, or at the end of the file
            hashed = total if int(session["bytesHashed"]) >= local.size else int(session["bytesHashed"]) // chunk_size
        # chunks 1..hashed are on the server and hashed; the others are sent (again, if they were
        # parked there unhashed), so that this run sees every byte after the prefix, in order
        resumed = min(local.size, hashed * chunk_size)
        if resumed:
            report_resumed(resumed)
        hasher = _InOrderHasher(digest, hashed + 1)
        await self._send_chunks(session_id, chunk_size, list(range(hashed + 1, total + 1)), local, report, hasher)
        result = await self._json("POST", f"/api/v1/attachment/session/{session_id}/complete", ok=(201,),
                                  json_body={"sha256": digest.hexdigest()})
        return {**result, "resumed": resumed}

    async def _send_chunks(self, session_id: str, chunk_size: int, numbers: list[int], local: _Source,
                           report: Progress, hasher: "_InOrderHasher") -> None:
        queue = list(reversed(numbers))

        async def send(number: int) -> None:
            offset = (number - 1) * chunk_size
            size = min(chunk_size, local.size - offset)
            data = await asyncio.to_thread(local.read_at, offset, size)
            sent = [0]

            async def body() -> AsyncIterator[memoryview]:
                view = memoryview(data)
                for start in range(0, size, SEND_PIECE):
                    piece = view[start:start + SEND_PIECE]
                    yield piece
                    sent[0] += len(piece)
                    report(len(piece))

            def resent() -> None:
                report(-sent[0])
                sent[0] = 0

            async def done(response: aiohttp.ClientResponse) -> None:
                await response.read()

            feeding = asyncio.ensure_future(hasher.feed(number, data))  # hashed while it is sent
            try:
                await self._call("PUT", self._target(f"/api/v1/attachment/session/{session_id}/upload/{number}"),
                                 done, body=body, on_retry=resent,
                                 headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
                await feeding
            finally:
                feeding.cancel()

        async def worker() -> None:
            while queue:
                await send(queue.pop())

        workers = [asyncio.ensure_future(worker()) for _ in range(min(self.config.concurrency, len(numbers)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def upload_folder(self, bucket_id: str, folder: str | os.PathLike, prefix: str = "", *,
                            include: Iterable[str] | None = None, exclude: Iterable[str] | None = None,
                            progress: Progress | None = None,
                            on_file: Callable[[dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
        """Upload every file under `folder` to `prefix` + its relative path (fnmatch include/exclude on
        the relative path or the file name), four files at a time."""
        async def one(job: tuple[str, Path]) -> dict[str, Any]:
            relative, path = job
            result = await self.upload_file(bucket_id, join_key(prefix, relative), path, progress=progress)
            if on_file is not None:
                on_file({**result, "source": str(path)})
            return result
        return await few_at_a_time(local_files(folder, include, exclude), one)

    # ------------------------------------------------------------------ downloads
    async def download_file(self, bucket_id: str, key: str, target: str | os.PathLike, *,
                            progress: Progress | None = None, on_resume: Progress | None = None) -> dict[str, Any]:
        """Download to `target` through `<target>.part` (resumed on a rerun), checked against the
        server's sha256 when it announces one, then renamed into place. The bytes a rerun finds
        in the part file go to `on_resume` when given, else to `progress`."""
        report = progress or (lambda n: None)
        target = Path(target)
        for _ in range(2):  # the object may change once under us; then start over
            info = await self.stat(bucket_id, key)
            try:
                resumed = await self._download_ranges(info, target, report, on_resume or report)
            except _Changed:
                continue
            return {"bucket_id": bucket_id, "key": key, "size": info.size, "sha256": info.sha256,
                    "verified": info.sha256 is not None, "resumed": resumed, "target": str(target)}
        raise ObjectChanged(f"{key} changed twice while it was downloaded")

    async def _download_ranges(self, info: FileInfo, target: Path, report: Progress,
                               report_resumed: Progress) -> int:
        part, state_file = target.with_name(target.name + ".part"), target.with_name(target.name + ".part.json")
        chunk = max(1, self.config.chunk_size)
        total = max(1, -(-info.size // chunk))
        done: set[int] = set()
        try:
            state = json.loads(state_file.read_text())
            if state.get("etag") == info.etag and state.get("size") == info.size and state.get("chunk") == chunk \
                    and part.exists():
                done = {int(n) for n in state.get("done", [])}
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        target.parent.mkdir(parents=True, exist_ok=True)
        if not done:
            with open(part, "wb") as handle:
                handle.truncate(info.size)
        resumed = sum(min(chunk, info.size - n * chunk) for n in done)
        if resumed:
            report_resumed(resumed)
        fd = os.open(part, os.O_WRONLY)
        state_lock = asyncio.Lock()
        hasher = _PrefixHasher(part, chunk, info.size, done) if info.sha256 is not None else None

        def write_state(text: str) -> None:
            temporary = state_file.with_name(state_file.name + ".tmp")
            temporary.write_text(text)
            os.replace(temporary, state_file)

        async def save_state() -> None:
            async with state_lock:  # a file write and a rename: in a thread, not on the event loop
                await asyncio.to_thread(write_state, json.dumps({"etag": info.etag, "size": info.size,
                                                                 "chunk": chunk, "done": sorted(done)}))

        async def fetch(number: int) -> None:
            start = number * chunk
            end = min(info.size, start + chunk) - 1
            written = [0]

            async def write(response: aiohttp.ClientResponse) -> None:
                if response.status == 200 and info.size > 0 and (start, end) != (0, info.size - 1):
                    raise _Changed()  # If-Range did not match: the object is another one now
                if response.headers.get("ETag", info.etag) != info.etag:
                    raise _Changed()
                position = start
                # the pieces as received (no joining copy), written with one pwritev per MiB or so
                pending: list[bytes] = []
                pending_size = 0

                async def flush() -> None:
                    nonlocal position, pending, pending_size
                    if pending:
                        await asyncio.to_thread(_pwrite_all, fd, pending, position)
                        position += pending_size
                        written[0] += pending_size
                        report(pending_size)
                        pending, pending_size = [], 0

                # not iter_chunks(): aiohttp's shared empty-body reader never ends it once used
                while (piece := (await response.content.readchunk())[0]) or not response.content.at_eof():
                    if position + pending_size + len(piece) > end + 1:
                        raise _Changed()
                    pending.append(piece)
                    pending_size += len(piece)
                    if pending_size >= SEND_PIECE or len(pending) >= MAX_WRITE_PIECES:
                        await flush()
                await flush()
                if position != end + 1:
                    raise aiohttp.ClientPayloadError(f"range {start}-{end} ended at {position}")

            def rewind() -> None:
                report(-written[0])
                written[0] = 0

            if info.size == 0:
                return
            await self._call("GET", self._target(self._file_path(info.bucket_id, info.key)), write,
                             headers={"Range": f"bytes={start}-{end}", "If-Range": info.etag}, ok=(200, 206),
                             on_retry=rewind)
            done.add(number)
            if hasher is not None:
                hasher.landed_chunk(number)
            await save_state()

        queue = [n for n in range(total - 1, -1, -1) if n not in done]

        async def worker() -> None:
            while queue:
                await fetch(queue.pop())

        workers = [asyncio.ensure_future(worker()) for _ in range(min(self.config.concurrency, len(queue)))]
        try:
            await asyncio.gather(*workers)
            actual = await hasher.hexdigest() if hasher is not None else None
        except _Changed:
            part.unlink(missing_ok=True)
            state_file.unlink(missing_ok=True)
            raise
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if hasher is not None:
                hasher.cancel()
            os.close(fd)
        if info.sha256 is not None:
            if actual != info.sha256:
                part.unlink(missing_ok=True)
                state_file.unlink(missing_ok=True)
                raise ChecksumMismatch(f"{info.key}: downloaded sha256 {actual} differs from the server's "
                                       f"{info.sha256}; the partial file was removed")
        os.replace(part, target)
        state_file.unlink(missing_ok=True)
        return resumed

    async def download_folder(self, bucket_id: str, prefix: str, target_dir: str | os.PathLike, *,
                              include: Iterable[str] | None = None, exclude: Iterable[str] | None = None,
                              progress: Progress | None = None,
                              on_file: Callable[[dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
        """Download every file under `prefix` into target_dir (fnmatch include/exclude on the path
        relative to the prefix). Every key is checked first: one whose local path would leave
        target_dir (see local_path_of) stops the whole download with UnsafeKey before any file
        is written, since a listing holding such keys cannot be trusted."""
        folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        keys = [item["key"] async for item in self.list(bucket_id, folder, recursive=True)
                if "key" in item and matches(item["key"][len(folder):], include, exclude)]
        destinations = {key: local_path_of(target_dir, key[len(folder):]) for key in keys}

        async def one(key: str) -> dict[str, Any]:
            result = await self.download_file(bucket_id, key, destinations[key], progress=progress)
            if on_file is not None:
                on_file(result)
            return result
        return await few_at_a_time(keys, one)


FILES_IN_PARALLEL = 4


async def few_at_a_time(jobs: Iterable[Any], work: Callable[[Any], Any]) -> list[Any]:
    """work(job) for every job, FILES_IN_PARALLEL at once, results in the jobs' order."""
    slots = asyncio.Semaphore(FILES_IN_PARALLEL)

    async def one(job: Any) -> Any:
        async with slots:
            return await work(job)
    return list(await asyncio.gather(*(one(job) for job in jobs)))


class _Changed(Exception):
    """The remote file is not the one the download started on (If-Range gave 200, or another ETag)."""


def join_key(prefix: str, relative: str) -> str:
    return (prefix.rstrip("/") + "/" + relative) if prefix.strip("/") else relative


def local_files(folder: str | os.PathLike, include: Iterable[str] | None = None,
                exclude: Iterable[str] | None = None) -> list[tuple[str, Path]]:
    """(relative POSIX path, path) of every file under folder that the patterns select, sorted."""
    root = Path(folder)
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
            if path.is_file() and matches(relative, include, exclude):
                found.append((relative, path))
    return sorted(found)
