"""Runs the selected scenarios in order, measures each one and verifies what it stored."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import psutil

from sagestore.storage import open_object_store

from . import scenarios as sc
from .load import hammer
from .monitor import MIB, ProcessMonitor, Stopwatch
from .stack import AUTH, BARE_BUCKET, BENCH_USER, DIRECT_BUCKET, JWT_SECRET, PEER_BUCKET, Stack, StartError

GIB = 2**30
SESSION_SIZE = 64 * MIB
WRK_CONNECTIONS = 16

# name -> (kind, what it measures); the order is the run order
UPLOADS = ["direct-upload", "direct-sequential", "bare-relay-put", "form-put", "raw-put", "signed-put", "multipart-proxied", "multipart-presigned", "session-4",
           "session-4-sha256", "offset-16m", "tus-16m", "tus-64m", "peer-tus-16m", "peer-tus-64m", "direct-upload-end"]
DOWNLOADS = ["direct-get", "bare-relay-get", "get", "signed-get", "range-get", "direct-get-end"]
# `aws s3 cp` up and down, straight to SeaweedFS and through sagestore's S3 API (the ratio is the door's)
S3DOOR = ["aws-cli-put-direct", "aws-cli-put", "aws-cli-get-direct", "aws-cli-get"]
WRK = ["wrk-healthz", "wrk-bucket-jwt", "wrk-small-get"]
OTHERS = ["small-requests", "small-requests-jwt", *WRK, "concurrency"]
BIG = ["big-raw-put-1GiB", "big-raw-put-10GiB", "big-tus-1GiB", "big-tus-10GiB"]
ALL = UPLOADS + DOWNLOADS + S3DOOR + OTHERS + BIG
ALIASES = {
    "direct": ["direct-upload", "direct-sequential", "direct-get", "direct-upload-end", "direct-get-end"],
    "multipart": ["multipart-proxied", "multipart-presigned"],
    "tus": ["tus-16m", "tus-64m"],
    "peer": ["peer-tus-16m", "peer-tus-64m"],
    "bare": ["bare-relay-put", "bare-relay-get"], "s3door": S3DOOR,
    "uploads": UPLOADS, "downloads": DOWNLOADS, "big": BIG, "small": ["small-requests", "small-requests-jwt", *WRK],
    "wrk": WRK,
}
# the rows whose bytes pass through sagestore's server, compared with the bare relay moving the same
# bytes the same way (PUT rows with bare-relay-put, GET rows with bare-relay-get)
RELAYED_UPLOADS = ("form-put", "raw-put", "signed-put", "multipart-proxied", "session-4", "session-4-sha256",
                   "offset-16m", "tus-16m", "tus-64m")
RELAYED_DOWNLOADS = ("get", "signed-get", "range-get")
DESCRIPTIONS = {
    "direct-upload": "aiobotocore multipart to SeaweedFS, 16 MiB parts, 4 in flight (baseline)",
    "direct-sequential": "the same with 1 part in flight: the ceiling of a one-request-at-a-time client",
    "bare-relay-put": "raw PUT to the bare relay: aiohttp + aiobotocore with sagestore's S3 settings, nothing else "
                      "(the relayed uploads' reference; RSS/CPU: the relay)",
    "bare-relay-get": "GET from the bare relay (the relayed downloads' reference; RSS/CPU: the relay)",
    "form-put": "PUT /api/v1/objects/{id}/{key}, multipart/form-data field file",
    "raw-put": "PUT /api/v1/objects/{id}/{key}, raw body",
    "signed-put": "POST /api/v1/shares (PUT), then the raw body to the signed URL", "signed-get": "GET of a share link's URL",
    "multipart-proxied": "/api/v1/multipart/ proxied parts, 16 MiB, 4 in flight",
    "multipart-presigned": "/api/v1/multipart/ presigned part URLs, 16 MiB, 4 in flight",
    "session-4": "/api/v1/attachment indexed session, 4 chunks in flight",
    "session-4-sha256": "the same, declaring the file's sha256 at initiate (chunks hashed in order, verified at completion)",
    "offset-16m": "/api/v1/upload offset chunks of 16 MiB + import_upload",
    "tus-16m": "tuspy to /api/v1/tus/, 16 MiB chunks",
    "tus-64m": "tuspy to /api/v1/tus/, 64 MiB chunks",
    "peer-tus-16m": "tuspy to @tus/server + @tus/s3-store (16 MiB parts, like sagestore), 16 MiB chunks (RSS/CPU: node)",
    "peer-tus-64m": "tuspy to @tus/server + @tus/s3-store (16 MiB parts, like sagestore), 64 MiB chunks (RSS/CPU: node)",
    "direct-upload-end": "the baseline again, after the other uploads",
    "direct-get": "aiobotocore GET from SeaweedFS (baseline)",
    "get": "GET /api/v1/objects/{id}/{key}",
    "range-get": "GET with Range, 16 MiB ranges, 4 in flight",
    "direct-get-end": "the baseline again, after the other downloads",
    "aws-cli-put-direct": "aws s3 cp of the file straight to SeaweedFS (its defaults: 8 MiB parts, 10 in flight)",
    "aws-cli-put": "aws s3 cp of the file to sagestore's S3 API (same command and settings)",
    "aws-cli-get-direct": "aws s3 cp from SeaweedFS to a file (8 MiB ranges, 10 in flight)",
    "aws-cli-get": "aws s3 cp from sagestore's S3 API to a file (same command and settings)",
}


# the rows whose server hashes every byte (the whole-file sha256 that stays): PUTs, the sequential
# protocols and the session that declares its sha256. A presigned multipart upload's bytes never pass
# through the server, and the session-4 and proxied multipart rows declare no sha256, so their server
# hashes nothing: all their CPU is overhead
HASHED_ROWS = ("form-put", "raw-put", "signed-put", "session-4-sha256", "offset-16m", "tus-16m", "tus-64m",
               "big-raw-put-1GiB", "big-raw-put-10GiB", "big-tus-1GiB", "big-tus-10GiB")


def sha256_cpu_s_per_gib(sample: int = 256 * MIB, chunk: int = MIB) -> float:
    """What hashlib's sha256 costs this machine now, in CPU seconds per GiB (the floor of every
    hashed row): a random buffer, hashed in the 1 MiB pieces the server hashes."""
    data = memoryview(os.urandom(chunk))
    digest = hashlib.sha256()
    started = time.process_time()
    for _ in range(sample // chunk):
        digest.update(data)
    return (time.process_time() - started) * GIB / sample


def expand(names: list[str]) -> list[str]:
    wanted: set[str] = set()
    for name in names:
        if name in ALIASES:
            wanted.update(ALIASES[name])
        elif name in ALL:
            wanted.add(name)
        else:
            raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(ALL + list(ALIASES))}")
    return [name for name in ALL if name in wanted]


@dataclass
class Result:
    name: str
    kind: str  # upload, download, requests, concurrency, memory
    status: str = "ok"  # ok, not available, failed
    description: str = ""
    bytes: int = 0
    seconds: float = 0.0
    mb_s: float | None = None
    ratio: float | None = None
    peak_rss_mib: float | None = None  # sampled every 50 ms
    kernel_peak_rss_mib: float | None = None  # the kernel's high-water mark (VmHWM) over the scenario
    rss_growth_mib: float | None = None
    cpu_s_per_gib: float | None = None
    # the part of cpu_s_per_gib that is the whole-file sha256 every upload path keeps (measured in
    # this run; 0 where the server never sees the bytes, or for downloads): the rest is overhead
    cpu_floor_s_per_gib: float | None = None
    # relayed rows: MB/s ÷ the bare relay's, and server CPU s/GiB − the bare relay's, in the same round
    bare_ratio: float | None = None
    cpu_minus_bare_s_per_gib: float | None = None
    weed_cpu_s_per_gib: float | None = None
    client_cpu_s_per_gib: float | None = None
    verified: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Options:
    size: int
    selected: list[str]
    concurrency: int
    workdir: Path
    results_dir: Path
    profile: list[str] = field(default_factory=list)
    rounds: int = 1
    # a scenario is stopped when the server's RSS passes this (the machine is shared)
    rss_limit: int = min(8 * 2**30, int(psutil.virtual_memory().total * 0.4))
    small_seconds: float = 5.0
    small_concurrency: int = 32
    log: Callable[[str], None] = print


class Runner:
    def __init__(self, options: Options, stack: Stack) -> None:
        self.options = options
        self.stack = stack
        self.results: list[Result] = []  # of the current round, then the merged ones
        self.rounds: list[list[Result]] = []
        self.small: dict[str, Any] = {}
        self.run_id = uuid.uuid4().hex[:8]
        self.download_key = ""  # a sagestore object holding the input, for the GET scenarios
        self.bare_key = ""  # an object in the bare relay's bucket holding the input, for bare-relay-get
        self.tus_warmed: set[str] = set()  # the tus servers that took their untimed warm-up upload
        self.log = options.log

    # --- the run -------------------------------------------------------------
    async def run(self) -> None:
        options = self.options
        self.log(f"making a {options.size / MIB:.0f} MiB random input file")
        self.sha256_floor = await asyncio.to_thread(sha256_cpu_s_per_gib)
        self.log(f"sha256 floor: {self.sha256_floor:.2f} CPU s/GiB (hashlib, this process)")
        source = await asyncio.to_thread(sc.InputFile.create, options.workdir / "input.bin", options.size)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http, \
                open_object_store(endpoint=self.stack.s3["endpoint"], access_key=self.stack.s3["access_key"],
                                  secret_key=self.stack.s3["secret_key"], region="us-east-1",
                                  max_connections=128) as store:
            for bucket in (DIRECT_BUCKET, PEER_BUCKET, BARE_BUCKET):
                await store.ensure_buckets([bucket])
            self.bench = sc.Bench(source, http, store.client, self.stack.server_url)
            await self.create_bucket()
            await self.warm_up()
            for round_number in range(options.rounds):
                self.results = []
                last = round_number == options.rounds - 1
                for name in options.selected:
                    # the heavy, non-ratio scenarios run once, in the last round
                    if last or not (name in OTHERS or name in BIG):
                        await self.run_one(name)
                self.compute_ratios()
                self.rounds.append(self.results)
            self.results = merge_rounds(self.rounds)

    async def create_bucket(self) -> None:
        """The SAGE bucket the sagestore scenarios write to: through the API, or, while
        POST /api/v1/objects does not exist yet, straight into the server's database so
        that the other protocols can still be measured."""
        b = self.bench
        try:
            _, _, body = await b.api("POST", "/api/v1/objects?type=training-data&name=bench", first=True,
                                     what="bucket creation POST /api/v1/objects")
            b.bucket_id = body["id"]
            return
        except (sc.NotAvailable, sc.Failed) as error:
            b.bucket_error = str(error)
        try:
            from sagestore.db import buckets, create_pool, transaction
            pool = await create_pool(self.stack.database_url, 1)
            try:
                async with transaction(pool) as cur:
                    row = await buckets.create(cur, str(uuid.uuid4()), "bench", "training-data", BENCH_USER, False)
            finally:
                pool.close()
                await pool.wait_closed()
            b.bucket_id = row["id"]
            self.log(f"{b.bucket_error}: made the bucket in the database instead")
        except Exception as error:  # noqa: BLE001 - reported; the direct scenarios still run
            self.log(f"no SAGE bucket: {b.bucket_error}; database: {type(error).__name__}: {error}")

    async def warm_up(self) -> None:
        """SeaweedFS makes a bucket's volumes on its first write; do that before timing,
        in every S3 bucket a scenario writes to."""
        buckets = [DIRECT_BUCKET, PEER_BUCKET, BARE_BUCKET]
        if self.bench.bucket_id:
            buckets.append(self.bench.mapping.s3_bucket(self.bench.bucket_id))
        s3 = self.bench.s3
        part = os.urandom(5 * MIB)
        for bucket in buckets:
            key = f"bench/warm-up-{self.run_id}"
            upload_id = (await s3.create_multipart_upload(Bucket=bucket, Key=key))["UploadId"]
            answers = await asyncio.gather(*(s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                                            PartNumber=n, Body=part) for n in (1, 2, 3, 4)))
            parts = [{"PartNumber": n, "ETag": a["ETag"]} for n, a in zip((1, 2, 3, 4), answers)]
            await s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                               MultipartUpload={"Parts": parts})
            await s3.delete_object(Bucket=bucket, Key=key)

    async def run_one(self, name: str) -> None:
        b = self.bench
        key = f"bench/{name}-{self.run_id}-r{len(self.rounds) + 1}.bin"
        direct_key = f"bench/direct-upload-{self.run_id}.bin"
        factories: dict[str, Callable[[], Awaitable[sc.Outcome]]] = {
            "direct-upload": lambda: sc.direct_upload(b, direct_key),
            "direct-upload-end": lambda: sc.direct_upload(b, key),
            "direct-sequential": lambda: sc.direct_upload(b, key, in_flight=1, keep=False),
            "form-put": lambda: sc.form_put(b, key),
            "raw-put": lambda: sc.raw_put(b, key, keep=not self.download_key),
            "multipart-proxied": lambda: sc.multipart(b, key, presigned=False),
            "multipart-presigned": lambda: sc.multipart(b, key, presigned=True),
            "session-4": lambda: sc.indexed_session(b, key),
            "session-4-sha256": lambda: sc.indexed_session(b, key, declare_sha256=True),
            "offset-16m": lambda: sc.offset_chunks(b, key),
            "tus-16m": lambda: sc.sagestore_tus(b, key, 16 * MIB),
            "tus-64m": lambda: sc.sagestore_tus(b, key, 64 * MIB),
            "direct-get": lambda: sc.direct_get(b, direct_key),
            "direct-get-end": lambda: sc.direct_get(b, direct_key),
            "get": lambda: sc.sagestore_get(b, self.download_key),
            "range-get": lambda: sc.range_get(b, self.download_key),
            "signed-put": lambda: sc.signed_put(b, key), "signed-get": lambda: sc.signed_get(b, self.download_key),
            "bare-relay-put": lambda: sc.bare_relay_put(b, key, keep=not self.bare_key),
            "bare-relay-get": lambda: sc.bare_relay_get(b, self.bare_key),
            "aws-cli-put-direct": lambda: sc.aws_cli_put(b, self.aws_target(direct=True), key),
            "aws-cli-put": lambda: sc.aws_cli_put(b, self.aws_target(direct=False), key),
            "aws-cli-get-direct": lambda: sc.aws_cli_get(b, self.aws_target(direct=True), self.aws_source(True)),
            "aws-cli-get": lambda: sc.aws_cli_get(b, self.aws_target(direct=False), self.aws_source(False)),
        }
        if name in DOWNLOADS:
            await self.download_source(name, direct_key)
        if name.startswith("tus-"):
            await self.warm_tus("sagestore", lambda warm: sc.sagestore_tus(b, f"bench/warm-up-tus-{self.run_id}",
                                                                          16 * MIB, source=warm))
        if name.startswith("bare-relay-"):
            try:
                await self.stack.start_bare_relay()
                b.relay_url = self.stack.relay_url
            except StartError as error:
                self.results.append(Result(name, "upload" if name in UPLOADS else "download", "failed",
                                           DESCRIPTIONS[name], note=f"bare relay: {error}"))
                return
        if name in S3DOOR:
            await self.s3door_setup(name)
        if name in factories:
            kind = "download" if name in DOWNLOADS or name.startswith("aws-cli-get") else "upload"
            pid = self.stack.relay.pid if name.startswith("bare-relay-") else None
            result = await self.measure(name, kind, factories[name], pid=pid)
            if name == "raw-put" and result.status == "ok" and not self.download_key:
                self.download_key = key
            if name == "bare-relay-put" and result.status == "ok" and not self.bare_key:
                self.bare_key = key
        elif name.startswith("peer-tus-"):
            chunk = {"peer-tus-16m": 16 * MIB, "peer-tus-64m": 64 * MIB}[name]
            await self.measure_peer(name, lambda: sc.peer_tus(b, key, chunk))
        elif name == "small-requests":
            await self.small_requests()
        elif name == "small-requests-jwt":
            await self.small_requests_jwt()
        elif name in WRK:
            await self.wrk_row(name)
        elif name == "concurrency":
            await self.concurrency()
        elif name.startswith("big-"):
            await self.big(name)

    # --- the S3 API rows ------------------------------------------------------
    def aws_target(self, *, direct: bool) -> "sc.AwsTarget":
        if direct:
            return sc.AwsTarget(self.stack.s3["endpoint"], DIRECT_BUCKET, self.stack.s3["access_key"],
                                self.stack.s3["secret_key"], self.options.workdir)
        key = getattr(self, "s3_key", None)
        if key is None:
            raise sc.NotAvailable("no S3 access key (is the S3 API there?)")
        return sc.AwsTarget(self.stack.s3_api_url, self.bench.need_bucket(), key["access_key_id"],
                            key["secret_access_key"], self.options.workdir)

    def aws_source(self, direct: bool) -> str:
        """The object the aws-cli-get rows read: what the matching put row stored."""
        return f"bench/aws-cli-source-{'direct' if direct else 'door'}-{self.run_id}.bin"

    async def s3door_setup(self, name: str) -> None:
        """An access key for the door, and (outside the timing) the objects the GET rows read."""
        b = self.bench
        if not hasattr(self, "s3_key"):
            try:
                _, _, self.s3_key = await b.api("POST", "/api/v1/s3/keys", first=True, what="POST /api/v1/s3/keys")
            except (sc.NotAvailable, sc.Failed) as error:
                self.log(f"{name}: no S3 access key ({error})")
                return
        if name.startswith("aws-cli-get") and not getattr(self, f"aws_source_{name}", False):
            direct = name.endswith("direct")
            await sc.aws_cli_put(b, self.aws_target(direct=direct), self.aws_source(direct))
            setattr(self, f"aws_source_{name}", True)

    async def download_source(self, name: str, direct_key: str) -> None:
        """The objects the GET scenarios read, stored before (and outside) their timing."""
        try:
            if name.startswith("direct-"):
                if not any(r.name == "direct-upload" and r.status == "ok" for r in self.results):
                    await sc.direct_upload(self.bench, direct_key)
            elif name.startswith("bare-relay-"):
                if not self.bare_key:
                    await self.stack.start_bare_relay()
                    self.bench.relay_url = self.stack.relay_url
                    key = f"bench/bare-download-source-{self.run_id}.bin"
                    await sc.bare_relay_put(self.bench, key, keep=True)
                    self.bare_key = key
            elif not self.download_key and self.bench.bucket_id:
                key = f"bench/download-source-{self.run_id}.bin"
                await sc.raw_put(self.bench, key, keep=True)
                self.download_key = key
        except (sc.NotAvailable, sc.Failed, StartError) as error:
            self.log(f"{name}: no object to read ({error})")

    # --- measuring -----------------------------------------------------------
    async def measure(self, name: str, kind: str, factory: Callable[[], Awaitable[sc.Outcome]], *,
                      pid: int | None = None, description: str = "") -> Result:
        """Time factory() while sampling the server (or pid), SeaweedFS and this process;
        then verify and delete what it stored."""
        result = Result(name, kind, description=description or DESCRIPTIONS.get(name, ""))
        self.log(f"{name}: running")
        profiler = self.start_profiler(name, pid)
        outcome = None
        try:
            with ProcessMonitor(pid or self.stack.server.pid) as server, \
                    ProcessMonitor(self.stack.weed_pid) as weed, ProcessMonitor(os.getpid()) as client, \
                    Stopwatch() as clock:
                outcome = await self.guarded(factory(), server)
        except sc.NotAvailable as error:
            result.status, result.note = "not available", str(error)
        except Exception as error:  # noqa: BLE001 - a failed scenario is reported, the run goes on
            result.status, result.note = "failed", f"{type(error).__name__}: {error}"
        finally:
            self.stop_profiler(profiler, result)
        if outcome is not None:
            gib = outcome.bytes / GIB
            result.bytes, result.seconds = outcome.bytes, clock.seconds
            result.mb_s = outcome.bytes / clock.seconds / 1e6
            if not name.startswith("direct-"):
                result.peak_rss_mib = server.peak_rss / MIB
                result.kernel_peak_rss_mib = server.kernel_peak_rss / MIB if server.kernel_peak_rss else None
                result.rss_growth_mib = server.growth / MIB
                result.cpu_s_per_gib = server.cpu_seconds / gib if gib else None
                result.cpu_floor_s_per_gib = self.sha256_floor if name in HASHED_ROWS else 0.0
            result.weed_cpu_s_per_gib = weed.cpu_seconds / gib if gib else None
            result.client_cpu_s_per_gib = client.cpu_seconds / gib if gib else None
            result.note = "; ".join(filter(None, [result.note, outcome.note]))
            try:
                result.verified = outcome.verified if outcome.verified is not None else True
                await self.verify_and_clean(outcome.stored)
            except Exception as error:  # noqa: BLE001
                result.status, result.verified = "failed", False
                result.note = f"verification: {type(error).__name__}: {error}"
        self.results.append(result)
        self.log(f"{name}: {result.status}" + (f" {result.mb_s:.1f} MB/s" if result.mb_s else "")
                 + (f" ({result.note})" if result.note else ""))
        return result

    async def guarded(self, work: Awaitable[sc.Outcome], server: ProcessMonitor) -> sc.Outcome:
        """Run work, but stop it if the server's RSS passes the limit: the machine is shared."""
        task = asyncio.ensure_future(work)
        while not task.done():
            await asyncio.wait([task], timeout=0.2)
            if not task.done() and server.peak_rss > self.options.rss_limit:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                raise sc.Failed(f"stopped: the server's RSS passed {self.options.rss_limit / MIB:.0f} MiB")
        return task.result()

    async def measure_peer(self, name: str, factory: Callable[[], Awaitable[sc.Outcome]]) -> None:
        """The peer's scenarios: the server columns describe the node process."""
        try:
            await self.stack.start_peer()
        except StartError as error:
            self.results.append(Result(name, "upload", "not available", DESCRIPTIONS[name],
                                       note=f"@tus/server peer: {error}"))
            self.log(f"{name}: not available ({error})")
            return
        self.bench.peer_url = self.stack.peer_url
        await self.warm_tus("peer", lambda warm: sc.peer_tus(self.bench, "warm-up", 16 * MIB, source=warm))
        await self.measure(name, "upload", factory, pid=self.stack.peer.pid)

    async def warm_tus(self, server: str, upload: Callable[[sc.InputFile], Awaitable[sc.Outcome]]) -> None:
        """One untimed 24 MiB tus upload (two chunks, two S3 parts) into each tus server before
        its first timed one, so that neither pays for its first connections or code paths."""
        if server in self.tus_warmed:
            return
        self.tus_warmed.add(server)
        if not hasattr(self, "_warm_input"):
            self._warm_input = await asyncio.to_thread(sc.InputFile.create, self.options.workdir / "warm.bin", 24 * MIB)
        try:
            outcome = await upload(self._warm_input)
            await self.verify_and_clean(outcome.stored)
        except (sc.NotAvailable, sc.Failed) as error:
            self.log(f"tus warm-up of {server}: {error}")

    async def verify_and_clean(self, stored: list[sc.Stored]) -> None:
        s3 = self.bench.s3
        for item in stored:
            if item.sha256:
                response = await s3.get_object(Bucket=item.bucket, Key=item.key)
                digest = hashlib.sha256()
                size = 0
                async with response["Body"] as body:
                    async for chunk in body.iter_chunks(sc.READ_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                if size != item.size or digest.hexdigest() != item.sha256:
                    raise sc.Failed(f"s3://{item.bucket}/{item.key}: {size} bytes, sha256 differs from the input")
        for item in stored:
            if not item.keep:
                await s3.delete_object(Bucket=item.bucket, Key=item.key)

    # --- profiling -----------------------------------------------------------
    def start_profiler(self, name: str, pid: int | None = None) -> subprocess.Popen | None:
        if name not in self.options.profile:
            return None
        py_spy = shutil.which("py-spy")
        if not py_spy:
            self.log("py-spy not found (pip install py-spy); not profiling")
            return None
        self.options.results_dir.mkdir(parents=True, exist_ok=True)
        output = self.options.results_dir / f"profile-{name}.txt"
        process = subprocess.Popen([py_spy, "record", "--pid", str(pid or self.stack.server.pid), "--rate", "200",
                                    "--format", "raw", "--nonblocking", "--output", str(output)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # let it attach
        process.output = output  # type: ignore[attr-defined]
        return process

    def stop_profiler(self, process: subprocess.Popen | None, result: Result) -> None:
        if process is None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        from .profile import summarize
        output: Path = process.output  # type: ignore[attr-defined]
        if output.exists():
            result.extra["profile"] = summarize(output)
            result.extra["profile"]["file"] = str(output)
        else:
            result.extra["profile"] = {"error": process.stderr.read().decode(errors="replace")[-500:]}

    # --- small requests --------------------------------------------------------
    async def small_requests(self) -> None:
        """ACL-checked bucket info from sagestore against a bare aiohttp JSON handler."""
        b = self.bench
        self.log("small-requests: running")
        options = self.options
        if not self.stack.bare_url:
            await self.stack.start_bare_app()
        bare = await hammer(f"{self.stack.bare_url}/api/v1/objects/{uuid.uuid4()}", {},
                            seconds=options.small_seconds, concurrency=options.small_concurrency)
        result = Result("small-requests", "requests",
                        description=f"best case: noauth, one bucket (every ACL check a cache hit); "
                                    f"GET /api/v1/objects/{{id}} (ACL-checked) vs a bare aiohttp JSON handler, "
                                    f"{options.small_concurrency} concurrent, {options.small_seconds:.0f} s each")
        self.small = {"bare": asdict(bare) | {"rate": bare.rate}}
        if not b.bucket_id:
            result.status, result.note = "not available", f"{b.bucket_error} (bare: {bare.rate:.0f} req/s)"
        else:
            with ProcessMonitor(self.stack.server.pid) as server:
                first = await hammer(f"{b.server_url}/api/v1/objects/{b.bucket_id}", AUTH, seconds=0.2,
                                     concurrency=1)
                if first.statuses and set(first.statuses) <= set(sc.MISSING_ROUTE):
                    result.status = "not available"
                    result.note = f"GET /api/v1/objects/{{id}} answered {sorted(first.statuses)}"
                else:
                    profiler = self.start_profiler("small-requests")
                    try:
                        with postgres_cpu() as database:
                            ours = await hammer(f"{b.server_url}/api/v1/objects/{b.bucket_id}", AUTH,
                                                seconds=options.small_seconds,
                                                concurrency=options.small_concurrency)
                    finally:
                        self.stop_profiler(profiler, result)
                    # the same server without the database: its middlewares and aiohttp alone
                    health = await hammer(f"{b.server_url}/healthz", AUTH, seconds=options.small_seconds,
                                          concurrency=options.small_concurrency)
                    self.small["sagestore"] = asdict(ours) | {"rate": ours.rate}
                    self.small["sagestore_healthz"] = asdict(health) | {"rate": health.rate}
                    result.ratio = ours.rate / bare.rate if bare.rate else None
                    result.peak_rss_mib = server.peak_rss / MIB
                    per_request = database.cpu_seconds / ours.requests * 1e6 if ours.requests else None
                    result.extra |= {"sagestore_rate": ours.rate, "bare_rate": bare.rate,
                                     "healthz_rate": health.rate, "postgres_cpu_us_per_request": per_request,
                                     "sagestore_errors": ours.errors, "bare_errors": bare.errors}
                    result.note = (f"{ours.rate:.0f} req/s vs bare {bare.rate:.0f} req/s; sagestore /healthz "
                                   f"{health.rate:.0f} req/s; PostgreSQL {per_request or 0:.0f} CPU µs/request")
                    if ours.errors:
                        result.status = "failed"
                        result.note += f"; {ours.errors} errors {ours.statuses}"
            if result.peak_rss_mib is not None and server.kernel_peak_rss:  # known once the monitor stopped
                result.kernel_peak_rss_mib = server.kernel_peak_rss / MIB
        self.results.append(result)
        self.log(f"small-requests: {result.status} {result.note}")

    async def small_requests_jwt(self, users: int = 16, buckets_per_user: int = 16) -> None:
        """The same bucket info with real token checks: a second server in JWT mode, HS256
        tokens of `users` users, each reading its own `buckets_per_user` buckets in turn, so
        every request verifies a signature and the ACL cache holds users x buckets rows
        instead of one. The noauth one-bucket row above is the best case."""
        options = self.options
        self.log("small-requests-jwt: running")
        result = Result("small-requests-jwt", "requests",
                        description=f"GET /api/v1/objects/{{id}} with HS256 JWTs, {users} users x {buckets_per_user} "
                                    f"own buckets in turn, vs a bare aiohttp JSON handler, "
                                    f"{options.small_concurrency} concurrent, {options.small_seconds:.0f} s each")
        try:
            if not self.stack.bare_url:
                await self.stack.start_bare_app()
            targets = [(f"{self.stack.jwt_url}/api/v1/objects/{bucket_id}", headers)
                       for bucket_id, headers in await self.jwt_buckets(users, buckets_per_user)]
            bare = await hammer(f"{self.stack.bare_url}/api/v1/objects/{uuid.uuid4()}", {},
                                seconds=options.small_seconds, concurrency=options.small_concurrency)
            with ProcessMonitor(self.stack.jwt_server.pid) as server:
                ours = await hammer("", {}, targets=targets, seconds=options.small_seconds,
                                    concurrency=options.small_concurrency)
            self.small["jwt"] = asdict(ours) | {"rate": ours.rate, "bare_rate": bare.rate, "targets": len(targets)}
            result.ratio = ours.rate / bare.rate if bare.rate else None
            result.peak_rss_mib = server.peak_rss / MIB
            result.kernel_peak_rss_mib = server.kernel_peak_rss / MIB if server.kernel_peak_rss else None
            result.extra |= {"sagestore_rate": ours.rate, "bare_rate": bare.rate, "sagestore_errors": ours.errors}
            result.note = f"{ours.rate:.0f} req/s vs bare {bare.rate:.0f} req/s over {len(targets)} buckets"
            if ours.errors:
                result.status = "failed"
                result.note += f"; {ours.errors} errors {ours.statuses}"
        except (StartError, sc.NotAvailable, sc.Failed, aiohttp.ClientError) as error:
            result.status, result.note = "failed", f"{type(error).__name__}: {error}"
        self.results.append(result)
        self.log(f"small-requests-jwt: {result.status} {result.note}")

    async def jwt_buckets(self, users: int = 16, buckets_per_user: int = 16) -> list[tuple[str, dict[str, str]]]:
        """(bucket id, headers) of `users` users with an HS256 token each, each owning
        `buckets_per_user` buckets on the JWT server, interleaved in a fixed shuffle; made once a run."""
        if getattr(self, "_jwt_buckets", None):
            return self._jwt_buckets
        import jwt
        await self.stack.start_jwt_sagestore()
        now = int(time.time())
        pairs = []
        for number in range(users):
            token = jwt.encode({"sub": f"bench-jwt-{number:02d}", "groups": [], "aud": "sagestore",
                                "iss": "sagestore", "iat": now, "exp": now + 3600}, JWT_SECRET, algorithm="HS256")
            headers = {"Authorization": f"Bearer {token}"}
            for index in range(buckets_per_user):
                _, _, body = await self.bench.api(
                    "POST", f"{self.stack.jwt_url}/api/v1/objects?type=training-data&name=jwt-{number}-{index}",
                    headers=headers, what="bucket creation with a JWT")
                pairs.append((body["id"], headers))
        # interleave users and buckets, the same order in every run
        random.Random(0).shuffle(pairs)
        self._jwt_buckets = pairs
        return pairs

    # --- small requests with wrk -------------------------------------------------
    async def wrk_row(self, name: str, small_size: int = 1024) -> None:
        """sagestore against its bare reference, both under wrk (1 thread, 16 connections) for
        small_seconds each, the reference first:
        - wrk-healthz: /healthz of the noauth server vs the bare app's /healthz;
        - wrk-bucket-jwt: ACL-checked bucket info with HS256 JWTs (16 users x 16 own buckets, in
          turn) vs the bare app's bucket document, with the same paths and headers;
        - wrk-small-get: a 1 KiB file with a JWT (16 users, one file each, in turn) vs the bare
          relay's handler doing the same S3 GET of the same objects."""
        from . import wrk
        options = self.options
        descriptions = {
            "wrk-healthz": "wrk: GET /healthz (noauth server) vs the bare app's /healthz",
            "wrk-bucket-jwt": "wrk: GET /api/v1/objects/{id} with HS256 JWTs, 16 users x 16 own buckets in turn, "
                              "vs the bare app's bucket document",
            "wrk-small-get": f"wrk: GET of a {small_size} B file with a JWT (16 users, one file each) vs the bare "
                             f"relay's handler doing the same S3 GET",
        }
        result = Result(name, "requests", description=f"{descriptions[name]}; 1 thread, {WRK_CONNECTIONS} "
                                                      f"connections, {options.small_seconds:.0f} s each")
        self.log(f"{name}: running")
        try:
            wrk.find_wrk()
            if not self.stack.bare_url:
                await self.stack.start_bare_app()
            if name == "wrk-healthz":
                ours_url, ours_pid, ours_targets = self.stack.server_url, self.stack.server.pid, [("/healthz", {})]
                bare_url, bare_targets = self.stack.bare_url, [("/healthz", {})]
                bare_pid = None
            elif name == "wrk-bucket-jwt":
                pairs = await self.jwt_buckets()
                ours_url, ours_pid = self.stack.jwt_url, self.stack.jwt_server.pid
                ours_targets = [(f"/api/v1/objects/{bucket_id}", headers) for bucket_id, headers in pairs]
                bare_url, bare_targets, bare_pid = self.stack.bare_url, ours_targets, None
            else:
                await self.stack.start_bare_relay()
                pairs = await self.jwt_buckets()  # starts the JWT server
                ours_url, ours_pid = self.stack.jwt_url, self.stack.jwt_server.pid
                ours_targets, bare_targets = [], []
                seen: set[str] = set()
                for bucket_id, headers in pairs:
                    if headers["Authorization"] in seen:
                        continue  # one file per user, in that user's first bucket
                    seen.add(headers["Authorization"])
                    key = f"small-{small_size}.bin"
                    await self.bench.api("PUT", f"{ours_url}/api/v1/objects/{bucket_id}/{key}", headers=headers,
                                         data=os.urandom(small_size), expect=(200, 201), what="small file PUT")
                    location = self.bench.mapping.object(bucket_id, key)
                    ours_targets.append((f"/api/v1/objects/{bucket_id}/{key}", headers))
                    bare_targets.append((f"/small/{location.bucket}/{location.key}", headers))
                bare_url, bare_pid = self.stack.relay_url, self.stack.relay.pid
            bare_pid = bare_pid or self.stack.bare_app.pid
            bare = await self.wrk_measure(wrk, f"{name}-bare", bare_url, bare_targets, bare_pid, profile=False)
            ours = await self.wrk_measure(wrk, name, ours_url, ours_targets, ours_pid, profile=True, result=result)
            result.ratio = ours["rate"] / bare["rate"] if bare["rate"] else None
            result.peak_rss_mib = ours.pop("peak_rss_mib")
            bare.pop("peak_rss_mib")
            result.extra |= {"sagestore_rate": ours["rate"], "bare_rate": bare["rate"],
                             "sagestore_errors": ours["errors"], "bare_errors": bare["errors"],
                             "sagestore_cpu_us_per_request": ours["cpu_us_per_request"],
                             "bare_cpu_us_per_request": bare["cpu_us_per_request"], "sagestore": ours, "bare": bare,
                             "targets": len(ours_targets), "threads": 1, "connections": WRK_CONNECTIONS}
            result.note = (f"{ours['rate']:.0f} req/s vs bare {bare['rate']:.0f} req/s; server CPU "
                           f"{ours['cpu_us_per_request']:.0f} vs {bare['cpu_us_per_request']:.0f} µs/request")
            if ours["errors"] or bare["errors"]:
                result.status = "failed"
                result.note += f"; errors: sagestore {ours['errors']}, bare {bare['errors']}"
        except Exception as error:  # noqa: BLE001 - a failed row is reported, the run goes on
            result.status, result.note = "failed", f"{type(error).__name__}: {error}"
        self.results.append(result)
        self.log(f"{name}: {result.status} {result.note}")

    async def wrk_measure(self, wrk: Any, label: str, base_url: str, targets: list[tuple[str, dict[str, str]]],
                          pid: int | None, *, profile: bool, result: Result | None = None) -> dict[str, Any]:
        """Every target once (each must answer 200; this also warms caches), then wrk over them in turn."""
        for path, headers in targets:
            async with self.bench.http.get(base_url + path, headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    raise sc.Failed(f"{label}: GET {path} answered {response.status}: {body[:200]!r}")
        script = wrk.rotation_script(self.options.workdir / f"{label}.lua", targets) if len(targets) > 1 else None
        url = base_url + (targets[0][0] if script is None else "/")
        headers = targets[0][1] if script is None else None
        profiler = self.start_profiler(label, pid) if profile else None
        try:
            with ProcessMonitor(pid) as server:
                outcome = await wrk.run(url, seconds=self.options.small_seconds, connections=WRK_CONNECTIONS,
                                        headers=headers, script=script)
        finally:
            if profiler is not None and result is not None:
                self.stop_profiler(profiler, result)
        return {"rate": outcome.rate, "requests": outcome.requests, "seconds": outcome.seconds,
                "errors": outcome.errors, "non_2xx": outcome.non_2xx, "socket_errors": outcome.socket_errors,
                "latency_avg_ms": outcome.latency_avg_ms, "peak_rss_mib": server.peak_rss / MIB if pid else None,
                "cpu_us_per_request": server.cpu_seconds / outcome.requests * 1e6 if outcome.requests and pid else 0.0}

    # --- concurrency -----------------------------------------------------------
    async def concurrency(self) -> None:
        """N sessions of 64 MiB in parallel: indexed sessions (1 chunk in flight each) when
        they exist, otherwise raw PUTs; failures and aggregate MB/s."""
        n = self.options.concurrency
        if n <= 0:
            return
        b = self.bench
        size = min(SESSION_SIZE, self.options.size)
        source = b.input if size == b.input.size else await asyncio.to_thread(
            sc.InputFile.create, self.options.workdir / "session.bin", size)
        sessions_ok = not any(r.name == "session-4" and r.status == "not available" for r in self.results)
        protocol = "indexed sessions" if sessions_ok else "raw PUT"

        # N sessions of N users, each granted WRITE: one user's uploads are capped
        # (SAGESTORE_UPLOADS_PER_USER, 429 beyond it), which is not what this measures
        users = [f"bench-concurrent-{index:03d}" for index in range(n)]
        if sessions_ok and b.bucket_id:
            for user in users:
                await b.api("PUT", f"/api/v1/objects/{b.bucket_id}?permissions",
                            json={"granteeType": "USER", "grantee": user, "permission": "WRITE"})

        async def one(index: int) -> sc.Outcome:
            key = f"bench/concurrency-{self.run_id}/{index:04d}.bin"
            if sessions_ok:
                return await sc.indexed_session(b, key, in_flight=1, source=source, user=users[index])
            return await sc.raw_put(b, key, source=source)

        failures: list[str] = []

        async def run_all() -> sc.Outcome:
            outcomes = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
            if all(isinstance(o, sc.NotAvailable) for o in outcomes):
                raise sc.NotAvailable(f"{protocol}: {outcomes[0]}")
            stored = [item for o in outcomes if isinstance(o, sc.Outcome) for item in o.stored]
            failures.extend(f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException))
            return sc.Outcome(sum(o.bytes for o in outcomes if isinstance(o, sc.Outcome)), stored)

        description = f"{n} parallel uploads of {size // MIB} MiB"
        result = await self.measure("concurrency", "concurrency", run_all, description=description)
        if result.status == "not available" and sessions_ok:
            self.results.pop()
            sessions_ok, protocol = False, "raw PUT"
            first_note = result.note
            result = await self.measure("concurrency", "concurrency", run_all, description=description)
            if result.status == "not available":
                result.note = f"{first_note}; {result.note}"
                return
        result.description = f"{description} ({protocol}, 1 request in flight each, one user each)"
        result.extra = {"sessions": n, "failures": len(failures), "protocol": protocol,
                        "failure_samples": sorted(set(failures))[:5]}
        note = f"{len(failures)}/{n} failed ({protocol})" + (f": {failures[0][:200]}" if failures else "")
        result.note = "; ".join(filter(None, [note, result.note]))
        if failures and result.status == "ok":
            result.status = "failed"

    # --- memory (--big) ----------------------------------------------------------
    async def big(self, name: str) -> None:
        """1 GiB and 10 GiB through raw PUT and tus; the growth of the server's RSS."""
        protocol, label = name.split("-", 1)[1].rsplit("-", 1)
        size = {"1GiB": GIB, "10GiB": 10 * GIB}[label]
        if os.environ.get("BENCH_BIG_SIZES"):  # only for testing the harness itself, e.g. "8MiB,32MiB"
            from sagestore.config import _size
            size = dict(zip(("1GiB", "10GiB"), map(_size, os.environ["BENCH_BIG_SIZES"].split(","))))[label]
        b = self.bench
        if b.input.size == size:
            source = b.input
        else:
            path = self.options.workdir / f"big-{label}.bin"
            cached = getattr(self, "_big_inputs", {})
            if label not in cached:
                self.log(f"making a {label} random input file")
                cached[label] = await asyncio.to_thread(sc.InputFile.create, path, size)
                self._big_inputs = cached
            source = cached[label]
        key = f"bench/{name}-{self.run_id}.bin"
        if protocol == "raw-put":
            factory = lambda: sc.raw_put(b, key, source=source)  # noqa: E731
        else:
            factory = lambda: sc.sagestore_tus(b, key, 16 * MIB, source=source)  # noqa: E731
        how = "raw PUT" if protocol == "raw-put" else "tus, 16 MiB chunks"
        # a fresh server for each, warmed by one small request: the growth is this upload's,
        # not what earlier scenarios left in the heap
        await self.stack.restart_sagestore()
        b.server_url = self.stack.server_url
        if b.bucket_id:
            with contextlib.suppress(sc.NotAvailable, sc.Failed):
                await b.api("GET", f"/api/v1/objects/{b.bucket_id}")
        await self.measure(name, "memory", factory,
                           description=f"{size / MIB:.0f} MiB through {how}, on a freshly started server")

    # --- ratios ------------------------------------------------------------------
    def compute_ratios(self) -> None:
        def baseline(names: list[str]) -> float | None:
            speeds = [r.mb_s for r in self.results if r.name in names and r.status == "ok" and r.mb_s]
            return sum(speeds) / len(speeds) if speeds else None
        up = baseline(["direct-upload", "direct-upload-end"])
        down = baseline(["direct-get", "direct-get-end"])
        aws = {"aws-cli-put": baseline(["aws-cli-put-direct"]), "aws-cli-get": baseline(["aws-cli-get-direct"])}
        by_name = {r.name: r for r in self.results if r.status == "ok" and r.mb_s}
        bare_up, bare_down = by_name.get("bare-relay-put"), by_name.get("bare-relay-get")
        for result in self.results:
            if result.mb_s is None or result.status != "ok":
                continue
            if result.name in S3DOOR:
                reference = aws.get(result.name)
                if reference:
                    result.ratio = result.mb_s / reference
                continue
            # the memory rows run on a restarted server with another input size: no baseline of their own
            reference = down if result.kind == "download" else up if result.kind == "upload" else None
            if reference:
                result.ratio = result.mb_s / reference
            bare = bare_up if result.name in RELAYED_UPLOADS else bare_down if result.name in RELAYED_DOWNLOADS else None
            if bare is not None:
                result.bare_ratio = result.mb_s / bare.mb_s
                if result.cpu_s_per_gib is not None and bare.cpu_s_per_gib is not None:
                    result.cpu_minus_bare_s_per_gib = result.cpu_s_per_gib - bare.cpu_s_per_gib
        self.baselines = {"upload_mb_s": up, "download_mb_s": down,
                          "bare_relay_put_mb_s": bare_up.mb_s if bare_up else None,
                          "bare_relay_get_mb_s": bare_down.mb_s if bare_down else None}


class postgres_cpu:
    """CPU seconds used by all PostgreSQL processes on the machine during a block (the
    database shares the cores with everything else)."""

    def __enter__(self) -> "postgres_cpu":
        self.start = self._total()
        self.cpu_seconds = 0.0
        return self

    def __exit__(self, *exc_info) -> None:
        self.cpu_seconds = max(0.0, self._total() - self.start)

    @staticmethod
    def _total() -> float:
        total = 0.0
        for process in psutil.process_iter(["name", "cpu_times"]):
            if process.info["name"] and process.info["name"].startswith("postgres") and process.info["cpu_times"]:
                total += process.info["cpu_times"].user + process.info["cpu_times"].system
        return total


def merge_rounds(rounds: list[list[Result]]) -> list[Result]:
    """One row per scenario: MB/s, ratio and ÷ bare relay are the medians over the rounds (each
    round's ratios are to that round's baselines; with two rounds, their mean); the server columns
    (CPU − bare relay too) come from the round closest to the median MB/s; peak RSS and growth are the highest seen.
    Every round's MB/s and ratio stay in extra. Any failed round makes the row failed."""
    if len(rounds) == 1:
        return rounds[0]
    merged = []
    names = list(dict.fromkeys(r.name for results in rounds for r in results))
    for name in names:
        runs = [r for results in rounds for r in results if r.name == name]
        ok = [r for r in runs if r.status == "ok" and r.mb_s]
        if len(ok) < len(runs) or not ok:
            merged.append(next(r for r in runs if r.status != "ok" or not r.mb_s))
            continue
        speed = statistics.median(r.mb_s for r in ok)
        row = min(ok, key=lambda r: abs(r.mb_s - speed))
        row.mb_s = speed
        ratios = [r.ratio for r in ok if r.ratio is not None]
        row.ratio = statistics.median(ratios) if ratios else None
        bare_ratios = [r.bare_ratio for r in ok if r.bare_ratio is not None]
        row.bare_ratio = statistics.median(bare_ratios) if bare_ratios else None
        peaks = [r.peak_rss_mib for r in ok if r.peak_rss_mib is not None]
        row.peak_rss_mib = max(peaks) if peaks else None
        kernel_peaks = [r.kernel_peak_rss_mib for r in ok if r.kernel_peak_rss_mib is not None]
        row.kernel_peak_rss_mib = max(kernel_peaks) if kernel_peaks else None
        growths = [r.rss_growth_mib for r in ok if r.rss_growth_mib is not None]
        row.rss_growth_mib = max(growths) if growths else None
        row.extra["rounds_mb_s"] = [round(r.mb_s, 1) for r in runs]
        row.extra["rounds_ratio"] = [round(r.ratio, 3) if r.ratio else None for r in runs]
        if bare_ratios:
            row.extra["rounds_bare_ratio"] = [round(r.bare_ratio, 3) if r.bare_ratio else None for r in runs]
        if len(runs) > 1:
            row.note = "; ".join(filter(None, [row.note, "MB/s by round " + "/".join(
                f"{mb_s:.0f}" for mb_s in row.extra["rounds_mb_s"])]))
        merged.append(row)
    return merged
