"""Benchmark: proxied multipart parts through sagestore vs direct aiobotocore UploadPart.

One run, same SeaweedFS: 1 GiB as 64 parts of 16 MiB, 4 in flight, from memory.
  direct: aiobotocore upload_part straight to SeaweedFS
  proxy:  PUT /api/v1/multipart/{id}/parts/{n} to a `sagestore serve` subprocess
Prints MB/s for both and the ratio proxy/direct (goal >= 0.9).

    python3 bench/multipart_proxy.py [--size-mib 1024] [--part-mib 16] [--in-flight 4]

Backends: embedded SeaweedFS and PostgreSQL in a temporary directory, or the PostgreSQL
server in SAGESTORE_BENCH_DATABASE_URL (a fresh database is created and dropped).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
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
                "SAGESTORE_REAPER_INTERVAL": "0", "PYTHONPATH": str(REPO)})
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


async def run_limited(count: int, in_flight: int, one) -> None:
    semaphore = asyncio.Semaphore(in_flight)

    async def guarded(number: int) -> None:
        async with semaphore:
            await one(number)
    await asyncio.gather(*(guarded(n) for n in range(1, count + 1)))


async def bench(args: argparse.Namespace, settings: Settings) -> None:
    part = os.urandom(args.part_mib * MiB)
    count = args.size_mib // args.part_mib
    total = count * len(part)
    pool = await create_pool(settings.database_url, 2)
    await migrate(pool)
    bucket_id = str(uuid.uuid4())
    async with transaction(pool) as cur:
        await bucket_queries.create(cur, bucket_id, "bench", "model", "bench", False)
    pool.close()
    await pool.wait_closed()
    mapping = BucketMapping()

    async with open_object_store(endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
                                 secret_key=settings.s3_secret_key, region="us-east-1") as store:
        await store.ensure_buckets(mapping.all_s3_buckets())
        location = mapping.object(bucket_id, "direct.bin")
        upload_id = await store.create_multipart(location)
        started = time.perf_counter()

        async def direct(number: int) -> None:
            await store.upload_part(location, upload_id, number, part)
        await run_limited(count, args.in_flight, direct)
        direct_seconds = time.perf_counter() - started
        await store.abort_multipart(location, upload_id)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(settings, port)
    try:
        await wait_ready(url, server)
        headers = {"Authorization": "sage user:bench"}
        connector = aiohttp.TCPConnector(limit=args.in_flight)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            async with session.post(url + "/api/v1/multipart/", json={
                    "object_type": "model_version", "object_id": bucket_id, "key": "proxy.bin"}) as response:
                upload = (await response.json())["upload_id"]
            etags: dict[int, str] = {}
            started = time.perf_counter()

            async def proxied(number: int) -> None:
                async with session.put(f"{url}/api/v1/multipart/{upload}/parts/{number}", data=part) as response:
                    if response.status != 200:
                        raise RuntimeError(f"part {number}: {response.status} {await response.text()}")
                    etags[number] = (await response.json())["etag"]
            await run_limited(count, args.in_flight, proxied)
            proxy_seconds = time.perf_counter() - started
            async with session.post(url + "/api/v1/multipart/complete/", json={
                    "object_type": "model_version", "object_id": bucket_id, "upload_id": upload,
                    "parts": [{"part_number": n, "etag": etags[n]} for n in sorted(etags)]}) as response:
                assert response.status == 201, await response.text()
    finally:
        server.terminate()
        server.wait(30)

    direct_rate = total / direct_seconds / 1e6
    proxy_rate = total / proxy_seconds / 1e6
    print(f"{total / MiB:.0f} MiB, {count} parts of {args.part_mib} MiB, {args.in_flight} in flight")
    print(f"direct aiobotocore UploadPart: {direct_seconds:6.2f} s  {direct_rate:7.1f} MB/s")
    print(f"sagestore proxied parts:       {proxy_seconds:6.2f} s  {proxy_rate:7.1f} MB/s")
    print(f"ratio proxy/direct: {proxy_rate / direct_rate:.2f}x (goal >= 0.9x)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--part-mib", type=int, default=16)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sagestore-bench-") as data_dir:
        database_server = os.environ.get("SAGESTORE_BENCH_DATABASE_URL")
        with (fresh_database(database_server) if database_server else contextlib.nullcontext("")) as database_url:
            settings = Settings(data_dir=data_dir, database_url=database_url, auth_mode="noauth")
            async with embedded_backends(settings) as settings:
                await bench(args, settings)


if __name__ == "__main__":
    asyncio.run(main())
