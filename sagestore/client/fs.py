"""`sage://<bucket-id>/<key>`: an fsspec filesystem over the SAGE API, so pandas, pyarrow, datasets,
dask and torch.distributed.checkpoint read and write sagestore files in place.

It is a thin layer over AsyncClient: listing, HEAD, ranged GETs, uploads (one PUT, or a resumable
session with the sha256 verified by the server), deletes and share links. Directories are not
stored: a folder exists while a file lies under it, as on S3.
"""
from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import mimetypes
import os
import re
import tempfile
import weakref
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from fsspec.asyn import AsyncFileSystem, _run_coros_in_chunks, get_loop, sync
from fsspec.caching import BaseCache, register_cache
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractBufferedFile
from fsspec.utils import tokenize

from .aio import AsyncClient
from .config import MiB, TransferConfig, resolve
from .errors import ObjectChanged, SagestoreError

DEFAULT_BLOCK_SIZE = 4 * MiB
MAX_READAHEAD = 64 * MiB
TAIL_SIZE = 64 * 1024  # pyarrow's own first footer read: the footer of most Parquet files fits
_UNSAFE_KEY = re.compile(r"[\x00-\x1f\x7f\\]")
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # a UUID, or an S3-style name; never '.' or '..'


def _os_error(problem: SagestoreError, path: str) -> OSError:
    """The OSError an fsspec caller expects for a client error, with the server's message."""
    if problem.status == 404:
        return FileNotFoundError(errno.ENOENT, problem.message, path)
    if problem.status in (401, 403):
        return PermissionError(errno.EACCES, problem.message, path)
    if isinstance(problem, ObjectChanged):
        return OSError(errno.ESTALE, problem.message, path)
    if problem.status == 413:
        return OSError(errno.EFBIG, problem.message, path)
    if problem.status == 400:
        return OSError(errno.EINVAL, problem.message, path)
    return OSError(errno.EIO, problem.message, path)


class _Translated:
    """`with _Translated(path):` turns client errors into the OSErrors fsspec callers catch."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, problem: BaseException | None, trace: Any) -> None:
        if isinstance(problem, SagestoreError):
            raise _os_error(problem, self.path) from problem


def checked_key(key: str, path: str) -> str:
    """A key the server would accept; one that could escape its folder is refused here, before any
    request (empty, '.' or '..' segments, backslashes, control characters)."""
    if _UNSAFE_KEY.search(key) or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"{path!r}: a key has no empty, '.' or '..' segments, backslashes or control characters")
    return key


def _timestamp(value: str | None) -> datetime | None:
    """Last-Modified as a datetime: an HTTP date (HEAD) or RFC 3339 (listings)."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _close_client(client: AsyncClient, loop: asyncio.AbstractEventLoop | None, pid: int) -> None:
    """Close the HTTP connections of a filesystem that is gone (from its own process and loop only)."""
    if pid != os.getpid() or loop is None or loop.is_closed() or not loop.is_running():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:  # collected inside its own loop: it cannot wait for itself
        loop.create_task(client.close())
        return
    try:
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(timeout=2)
    except Exception:  # noqa: BLE001 - shutting down: nothing left to tell
        pass


