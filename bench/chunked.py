"""Benchmark: offset chunks and indexed sessions through sagestore vs direct aiobotocore.

One run, one SeaweedFS, one `sagestore serve` subprocess, data from memory:
  direct-4     aiobotocore multipart upload, 16 MiB parts, 4 in flight (create, parts, complete)
  direct-1     the same with 1 part in flight (what a sequential protocol can at best do)
  session-4    POST initiate, PUT chunks 4 in flight, POST complete
  offset       PUT /api/v1/upload in 16 MiB chunks, one after the other, then POST import_upload
               (reported as upload, import, and both)
  many         N concurrent sessions of M MiB each (chunks of one session one after the other)
Prints MB/s (10^6 bytes per second) and ratios to direct-4 (goal >= 0.9x); with --rounds > 1
the medians.

    python3 bench/chunked.py [--size-mib 1024] [--chunk-mib 16] [--in-flight 4] [--rounds 1]
                             [--sessions 100] [--session-mib 64] [--only direct-4,session-4,...]

Backends: embedded SeaweedFS and PostgreSQL in a temporary directory, or the PostgreSQL server
in SAGESTORE_BENCH_DATABASE_URL (a fresh database is created and dropped).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sagestore.config import Settings  # noqa: E402
from sagestore.db import create_pool, transaction  # noqa: E402
from sagestore.db import buckets as bucket_queries  # noqa: E402
from sagestore.db.migrate import migrate  # noqa: E402
from sagestore.embedded import embedded_backends, free_port  # noqa: E402
from sagestore.storage import BucketMapping, open_object_store  # noqa: E402

MiB = 2**20
SCENARIOS = ("direct-4", "direct-1", "session-4", "offset", "many")
HEADERS = {"Authorization": "sage user:bench"}


@contextlib.contextmanager
def fresh_database(server_url: str):
    import psycopg2
    name = f"sagestore_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield server_url.rpartition("/")[0] + "/" + name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def start_server(settings: Settings, port: int) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAGESTORE_")}
    env.update({"SAGESTORE_DATABASE_URL": settings.database_url, "SAGESTORE_S3_ENDPOINT": settings.s3_endpoint,
                "SAGESTORE_S3_ACCESS_KEY": settings.s3_access_key, "SAGESTORE_S3_SECRET_KEY": settings.s3_secret_key,
                "SAGESTORE_AUTH_MODE": "noauth", "SAGESTORE_PORT": str(port), "SAGESTORE_LOG_LEVEL": "warning",
                "SAGESTORE_REAPER_INTERVAL": "0", "SAGESTORE_DB_POOL_SIZE": "20", "PYTHONPATH": str(REPO)})
    return subprocess.Popen([sys.executable, "-m", "sagestore", "serve"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_ready(url: str, process: subprocess.Popen) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError("sagestore exited")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError("sagestore did not start")


async def limited(count: int, in_flight: int, one) -> None:
    """one(1..count), at most in_flight at a time."""
    semaphore = asyncio.Semaphore(in_flight)

    async def guarded(number: int) -> None:
        async with semaphore:
            await one(number)
    await asyncio.gather(*(guarded(number) for number in range(1, count + 1)))


async def expect(response: aiohttp.ClientResponse, status: int) -> dict:
    if response.status != status:
        raise RuntimeError(f"{response.method} {response.url.path}: {response.status} {await response.text()}")
    return await response.json()


class Bench:
    def __init__(self, args: argparse.Namespace, settings: Settings, url: str, bucket_id: str, store) -> None:
        self.args = args
        self.settings = settings
        self.url = url
        self.bucket_id = bucket_id
        self.store = store
        self.chunk = os.urandom(args.chunk_mib * MiB)  # reused: the server cannot tell
        self.count = args.size_mib // args.chunk_mib
        self.total = self.count * len(self.chunk)
        self.mapping = BucketMapping()

    async def direct(self, in_flight: int) -> float:
        location = self.mapping.object(self.bucket_id, f"direct-{uuid.uuid4()}.bin")
        started = time.perf_counter()
        upload_id = await self.store.create_multipart(location)
        etags: dict[int, str] = {}

        async def part(number: int) -> None:
            etags[number] = (await self.store.upload_part(location, upload_id, number, self.chunk))["ETag"]
        await limited(self.count, in_flight, part)
        await self.store.complete_multipart(location, upload_id, [{"PartNumber": n, "ETag": etags[n]}
                                                                  for n in sorted(etags)])
        return time.perf_counter() - started

    async def session_upload(self, http: aiohttp.ClientSession, size: int, in_flight: int) -> None:
        async with http.post(self.url + "/api/v1/attachment/initiate", json={
                "bucket_id": self.bucket_id, "key": f"session-{uuid.uuid4()}.bin", "fileName": "bench.bin",
                "fileSize": size}) as response:
            session = await expect(response, 201)
        if session["chunkSize"] != len(self.chunk):
            raise RuntimeError(f"server chose {session['chunkSize']}-byte chunks, not {len(self.chunk)}")
        upload_url = self.url + session["uploadUrl"]

        async def chunk(number: int) -> None:
            async with http.put(upload_url.replace("{chunkId}", str(number)), data=self.chunk) as response:
                await expect(response, 200)
        await limited(session["totalChunks"], in_flight, chunk)
        async with http.post(f"{self.url}/api/v1/attachment/session/{session['sessionId']}/complete") as response:
            await expect(response, 201)

    async def session(self, in_flight: int) -> float:
        async with aiohttp.ClientSession(headers=HEADERS, connector=aiohttp.TCPConnector(limit=in_flight)) as http:
            started = time.perf_counter()
            await self.session_upload(http, self.total, in_flight)
            return time.perf_counter() - started

    async def offset(self) -> tuple[float, float]:
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            started = time.perf_counter()
            async with http.put(self.url + "/api/v1/upload", params={
                    "bucket_id": self.bucket_id, "key": f"offset-{uuid.uuid4()}.bin"}, data=self.chunk) as response:
                answer = await expect(response, 201)
            for _ in range(self.count - 1):
                query = {"upload_id": answer["upload_id"], "offset": str(answer["offset"])}
                async with http.put(self.url + "/api/v1/upload", params=query, data=self.chunk) as response:
                    answer = await expect(response, 200)
            uploaded = time.perf_counter()
            async with http.post(self.url + "/api/v1/import_upload", json={"upload_id": answer["upload_id"]},
                                 headers={"Prefer": "wait=600"}) as response:
                await expect(response, 201)
            return uploaded - started, time.perf_counter() - uploaded

    async def many(self) -> tuple[float, int]:
        size = self.args.session_mib * MiB
        failures = 0
        connector = aiohttp.TCPConnector(limit=self.args.sessions)
        timeout = aiohttp.ClientTimeout(total=3600)
        async with aiohttp.ClientSession(headers=HEADERS, connector=connector, timeout=timeout) as http:
            async def one() -> None:
                nonlocal failures
                try:
                    await self.session_upload(http, size, 1)
                except Exception as error:  # noqa: BLE001 - counted and shown
                    failures += 1
                    print(f"  session failed: {error}", file=sys.stderr)
            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(self.args.sessions)))
            return time.perf_counter() - started, failures


def rate(size: int, seconds: float) -> float:
    return size / seconds / 1e6


async def run(args: argparse.Namespace, settings: Settings) -> None:
    pool = await create_pool(settings.database_url, 2)
    await migrate(pool)
    bucket_id = str(uuid.uuid4())
    async with transaction(pool) as cur:
        await bucket_queries.create(cur, bucket_id, "bench", "model", "bench", False)
    pool.close()
    await pool.wait_closed()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(settings, port)
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    results: dict[str, list[float]] = {name: [] for name in ("direct-4", "direct-1", "session-4", "offset-upload",
                                                             "offset-import", "offset-total")}
    try:
        await wait_ready(url, server)
        async with open_object_store(endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
                                     secret_key=settings.s3_secret_key, region="us-east-1") as store:
            bench = Bench(args, settings, url, bucket_id, store)
            for round_number in range(args.rounds):
                if "direct-4" in only:
                    results["direct-4"].append(await bench.direct(args.in_flight))
                if "direct-1" in only:
                    results["direct-1"].append(await bench.direct(1))
                if "session-4" in only:
                    results["session-4"].append(await bench.session(args.in_flight))
                if "offset" in only:
                    upload, imported = await bench.offset()
                    results["offset-upload"].append(upload)
                    results["offset-import"].append(imported)
                    results["offset-total"].append(upload + imported)
                print(f"round {round_number + 1}: " + ", ".join(
                    f"{name} {rate(bench.total, times[-1]):.0f}" for name, times in results.items() if times),
                    flush=True)
            print(f"\n{bench.total / MiB:.0f} MiB in {args.chunk_mib} MiB chunks/parts, {args.in_flight} in flight "
                  f"where parallel; median of {args.rounds} round(s); MB/s = 10^6 bytes/s")
            base = statistics.median(results["direct-4"]) if results["direct-4"] else None
            for name, times in results.items():
                if not times:
                    continue
                seconds = statistics.median(times)
                ratio = f"  {base / seconds:.2f}x direct-4" if base and name != "offset-import" else ""
                print(f"{name:14} {seconds:7.2f} s {rate(bench.total, seconds):8.1f} MB/s{ratio}")
            if results["direct-1"] and results["offset-upload"]:
                print(f"offset-upload vs direct-1: "
                      f"{statistics.median(results['direct-1']) / statistics.median(results['offset-upload']):.2f}x")
            if "many" in only:
                seconds, failures = await bench.many()
                size = args.sessions * args.session_mib * MiB
                print(f"many: {args.sessions} concurrent sessions x {args.session_mib} MiB = {size / MiB:.0f} MiB in "
                      f"{seconds:.1f} s: {rate(size, seconds):.1f} MB/s aggregate, {failures} failures")
    finally:
        server.terminate()
        server.wait(30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=16)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--session-mib", type=int, default=64)
    parser.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sagestore-bench-") as data_dir:
        database_server = os.environ.get("SAGESTORE_BENCH_DATABASE_URL")
        with (fresh_database(database_server) if database_server else contextlib.nullcontext("")) as database_url:
            settings = Settings(data_dir=data_dir, database_url=database_url, auth_mode="noauth")
            async with embedded_backends(settings) as settings:
                await run(args, settings)


if __name__ == "__main__":
    asyncio.run(main())
