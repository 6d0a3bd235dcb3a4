"""Benchmark: tuspy uploading to sagestore's tus endpoint vs @tus/server + @tus/s3-store vs direct aiobotocore.

One run, one SeaweedFS (embedded), the same bytes from memory:
  direct-4        aiobotocore multipart upload, 16 MiB parts, 4 in flight
  direct-1        the same, 1 part in flight
  sagestore-N     tuspy Uploader, N MiB chunks, to `sagestore serve` (a subprocess)
  tus-node-N      tuspy Uploader, N MiB chunks, to @tus/server + @tus/s3-store (node, bench/tus_peer)
Prints MB/s (10^6 bytes/s) and the ratios the goals name: sagestore vs @tus/server (>= 2.0x) and
vs direct-4 (>= 0.9x).

    (cd bench/tus_peer && npm install)   # once
    python3 bench/tus_vs_peer.py [--size-mib 1024] [--chunks 16,64] [--rounds 1]

Backends: embedded SeaweedFS and PostgreSQL in a temporary directory, or the PostgreSQL server in
SAGESTORE_BENCH_DATABASE_URL (a fresh database is created and dropped).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from chunked import fresh_database, start_server, wait_ready  # noqa: E402
from tusclient import client as tus_client  # noqa: E402

from sagestore.config import Settings  # noqa: E402
from sagestore.db import create_pool, transaction  # noqa: E402
from sagestore.db import buckets as bucket_queries  # noqa: E402
from sagestore.db.migrate import migrate  # noqa: E402
from sagestore.embedded import embedded_backends, free_port  # noqa: E402
from sagestore.storage import BucketMapping, Location, open_object_store  # noqa: E402

MiB = 2**20
PEER_DIR = REPO / "bench" / "tus_peer"
PEER_BUCKET = "tus-node-bench"


def rate(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def tuspy_upload(endpoint: str, data: bytes, chunk: int, metadata: dict[str, str], headers: dict[str, str]) -> float:
    tus = tus_client.TusClient(endpoint, headers=headers)
    uploader = tus.uploader(file_stream=io.BytesIO(data), chunk_size=chunk, metadata=metadata)
    started = time.perf_counter()
    uploader.upload()
    return time.perf_counter() - started


async def direct(store, bucket: str, data: bytes, part: int, in_flight: int) -> float:
    location = Location(bucket, f"direct/{uuid.uuid4()}.bin")
    started = time.perf_counter()
    upload_id = await store.create_multipart(location)
    etags: dict[int, str] = {}
    gate = asyncio.Semaphore(in_flight)
    view = memoryview(data)

    async def one(number: int) -> None:
        async with gate:
            chunk = bytes(view[(number - 1) * part:number * part])
            etags[number] = (await store.upload_part(location, upload_id, number, chunk))["ETag"]
    await asyncio.gather(*(one(n) for n in range(1, -(-len(data) // part) + 1)))
    await store.complete_multipart(location, upload_id, [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)])
    return time.perf_counter() - started


async def start_peer(settings: Settings, port: int) -> subprocess.Popen:
    if not (PEER_DIR / "node_modules" / "@tus" / "server").is_dir():
        raise SystemExit("run `npm install` in bench/tus_peer first")
    config = {"bucket": PEER_BUCKET, "region": settings.s3_region or "us-east-1", "endpoint": settings.s3_endpoint,
              "accessKey": settings.s3_access_key, "secretKey": settings.s3_secret_key, "port": port}
    process = subprocess.Popen(["node", "server.mjs", json.dumps(config)], cwd=PEER_DIR, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    line = await asyncio.to_thread(process.stdout.readline)
    if b"ready" not in line:
        raise RuntimeError("@tus/server did not start")
    return process


async def run(args: argparse.Namespace, settings: Settings) -> None:
    pool = await create_pool(settings.database_url, 2)
    await migrate(pool)
    bucket_id = str(uuid.uuid4())
    async with transaction(pool) as cur:
        await bucket_queries.create(cur, bucket_id, "bench", "model", "bench", False)
    pool.close()
    await pool.wait_closed()
    data = os.urandom(args.size_mib * MiB)
    chunks = [int(value) for value in args.chunks.split(",")]
    port, peer_port = free_port(), free_port()
    server = start_server(settings, port)
    peer = None
    results: dict[str, list[float]] = {}
    try:
        await wait_ready(f"http://127.0.0.1:{port}", server)
        async with open_object_store(endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
                                     secret_key=settings.s3_secret_key, region="us-east-1") as store:
            await store.ensure_buckets([PEER_BUCKET])
            peer = await start_peer(settings, peer_port)
            direct_bucket = BucketMapping().object(bucket_id, "x").bucket
            for round_number in range(args.rounds):
                results.setdefault("direct-4", []).append(await direct(store, direct_bucket, data, 16 * MiB, 4))
                results.setdefault("direct-1", []).append(await direct(store, direct_bucket, data, 16 * MiB, 1))
                for chunk in chunks:
                    key = f"tus/{round_number}-{chunk}.bin"
                    results.setdefault(f"sagestore-{chunk}", []).append(await asyncio.to_thread(
                        tuspy_upload, f"http://127.0.0.1:{port}/api/v1/tus/", data, chunk * MiB,
                        {"bucket": bucket_id, "key": key}, {"Authorization": "sage user:bench"}))
                    results.setdefault(f"tus-node-{chunk}", []).append(await asyncio.to_thread(
                        tuspy_upload, f"http://127.0.0.1:{peer_port}/files", data, chunk * MiB,
                        {"filename": key}, {}))
                print(f"round {round_number + 1}: " + ", ".join(
                    f"{name} {rate(len(data), times[-1]):.0f}" for name, times in results.items()), flush=True)
    finally:
        server.terminate()
        server.wait(30)
        if peer is not None:
            peer.terminate()
            peer.wait(30)
    print(f"\n{len(data) / MiB:.0f} MiB from memory; median of {args.rounds} round(s); MB/s = 10^6 bytes/s")
    medians = {name: statistics.median(times) for name, times in results.items()}
    for name, seconds in medians.items():
        print(f"{name:14} {seconds:7.2f} s {rate(len(data), seconds):8.1f} MB/s")
    for chunk in chunks:
        ours, peer_time = medians[f"sagestore-{chunk}"], medians[f"tus-node-{chunk}"]
        print(f"{chunk} MiB chunks: sagestore {peer_time / ours:.2f}x @tus/server, "
              f"{medians['direct-4'] / ours:.2f}x direct-4, {medians['direct-1'] / ours:.2f}x direct-1")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunks", default="16,64", help="tuspy chunk sizes in MiB, comma-separated")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sagestore-bench-") as data_dir:
        database_server = os.environ.get("SAGESTORE_BENCH_DATABASE_URL")
        with (fresh_database(database_server) if database_server else contextlib.nullcontext("")) as database_url:
            settings = Settings(data_dir=data_dir, database_url=database_url, auth_mode="noauth")
            async with embedded_backends(settings) as settings:
                await run(args, settings)


if __name__ == "__main__":
    asyncio.run(main())