class SageFileSystem(AsyncFileSystem):
    """fsspec filesystem for `sage://<bucket-id>/<key>`.

    endpoint: the server's URL (default: the CLI's, from SAGESTORE_URL / SAGE_STORE_URL). It is not
        called `url` because fsspec.core.url_to_fs(url, **storage_options), which pandas calls, has
        a first parameter of that name.
    token: the caller's token (default: the CLI's, from SAGESTORE_TOKEN / SAGE_USER_TOKEN); with
        none, requests are anonymous, which reads public buckets.
    anon: True ignores any configured token.
    block_size: the first read-ahead of opened files (default 4 MiB; see SequentialReadahead).
    threshold, concurrency: as in TransferConfig: uploads above `threshold` go as a resumable
        session with `concurrency` chunks in flight; writes above it are spooled to a temporary file.
    Other keyword arguments are fsspec's (use_listings_cache, listings_expiry_time, ...).
    """

    protocol = ("sage",)
    root_marker = ""

    def __init__(self, endpoint: str | None = None, token: str | None = None, *, anon: bool = False,
                 block_size: int | None = None, threshold: int | None = None, concurrency: int | None = None,
                 asynchronous: bool = False, loop: Any = None, **kwargs: Any) -> None:
        super().__init__(asynchronous=asynchronous, loop=loop, **kwargs)
        resolved_url, resolved_token = resolve(endpoint, token)
        self.url = resolved_url.rstrip("/")
        self._token = None if anon else resolved_token
        self.blocksize = int(block_size or DEFAULT_BLOCK_SIZE)
        settings = {name: value for name, value in (("threshold", threshold), ("concurrency", concurrency))
                    if value is not None}
        self.config = TransferConfig(**settings)
        self._options = {"endpoint": self.url, "token": self._token, "anon": anon, "block_size": self.blocksize,
                         **settings, **kwargs}
        self._client: AsyncClient | None = None

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}({self.url!r}, token={'<set>' if self._token else None})"

    def __reduce__(self) -> Any:
        # the resolved options, so that a worker elsewhere reaches the same server as the same user;
        # never the connections, which belong to this process's event loop
        return _rebuild, (type(self), self._options)

    @property
    def fsid(self) -> str:
        return "sage_" + tokenize(self.url)

    @property
    def loop(self) -> Any:
        if self._pid != os.getpid():  # a forked worker (a DataLoader): its own loop and connections
            self._pid = os.getpid()
            self._loop = None if self.asynchronous else get_loop()
            self._client = None
        return self._loop

    @property
    def client(self) -> AsyncClient:
        self.loop  # noqa: B018 - after a fork, forget the parent's connections first
        if self._client is None:
            self._client = AsyncClient(self.url, self._token, config=self.config)
            try:  # the loop its connections will belong to: fsspec's, or the caller's (asynchronous=True)
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = self._loop
            weakref.finalize(self, _close_client, self._client, loop, os.getpid())
        return self._client

    # ------------------------------------------------------------------ paths
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return super()._strip_protocol(path).lstrip("/")

    def split_path(self, path: str) -> tuple[str, str]:
        """(bucket id, key) of a path; the key is "" for a bucket's root. Both are checked: a bucket
        of '..' would walk the request out of /api/v1/objects/ into another route."""
        path = self._strip_protocol(path)
        bucket, _, key = path.partition("/")
        if bucket and not _BUCKET.fullmatch(bucket):
            raise ValueError(f"{path!r}: a bucket is its id (letters, digits, '.', '-', '_'; no '.' or '..')")
        return bucket, checked_key(key, path) if key else ""

    def _file_parts(self, path: str) -> tuple[str, str]:
        bucket, key = self.split_path(path)
        if not key:
            raise IsADirectoryError(errno.EISDIR, "a bucket is a directory; name a file in it",
                                    self._strip_protocol(path))
        return bucket, key

    def invalidate_cache(self, path: str | None = None) -> None:
        if path is None:
            self.dircache.clear()
        else:
            path = self._strip_protocol(path)
            self.dircache.pop(path, None)
            while path:  # a new or deleted file may create or remove every folder above it
                path = self._parent(path)
                self.dircache.pop(path, None)
        super().invalidate_cache(path)

    # ------------------------------------------------------------------ reading metadata
    @staticmethod
    def _file_entry(bucket: str, item: dict[str, Any]) -> dict[str, Any]:
        return {"name": f"{bucket}/{item['key']}", "size": item["size"], "type": "file",
                "etag": item["etag"], "last_modified": item["last_modified"]}

    @staticmethod
    def _folder_entry(name: str) -> dict[str, Any]:
        return {"name": name, "size": 0, "type": "directory"}

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        bucket, key = self.split_path(path)
        if not bucket:
            return self._folder_entry("")
        if key:
            cached = None if kwargs.get("refresh") else self._ls_from_cache(path)  # FileNotFoundError if the
            if cached is not None:                                                  # parent's listing lacks it
                if path in self.dircache:
                    return self._folder_entry(path)
                return next(entry for entry in cached if entry["name"] == path)
            try:
                with _Translated(path):
                    stat = await self.client.stat(bucket, key)
                return {"name": path, "size": stat.size, "type": "file", "etag": stat.etag, "sha256": stat.sha256,
                        "content_type": stat.content_type, "last_modified": stat.last_modified}
            except FileNotFoundError:
                pass
        # a folder exists while a file lies under it: a recursive listing shows files only (some
        # backends, SeaweedFS among them, keep a deleted file's folders as common prefixes)
        with _Translated(path):
            page = await self.client.list_page(bucket, key, recursive=True, limit=1)
        if key and not page.get("Contents"):
            raise FileNotFoundError(errno.ENOENT, "no such file or folder", path)
        return self._folder_entry(path)

    async def _ls(self, path: str, detail: bool = True, refresh: bool = False, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if refresh or path not in self.dircache:
            entries = await self._list_folder(path)
            if entries is None:  # a file: ls names it, as it does on a local disk
                entries = [await self._info(path)]
            else:
                self.dircache[path] = entries
        else:
            entries = self.dircache[path]
        return list(entries) if detail else sorted(entry["name"] for entry in entries)

    async def _list_folder(self, path: str) -> list[dict[str, Any]] | None:
        """The folder's entries, page after page; None when the path is a file. Raises
        FileNotFoundError when it is neither."""
        bucket, key = self.split_path(path)
        with _Translated(path):
            if not bucket:
                return [{**self._folder_entry(b["id"]), "bucket_name": b.get("name", "")}
                        for b in await self.client.list_buckets()]
            entries, folders = [], []
            async for item in self.client.list(bucket, key):
                if "prefix" in item:
                    folders.append(item["prefix"])
                else:
                    entries.append(self._file_entry(bucket, item))
            entries += [self._folder_entry(f"{bucket}/{folder.rstrip('/')}")
                        for folder in await self._holding_files(bucket, folders)]
        if not entries and key:
            if (await self._info(path))["type"] == "file":
                return None
        return entries

    async def _holding_files(self, bucket: str, folders: list[str]) -> list[str]:
        """The folders that hold a file. Some backends (SeaweedFS) keep a folder as a common prefix
        after its last file is deleted; a recursive listing of one key tells (16 at a time)."""
        slots = asyncio.Semaphore(16)

        async def holds_a_file(folder: str) -> bool:
            async with slots:
                page = await self.client.list_page(bucket, folder, recursive=True, limit=1)
            return bool(page.get("Contents"))
        found = await asyncio.gather(*(holds_a_file(folder) for folder in folders))
        return [folder for folder, holds in zip(folders, found) if holds]

    async def _find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, **kwargs: Any) -> Any:
        """One recursive listing instead of a walk, folder by folder (maxdepth still walks)."""
        path = self._strip_protocol(path)
        bucket, key = self.split_path(path)
        if maxdepth is not None or not bucket:
            return await super()._find(path, maxdepth=maxdepth, withdirs=withdirs, **kwargs)
        detail = kwargs.pop("detail", False)
        found: dict[str, dict[str, Any]] = {}
        with _Translated(path):
            async for item in self.client.list(bucket, key, recursive=True):
                entry = self._file_entry(bucket, item)
                found[entry["name"]] = entry
                if withdirs:  # the folders between the path and the file
                    folder = entry["name"].rpartition("/")[0]
                    while len(folder) > len(path) and folder not in found:
                        found[folder] = self._folder_entry(folder)
                        folder = folder.rpartition("/")[0]
        if withdirs and (found or await self._isdir(path)):
            found[path] = self._folder_entry(path)
        elif not found and key:
            try:
                info = await self._info(path)
            except FileNotFoundError:
                info = None
            if info is not None and info["type"] == "file":
                found[path] = info
        names = sorted(found)
        return {name: found[name] for name in names} if detail else names

    def modified(self, path: str) -> datetime:
        value = _timestamp(self.info(path).get("last_modified"))
        if value is None:
            raise IsADirectoryError(errno.EISDIR, "folders have no modification time", path)
        return value.astimezone(timezone.utc)

    def ukey(self, path: str) -> str:
        """Changes whenever the file is replaced: the sha256 of its ETag."""
        info = self.info(path)
        return hashlib.sha256(str(info.get("etag") or info).encode()).hexdigest()

    def checksum(self, path: str) -> int:
        return int(self.ukey(path)[:32], 16)

    # ------------------------------------------------------------------ reading bytes
    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None,
                        etag: str | None = None, **kwargs: Any) -> bytes:
        bucket, key = self._file_parts(path)
        start = start or 0
        if (end is not None and end < 0) or (start < 0 and end is not None):
            size = (await self._info(path))["size"]
            start = max(0, size + start) if start < 0 else start
            end = max(0, size + end) if end < 0 else end
        if end is not None and end <= start:
            return b""
        try:
            with _Translated(path):
                return await self.client.read(bucket, key, start, end, etag=etag)
        except FileNotFoundError:
            if await self._isdir(path):
                raise IsADirectoryError(errno.EISDIR, "is a folder", self._strip_protocol(path)) from None
            raise

    async def _get_file(self, rpath: str, lpath: str, callback: Any = DEFAULT_CALLBACK, **kwargs: Any) -> None:
        if os.path.isdir(lpath):
            return
        bucket, key = self._file_parts(rpath)
        try:
            with _Translated(rpath):
                await self.client.download_file(bucket, key, lpath, progress=callback.relative_update)
        except FileNotFoundError:
            if await self._isdir(rpath):  # folders come along with a recursive get
                os.makedirs(lpath, exist_ok=True)
                return
            raise

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict | None = None, **kwargs: Any) -> "SageFile":
        return SageFile(self, path, mode, block_size=block_size or self.blocksize, autocommit=autocommit,
                        cache_options=cache_options, **kwargs)

    # ------------------------------------------------------------------ writing
    async def _upload(self, path: str, source: Any, callback: Any = DEFAULT_CALLBACK) -> dict[str, Any]:
        """One file up through the client: one PUT, or a resumable session verified by sha256."""
        bucket, key = self._file_parts(path)
        with _Translated(path):
            result = await self.client.upload_file(bucket, key, source, progress=callback.relative_update,
                                                   content_type=mimetypes.guess_type(key)[0])
        self.invalidate_cache(path)
        return result

    async def _abort_uploads(self, path: str) -> None:
        """Abort the caller's unfinished uploads of this file (a failed write left them)."""
        bucket, key = self._file_parts(path)
        with _Translated(path):
            for upload in await self.client.list_uploads(bucket, key):
                if upload.get("key") == key and upload.get("state") == "open" and upload.get("protocol") == "session":
                    try:
                        await self.client.abort_upload(upload["sessionId"])
                    except SagestoreError:
                        pass  # completed, aborted or expired meanwhile: not open any more either way

    async def _refuse_existing(self, path: str, mode: str) -> None:
        if mode == "create" and await self._exists(path):
            raise FileExistsError(errno.EEXIST, "the file exists", self._strip_protocol(path))

    async def _pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        await self._refuse_existing(path, mode)
        await self._upload(path, io.BytesIO(value))

    async def _put_file(self, lpath: str, rpath: str, callback: Any = DEFAULT_CALLBACK, mode: str = "overwrite",
                        **kwargs: Any) -> None:
        if os.path.isdir(lpath):
            return  # folders exist through their files
        await self._refuse_existing(rpath, mode)
        callback.set_size(os.path.getsize(lpath))
        await self._upload(rpath, lpath, callback)

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """There is no server-side copy: the bytes come down and go up again, through memory up to
        `threshold` and through a temporary file above it (downloads are checked against the
        server's sha256)."""
        info = await self._info(path1)
        if info["type"] == "directory":
            return  # folders come along with their files
        bucket, key = self._file_parts(path1)
        self._file_parts(path2)
        if info["size"] <= self.config.threshold:
            data = await self._cat_file(path1, etag=info.get("etag"))
            if info.get("sha256") and hashlib.sha256(data).hexdigest() != info["sha256"]:
                raise OSError(errno.EIO, "the copy's bytes do not match the source's sha256", path1)
            await self._upload(path2, io.BytesIO(data))
            return
        with tempfile.TemporaryDirectory(prefix="sage-copy-") as folder:
            local = os.path.join(folder, "data")
            with _Translated(path1):
                await self.client.download_file(bucket, key, local)
            await self._upload(path2, local)

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        bucket, key = self._file_parts(path)
        try:
            with _Translated(path):
                await self.client.delete(bucket, key)
        finally:
            self.invalidate_cache(path)

    async def _rm(self, path: Any, recursive: bool = False, batch_size: int | None = None,
                  maxdepth: int | None = None, **kwargs: Any) -> None:
        """Files are deleted; folders vanish with their last file (buckets stay)."""
        paths = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        files = [p for p in paths if self.split_path(p)[1]]
        results = await _run_coros_in_chunks([self._rm_file(p) for p in files], return_exceptions=True,
                                             batch_size=batch_size or self.batch_size, nofiles=True)
        for name, result in zip(files, results):
            if not isinstance(result, BaseException):
                continue
            if isinstance(result, FileNotFoundError):
                if any(other.startswith(name + "/") for other in paths):
                    continue  # a folder of this removal
                if await self._isdir(name):
                    if recursive:
                        continue
                    raise IsADirectoryError(errno.EISDIR, "is a folder: pass recursive=True", name)
            raise result

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Folders are not stored: one exists while a file lies under it."""

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Folders are not stored: one exists while a file lies under it."""

    # ------------------------------------------------------------------ share links
    async def _sign(self, path: str, expiration: int = 3600, method: str = "GET", **kwargs: Any) -> str:
        bucket, key = self._file_parts(path)
        with _Translated(path):
            share = await self.client.create_share(bucket, key, method=method, expires_in=int(expiration))
        return share["url"]

    def sign(self, path: str, expiration: int = 3600, **kwargs: Any) -> str:
        """A share link (POST /api/v1/shares): the file for anyone holding the URL, until it expires
        (at most 7 days) or is revoked. method="PUT" makes an upload link."""
        return sync(self.loop, self._sign, path, expiration, **kwargs)


