"""The scenarios. Each one moves the input file through one path and returns what it
stored; the runner times it, samples the servers and verifies the bytes afterwards.

A scenario whose endpoint answers 404/405/501 on its first request raises NotAvailable,
so the report says "not available" instead of dropping it."""
from __future__ import annotations

import asyncio
import hashlib
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp

from sagestore.storage import BucketMapping

from .stack import AUTH, BARE_BUCKET, DIRECT_BUCKET, PEER_BUCKET

MIB = 2**20
PART_SIZE = 16 * MIB
PARTS_IN_FLIGHT = 4
READ_CHUNK = MIB
MISSING_ROUTE = (404, 405, 501)
# Indexed sessions number chunks 1..totalChunks, like S3 parts (sagestore's choice; seed 002 is silent).
CHUNK_ID_BASE = 1


class NotAvailable(Exception):
    """The endpoint a scenario needs does not exist (yet)."""


class Failed(Exception):
    """The scenario ran but something answered wrongly."""


@dataclass
class InputFile:
    path: Path
    size: int
    sha256: str
    block_sha256: list[str]  # of each PART_SIZE block, for ranged reads

    @classmethod
    def create(cls, path: Path, size: int) -> "InputFile":
        """Random bytes (os.urandom, so nothing compresses or deduplicates)."""
        whole = hashlib.sha256()
        blocks = []
        with open(path, "wb") as handle:
            remaining = size
            while remaining:
                block = os.urandom(min(PART_SIZE, remaining))
                handle.write(block)
                whole.update(block)
                blocks.append(hashlib.sha256(block).hexdigest())
                remaining -= len(block)
        return cls(path, size, whole.hexdigest(), blocks)

    def read(self, offset: int, length: int) -> bytes:
        with open(self.path, "rb") as handle:
            return os.pread(handle.fileno(), length, offset)

    def part_count(self, part_size: int) -> int:
        return max(1, -(-self.size // part_size))


@dataclass
class Stored:
    """An object a scenario wrote: where, and the bytes it must hold."""
    bucket: str
    key: str
    sha256: str
    size: int
    keep: bool = False  # a download scenario reads it later


@dataclass
class Outcome:
    bytes: int
    stored: list[Stored] = field(default_factory=list)
    verified: bool | None = None  # downloads verify while reading
    note: str = ""


@dataclass
class Bench:
    """What every scenario needs."""
    input: InputFile
    http: aiohttp.ClientSession
    s3: Any  # the aiobotocore client, same settings as sagestore's own
    server_url: str
    peer_url: str = ""
    relay_url: str = ""  # the bare relay (bench/bare_relay.py)
    bucket_id: str = ""  # the SAGE bucket the sagestore scenarios write to
    bucket_error: str = ""  # why there is none
    mapping: BucketMapping = field(default_factory=BucketMapping)
    start_peer: Callable[[], Awaitable[None]] | None = None

    # --- HTTP helpers --------------------------------------------------------
    async def api(self, method: str, path: str, *, first: bool = False, expect=(200, 201, 202, 204),
                  what: str = "", **kwargs) -> tuple[int, dict[str, str], Any]:
        """One call to sagestore; returns (status, headers, JSON body or None)."""
        headers = {**AUTH, **kwargs.pop("headers", {})}
        url = path if path.startswith("http") else self.server_url + path
        async with self.http.request(method, url, headers=headers, **kwargs) as response:
            text = await response.text(errors="replace")
            label = what or f"{method} {path.split('?')[0]}"
            if first and response.status in MISSING_ROUTE:
                raise NotAvailable(f"{label} answered {response.status}")
            if response.status not in expect:
                raise Failed(f"{label} answered {response.status}: {text[:300]}")
            body = None
            if text and response.content_type == "application/json":
                body = await response.json(content_type=None)
            return response.status, dict(response.headers), body

    def need_bucket(self) -> str:
        if not self.bucket_id:
            raise NotAvailable(self.bucket_error or "no SAGE bucket")
        return self.bucket_id

    def sagestore_object(self, key: str, *, keep: bool = False) -> Stored:
        location = self.mapping.object(self.bucket_id, key)
        return Stored(location.bucket, location.key, self.input.sha256, self.input.size, keep)


async def in_parallel(count: int, in_flight: int, work: Callable[[int], Awaitable[Any]]) -> list[Any]:
    """work(0..count-1) with at most in_flight running; results in order. The first
    failure cancels the rest."""
    results: list[Any] = [None] * count
    numbers = iter(range(count))

    async def worker() -> None:
        for number in numbers:
            results[number] = await work(number)
    workers = [asyncio.create_task(worker()) for _ in range(min(in_flight, count))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
    return results


async def read_part(source: InputFile, number: int, part_size: int) -> bytes:
    return await asyncio.to_thread(source.read, number * part_size, part_size)


# --- the baseline ------------------------------------------------------------

async def direct_upload(b: Bench, key: str, *, in_flight: int = PARTS_IN_FLIGHT, keep: bool = True) -> Outcome:
    """aiobotocore straight to SeaweedFS: multipart, 16 MiB parts, 4 in flight (or in_flight)."""
    created = await b.s3.create_multipart_upload(Bucket=DIRECT_BUCKET, Key=key)
    upload_id = created["UploadId"]

    async def send(index: int) -> dict[str, Any]:
        data = await read_part(b.input, index, PART_SIZE)
        response = await b.s3.upload_part(Bucket=DIRECT_BUCKET, Key=key, UploadId=upload_id,
                                          PartNumber=index + 1, Body=data)
        return {"PartNumber": index + 1, "ETag": response["ETag"]}
    try:
        parts = await in_parallel(b.input.part_count(PART_SIZE), in_flight, send)
        await b.s3.complete_multipart_upload(Bucket=DIRECT_BUCKET, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})
    except BaseException:
        await b.s3.abort_multipart_upload(Bucket=DIRECT_BUCKET, Key=key, UploadId=upload_id)
        raise
    return Outcome(b.input.size, [Stored(DIRECT_BUCKET, key, b.input.sha256, b.input.size, keep=keep)])


async def direct_get(b: Bench, key: str) -> Outcome:
    response = await b.s3.get_object(Bucket=DIRECT_BUCKET, Key=key)
    digest = hashlib.sha256()
    size = 0
    async with response["Body"] as body:
        async for chunk in body.iter_chunks(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    if digest.hexdigest() != b.input.sha256:
        raise Failed("direct GET returned other bytes")
    return Outcome(size, verified=True)


# --- the bare relay: the same transfer with nothing but aiohttp and aiobotocore --

async def bare_relay_put(b: Bench, key: str, *, keep: bool = False) -> Outcome:
    """The raw body, streamed from the file with a Content-Length, to the bare relay."""
    with open(b.input.path, "rb") as handle:
        async with b.http.put(f"{b.relay_url}/relay/{BARE_BUCKET}/{urllib.parse.quote(key)}", data=handle,
                              headers={"Content-Type": "application/octet-stream"}) as response:
            if response.status != 201:
                raise Failed(f"bare relay PUT answered {response.status}: {(await response.text())[:300]}")
            answer = await response.json()
    if answer.get("size") != b.input.size:
        raise Failed(f"bare relay stored {answer.get('size')} bytes of {b.input.size}")
    return Outcome(b.input.size, [Stored(BARE_BUCKET, key, b.input.sha256, b.input.size, keep=keep)])


async def bare_relay_get(b: Bench, key: str) -> Outcome:
    digest, size = hashlib.sha256(), 0
    async with b.http.get(f"{b.relay_url}/relay/{BARE_BUCKET}/{urllib.parse.quote(key)}") as response:
        if response.status != 200:
            raise Failed(f"bare relay GET answered {response.status}: {(await response.text())[:300]}")
        async for chunk in response.content.iter_chunked(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    if digest.hexdigest() != b.input.sha256:
        raise Failed("bare relay GET returned other bytes")
    return Outcome(size, verified=True)


# --- the SAGE API (issue 3) --------------------------------------------------

OBJECT_PUT = "PUT /api/v1/objects/{id}/{key}"


def object_path(b: Bench, key: str) -> str:
    return f"/api/v1/objects/{b.need_bucket()}/{urllib.parse.quote(key)}"


async def form_put(b: Bench, key: str) -> Outcome:
    """multipart/form-data with the field `file`, streamed from the file by aiohttp."""
    path = object_path(b, key)
    with open(b.input.path, "rb") as handle:
        form = aiohttp.MultipartWriter("form-data")
        part = form.append(handle, {"Content-Type": "application/octet-stream"})
        part.set_content_disposition("form-data", name="file", filename="input.bin")
        _, _, body = await b.api("PUT", path, first=True, data=form, expect=(200, 201), what=OBJECT_PUT)
    check_put_answer(body, b.bucket_id, key)
    return Outcome(b.input.size, [b.sagestore_object(key)])


async def raw_put(b: Bench, key: str, *, keep: bool = False, source: InputFile | None = None) -> Outcome:
    """The raw body, streamed from the file with a Content-Length."""
    source = source or b.input
    path = object_path(b, key)
    with open(source.path, "rb") as handle:
        _, _, body = await b.api("PUT", path, first=True, data=handle, expect=(200, 201), what=OBJECT_PUT,
                                 headers={"Content-Type": "application/octet-stream"})
    check_put_answer(body, b.bucket_id, key)
    location = b.mapping.object(b.bucket_id, key)
    return Outcome(source.size, [Stored(location.bucket, location.key, source.sha256, source.size, keep)])


def check_put_answer(body: Any, bucket_id: str, key: str) -> None:
    if not isinstance(body, dict) or body.get("bucket-id") != bucket_id or body.get("key") != key:
        raise Failed(f"unexpected PUT answer {body!r}")


def need_download(b: Bench, key: str) -> None:
    b.need_bucket()
    if not key:
        raise NotAvailable("no sagestore object to read (raw PUT not available)")


async def sagestore_get(b: Bench, key: str) -> Outcome:
    need_download(b, key)
    digest = hashlib.sha256()
    size = 0
    async with b.http.get(b.server_url + object_path(b, key), headers=AUTH) as response:
        if response.status in MISSING_ROUTE:
            raise NotAvailable(f"GET /api/v1/objects/{{id}}/{{key}} answered {response.status}")
        if response.status != 200:
            raise Failed(f"GET answered {response.status}: {(await response.text())[:300]}")
        async for chunk in response.content.iter_chunked(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    if digest.hexdigest() != b.input.sha256:
        raise Failed("GET returned other bytes")
    return Outcome(size, verified=True)


async def range_get(b: Bench, key: str) -> Outcome:
    """A parallel downloader: 16 MiB Range requests, 4 in flight, each checked against
    the input's block hashes."""
    need_download(b, key)
    url = b.server_url + object_path(b, key)

    async def fetch(index: int) -> int:
        start = index * PART_SIZE
        end = min(b.input.size, start + PART_SIZE) - 1
        digest = hashlib.sha256()
        async with b.http.get(url, headers={**AUTH, "Range": f"bytes={start}-{end}"}) as response:
            if index == 0 and response.status in MISSING_ROUTE:
                raise NotAvailable(f"GET /api/v1/objects/{{id}}/{{key}} answered {response.status}")
            if response.status != 206:
                raise Failed(f"Range GET answered {response.status}, not 206")
            async for chunk in response.content.iter_chunked(READ_CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != b.input.block_sha256[index]:
            raise Failed(f"range {start}-{end} returned other bytes")
        return end - start + 1
    sizes = await in_parallel(b.input.part_count(PART_SIZE), PARTS_IN_FLIGHT, fetch)
    return Outcome(sum(sizes), verified=True)


# --- the multipart proxy (issue 4) -------------------------------------------

def part_etag(headers: dict[str, str], body: Any) -> str:
    if isinstance(body, dict):
        for name in ("etag", "ETag"):
            if body.get(name):
                return body[name]
    if headers.get("ETag"):
        return headers["ETag"]
    raise Failed(f"part answer carries no ETag: {body!r}")


async def multipart(b: Bench, key: str, *, presigned: bool, in_flight: int = PARTS_IN_FLIGHT) -> Outcome:
    """16 MiB parts, in_flight at a time (4 by default, like the direct baseline)."""
    target = {"object_type": "file", "object_id": b.need_bucket()}
    _, _, created = await b.api("POST", "/api/v1/multipart/", first=True, json={**target, "key": key})
    upload_id = created["upload_id"]

    async def send(index: int) -> dict[str, Any]:
        data = await read_part(b.input, index, PART_SIZE)
        number = index + 1
        if presigned:
            _, _, answer = await b.api("POST", "/api/v1/multipart/part/", first=index == 0,
                                       json={**target, "upload_id": upload_id, "part_number": number})
            async with b.http.put(answer["url"], data=data) as response:
                if response.status != 200:
                    raise Failed(f"presigned PUT answered {response.status}: {(await response.text())[:300]}")
                etag = response.headers["ETag"]
        else:
            _, headers, answer = await b.api("PUT", f"/api/v1/multipart/{upload_id}/parts/{number}",
                                             first=index == 0, data=data, expect=(200, 201, 204),
                                             what="PUT /api/v1/multipart/{upload_id}/parts/{n}")
            etag = part_etag(headers, answer)
        return {"part_number": number, "etag": etag}
    try:
        parts = await in_parallel(b.input.part_count(PART_SIZE), in_flight, send)
        await b.api("POST", "/api/v1/multipart/complete/", json={**target, "upload_id": upload_id, "parts": parts})
    except BaseException:
        await abort_quietly(b, "/api/v1/multipart/abort/", json={**target, "upload_id": upload_id})
        raise
    return Outcome(b.input.size, [b.sagestore_object(key)])


async def abort_quietly(b: Bench, path: str, **kwargs) -> None:
    try:
        await b.api("POST", path, expect=(200, 201, 204, 404), **kwargs)
    except Exception:  # noqa: BLE001 - clean-up after a failure that is being reported
        pass


# --- offset chunks and indexed sessions (issue 5) ----------------------------

async def offset_chunks(b: Bench, key: str, chunk_size: int = PART_SIZE) -> Outcome:
    """Sequential chunks of 16 MiB: the first creates the upload, then import_upload."""
    bucket_id = b.need_bucket()
    started = time.perf_counter()
    upload_id = ""
    offset = 0
    while offset < b.input.size:
        data = await asyncio.to_thread(b.input.read, offset, chunk_size)
        if not upload_id:
            query = urllib.parse.urlencode({"bucket_id": bucket_id, "key": key})
            _, _, answer = await b.api("PUT", f"/api/v1/upload?{query}", first=True, data=data)
            upload_id = answer["upload_id"]
        else:
            query = urllib.parse.urlencode({"upload_id": upload_id, "offset": offset})
            _, _, answer = await b.api("PUT", f"/api/v1/upload?{query}", data=data)
        offset += len(data)
        if answer.get("offset") != offset:
            raise Failed(f"offset after a chunk is {answer.get('offset')}, expected {offset}")
    chunks_done = time.perf_counter()
    status, headers, answer = await b.api("POST", "/api/v1/import_upload", first=True,
                                          json={"upload_id": upload_id, "bucket_id": bucket_id, "key": key})
    if status == 202:
        await wait_for_import(b, headers, answer)
    return Outcome(b.input.size, [b.sagestore_object(key)],
                   note=f"chunks {chunks_done - started:.1f} s + import {time.perf_counter() - chunks_done:.1f} s")


async def wait_for_import(b: Bench, headers: dict[str, str], answer: Any) -> None:
    """Follow a 202's status URL until the import has finished."""
    status_url = headers.get("Location") or next(
        (answer[name] for name in ("status_url", "status", "url", "href") if isinstance(answer, dict)
         and isinstance(answer.get(name), str) and "/" in answer[name]), None)
    if not status_url:
        raise Failed(f"202 from import_upload without a status URL: {answer!r}")
    for _ in range(6000):
        status, _, state = await b.api("GET", status_url, expect=(200, 201, 202))
        text = str(state.get("state") or state.get("status") or "").lower() if isinstance(state, dict) else ""
        if status != 202 and text not in ("running", "pending", "queued", "waiting", "importing"):
            if text in ("failed", "error"):
                raise Failed(f"import failed: {state!r}")
            return
        await asyncio.sleep(0.1)
    raise Failed("import did not finish in 10 minutes")


async def indexed_session(b: Bench, key: str, in_flight: int = PARTS_IN_FLIGHT, *,
                          source: InputFile | None = None, user: str | None = None,
                          declare_sha256: bool = False) -> Outcome:
    """POST initiate, chunks of the server's chunkSize with in_flight in parallel, complete;
    as `user` (who needs WRITE on the bench bucket) instead of the bucket's owner if given;
    declare_sha256: initiate names the file's sha256, which the server verifies."""
    source = source or b.input
    bucket_id = b.need_bucket()
    as_user = {"headers": {"Authorization": f"sage user:{user}"}} if user else {}
    declared = {"sha256": source.sha256} if declare_sha256 else {}
    _, _, session = await b.api("POST", "/api/v1/attachment/initiate", first=True, **as_user, json={
        "bucket_id": bucket_id, "key": key, "fileName": Path(key).name, "fileSize": source.size,
        "contentType": "application/octet-stream", **declared})
    session_id, chunk_size = session["sessionId"], int(session["chunkSize"])
    count = int(session["totalChunks"])
    if count != source.part_count(chunk_size):
        raise Failed(f"totalChunks {count} does not fit fileSize {source.size} / chunkSize {chunk_size}")
    base = f"/api/v1/attachment/session/{session_id}"

    async def send(index: int) -> None:
        data = await asyncio.to_thread(source.read, index * chunk_size, chunk_size)
        await b.api("PUT", f"{base}/upload/{index + CHUNK_ID_BASE}", first=index == 0, data=data, **as_user,
                    what="PUT /api/v1/attachment/session/{sessionId}/upload/{chunkId}")
    try:
        await in_parallel(count, in_flight, send)
        await b.api("POST", f"{base}/complete", **as_user)
    except BaseException:
        await abort_quietly(b, f"{base}/abort", **as_user)
        raise
    location = b.mapping.object(bucket_id, key)
    return Outcome(source.size, [Stored(location.bucket, location.key, source.sha256, source.size)],
                   note=f"chunkSize {chunk_size // MIB} MiB")


# --- tus (issue 6) and the peer ----------------------------------------------

def tus_upload(url: str, headers: dict[str, str], path: Path, chunk_size: int, metadata: dict[str, str]) -> str:
    """tuspy's synchronous uploader (run in a thread); returns the upload URL."""
    from tusclient import client
    from tusclient.exceptions import TusCommunicationError
    uploader = client.TusClient(url, headers=headers).uploader(file_path=str(path), chunk_size=chunk_size,
                                                               metadata=metadata)
    try:
        uploader.upload()
    except TusCommunicationError as error:
        if uploader.url is None and error.status_code in MISSING_ROUTE:
            raise NotAvailable(f"POST {urllib.parse.urlsplit(url).path} answered {error.status_code}") from None
        raise Failed(f"tus: {error} ({error.status_code}) {str(error.response_content)[:200]}") from None
    return uploader.url


async def sagestore_tus(b: Bench, key: str, chunk_size: int, *, source: InputFile | None = None) -> Outcome:
    source = source or b.input
    bucket_id = b.need_bucket()
    await asyncio.to_thread(tus_upload, b.server_url + "/api/v1/tus/", AUTH, source.path, chunk_size,
                            {"bucket": bucket_id, "key": key, "filetype": "application/octet-stream"})
    location = b.mapping.object(bucket_id, key)
    return Outcome(source.size, [Stored(location.bucket, location.key, source.sha256, source.size)])


async def peer_tus(b: Bench, key: str, chunk_size: int, *, source: InputFile | None = None) -> Outcome:
    """@tus/server + @tus/s3-store: it stores the object under the upload id."""
    source = source or b.input
    upload_url = await asyncio.to_thread(tus_upload, b.peer_url, {}, source.path, chunk_size,
                                         {"filename": key, "filetype": "application/octet-stream"})
    upload_id = upload_url.rstrip("/").rsplit("/", 1)[-1]
    return Outcome(source.size, [Stored(PEER_BUCKET, upload_id, source.sha256, source.size),
                                  Stored(PEER_BUCKET, upload_id + ".info", "", 0)])


# --- signed URLs / share links (issue 12) ------------------------------------

async def signed_put(b: Bench, key: str) -> Outcome:
    """A PUT share link, then the raw body to its URL with no Authorization header."""
    _, _, link = await b.api("POST", "/api/v1/shares", first=True, json={
        "bucket_id": b.need_bucket(), "key": key, "method": "PUT"})
    with open(b.input.path, "rb") as handle:
        async with b.http.put(link["url"], data=handle) as response:
            if response.status != 201:
                raise Failed(f"signed PUT answered {response.status}: {(await response.text())[:300]}")
    return Outcome(b.input.size, [b.sagestore_object(key)])


async def signed_get(b: Bench, key: str) -> Outcome:
    need_download(b, key)
    _, _, link = await b.api("POST", "/api/v1/shares", first=True, json={"bucket_id": b.bucket_id, "key": key})
    digest, size = hashlib.sha256(), 0
    async with b.http.get(link["url"]) as response:
        if response.status != 200:
            raise Failed(f"signed GET answered {response.status}: {(await response.text())[:300]}")
        async for chunk in response.content.iter_chunked(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    if digest.hexdigest() != b.input.sha256:
        raise Failed("signed GET returned other bytes")
    return Outcome(size, verified=True)


# --- the S3 API: the AWS CLI straight to SeaweedFS and through sagestore ---------------
@dataclass
class AwsTarget:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    workdir: Path


def aws_env(target: AwsTarget) -> dict[str, str]:
    """The AWS CLI with its default transfer settings (8 MiB parts, 10 requests in flight)."""
    import shutil as _shutil
    import sys as _sys
    config = target.workdir / "aws-config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    bin_dir = str(Path(_sys.executable).parent)
    if _shutil.which("aws", path=bin_dir) is None and _shutil.which("aws") is None:
        raise NotAvailable("the AWS CLI is not installed (pip install awscli)")
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(target.workdir), "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(target.workdir / "none"), "AWS_ACCESS_KEY_ID": target.access_key,
            "AWS_SECRET_ACCESS_KEY": target.secret_key}


async def _aws(target: AwsTarget, *args: str) -> None:
    process = await asyncio.create_subprocess_exec("aws", "--endpoint-url", target.endpoint, *args,
                                                   env=aws_env(target), stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.PIPE)
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise Failed(f"aws {' '.join(args[:2])} exited {process.returncode}: {stderr.decode()[-300:]}")


async def aws_cli_put(b: Bench, target: AwsTarget, key: str) -> Outcome:
    await _aws(target, "s3", "cp", "--only-show-errors", str(b.input.path), f"s3://{target.bucket}/{key}")
    if target.bucket == DIRECT_BUCKET:
        return Outcome(b.input.size, [Stored(DIRECT_BUCKET, key, b.input.sha256, b.input.size)])
    return Outcome(b.input.size, [b.sagestore_object(key)])


async def aws_cli_get(b: Bench, target: AwsTarget, key: str) -> Outcome:
    path = target.workdir / "aws-cli-download.bin"
    try:
        await _aws(target, "s3", "cp", "--only-show-errors", f"s3://{target.bucket}/{key}", str(path))
        digest = await asyncio.to_thread(lambda: hashlib.file_digest(open(path, "rb"), "sha256").hexdigest())
        if digest != b.input.sha256:
            raise Failed("aws s3 cp downloaded other bytes")
        return Outcome(b.input.size, verified=True)
    finally:
        path.unlink(missing_ok=True)