def _rebuild(cls: type, options: dict[str, Any]) -> SageFileSystem:
    return cls(**options)


class SequentialReadahead(BaseCache):
    """The read cache of sage:// files: it reads ahead only while reading is sequential.

    - A read that goes on where the last one ended (or starts the file) reads ahead: the window is
      the block size, then doubles at each such read, up to max_readahead (CSV, JSON lines, torch.load).
    - A read elsewhere (a Parquet column chunk, a seek) fetches exactly its range, and the window
      starts over: fsspec's readahead cache would add a block to every column chunk (4.3 times the
      bytes of a one-column Parquet read at 4 MiB blocks).
    - A short read near the end (a Parquet or ORC footer, a zip directory) fetches the file's last
      `tail` bytes at once and keeps them apart, so the reads that follow do not evict them.
    """

    name = "sage-sequential"

    def __init__(self, blocksize: int, fetcher: Any, size: int, max_readahead: int = MAX_READAHEAD,
                 tail: int = TAIL_SIZE) -> None:
        super().__init__(blocksize, fetcher, size)
        self.max_readahead = max(blocksize, max_readahead)
        self.tail_size = tail
        self.window = 0
        self.last_end = 0  # where the previous read ended: a first read at 0 counts as sequential
        self.block: tuple[int, bytes] = (0, b"")
        self.tail: tuple[int, bytes] = (size, b"")

    def _fetch(self, start: int | None, stop: int | None) -> bytes:
        start = 0 if start is None else start
        stop = self.size if stop is None else min(stop, self.size)
        if start >= self.size or start >= stop:
            return b""
        block_start, block = self.block
        in_block = block_start <= start < block_start + len(block)
        sequential = start == self.last_end or in_block
        self.last_end = stop
        for span_start, data in (self.block, self.tail):
            if span_start <= start and stop <= span_start + len(data):
                self.hit_count += 1
                return data[start - span_start:stop - span_start]
        self.miss_count += 1
        if not sequential and start >= self.size - self.tail_size:
            tail_start = max(0, self.size - self.tail_size)
            self.tail = (tail_start, self.fetcher(tail_start, self.size))
            self.total_requested_bytes += self.size - tail_start
            return self.tail[1][start - tail_start:stop - tail_start]
        head = b""
        if in_block:  # the part of the read the block holds already
            head = block[start - block_start:]
            start = block_start + len(block)
        self.window = min(self.max_readahead, max(self.blocksize, 2 * self.window)) if sequential else 0
        fetch_stop = min(self.size, stop + self.window)
        data = self.fetcher(start, fetch_stop)
        self.total_requested_bytes += fetch_stop - start
        self.block = (start, data)
        wanted = data if fetch_stop == stop else data[:stop - start]  # no copy of a read fetched exactly
        return head + wanted if head else wanted


register_cache(SequentialReadahead, clobber=True)


class SageFile(AbstractBufferedFile):
    """An open sage:// file.

    Reading: ranged GETs, as SequentialReadahead asks for them, each checked against the ETag the
    file had when it was opened (OSError ESTALE if it was replaced). Writing: the bytes are kept in memory up to the
    filesystem's threshold and in a temporary file above it, then uploaded on close (or on commit
    inside a transaction) as one PUT or a resumable session; nothing is visible before that, and
    discard() drops them.
    """

    def __init__(self, fs: SageFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> None:
        if mode == "ab":
            raise NotImplementedError("sage:// files cannot be appended to; write a new file")
        fs._file_parts(path)
        self._spool: Any = None
        self._tried = False  # an upload was attempted: it may have left a session open
        if mode == "rb":
            info = fs.info(path)
            if info["type"] != "file":
                raise IsADirectoryError(errno.EISDIR, "is a folder", path)
            self._details = info
            kwargs["size"] = info["size"]
        elif mode == "xb" and fs.exists(path):
            raise FileExistsError(errno.EEXIST, "the file exists", path)
        kwargs.setdefault("cache_type", SequentialReadahead.name)
        super().__init__(fs, path, mode, **kwargs)
        if mode != "rb":
            self._spool = io.BytesIO()

    # ------------------------------------------------------------------ reading
    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start=start, end=end, etag=self.details.get("etag"))

    # ------------------------------------------------------------------ writing
    def write(self, data: Any) -> int:
        if not self.writable():
            raise ValueError("File not in write mode")
        if self.forced:
            raise ValueError("This file has been closed for writing")
        written = self._spool.write(data)
        self.loc += written
        if isinstance(self._spool, io.BytesIO) and self._spool.tell() > self.fs.config.threshold:
            spilled = tempfile.TemporaryFile(prefix="sage-write-")  # large: to disk, not memory
            spilled.write(self._spool.getbuffer())
            self._spool = spilled
        return written

    def flush(self, force: bool = False) -> None:
        if self.closed:
            raise ValueError("Flush on closed file")
        if self.readable() or not force:
            return  # the bytes go up in one upload, on close
        if self.forced:
            raise ValueError("Force flush cannot be called more than once")
        self.forced = True
        if self.autocommit:
            try:
                self.commit()
            except BaseException:
                self.discard()  # the file is closed: nobody can commit it again
                raise

    def commit(self) -> None:
        """Upload the bytes written (on close, or at the end of a transaction). If it fails, the
        bytes are kept: commit() again continues the upload, discard() aborts it."""
        if self._spool is None:
            return
        self._spool.seek(0)
        self._tried = True
        sync(self.fs.loop, self.fs._upload, self.path, self._spool)
        self._spool.close()
        self._spool = None
        self._tried = False

    def discard(self) -> None:
        """Drop the bytes written, and abort the upload session a failed commit left open: nothing
        of this file is published."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._tried:
            self._tried = False
            sync(self.fs.loop, self.fs._abort_uploads, self.path)
