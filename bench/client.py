"""`sagestore cp` of one file up and down, against direct aiobotocore and boto3's
upload_file/download_file (s3transfer, the `aws s3` engine) on the same SeaweedFS, in one run.

    python -m bench.client [--size-mib 1024]

Prints wall-clock MiB/s, the ratio to direct aiobotocore and to the better of the two direct
clients, the client's CPU s/GiB (the cp subprocess, or this process for the direct clients)
and the server's CPU s/GiB, plus what hashing the file once costs (the sha256 an indexed
session must declare before its first chunk).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.stack import REPO, Stack

MiB = 2**20
PART = 16 * MiB
IN_FLIGHT = 8
BUCKET = "bench-client-direct"


def cpu_of(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def own_cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def aiobotocore_up_down(stack: Stack, source: Path, target: Path) -> tuple[float, float]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session
    config = AioConfig(s3={"addressing_style": "path", "payload_signing_enabled": False},
                       max_pool_connections=32, request_checksum_calculation="when_required",
                       response_checksum_validation="when_required")
    async with get_session().create_client("s3", endpoint_url=stack.s3["endpoint"], region_name="us-east-1",
                                           aws_access_key_id=stack.s3["access_key"],
                                           aws_secret_access_key=stack.s3["secret_key"], config=config) as s3:
        try:
            await s3.create_bucket(Bucket=BUCKET)
        except Exception:  # noqa: BLE001 - it exists already
            pass
        size = source.stat().st_size
        started = time.perf_counter()
        upload = await s3.create_multipart_upload(Bucket=BUCKET, Key="big")
        numbers = list(range(1, -(-size // PART) + 1))
        parts: dict[int, str] = {}
        fd = os.open(source, os.O_RDONLY)

        async def send(number: int) -> None:
            data = await asyncio.to_thread(os.pread, fd, PART, (number - 1) * PART)
            answer = await s3.upload_part(Bucket=BUCKET, Key="big", UploadId=upload["UploadId"], PartNumber=number,
                                          Body=data)
            parts[number] = answer["ETag"]

        async def worker() -> None:
            while numbers:
                await send(numbers.pop(0))
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        os.close(fd)
        await s3.complete_multipart_upload(Bucket=BUCKET, Key="big", UploadId=upload["UploadId"], MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": parts[n]} for n in sorted(parts)]})
        up = time.perf_counter() - started
        started = time.perf_counter()
        with open(target, "wb") as handle:
            handle.truncate(size)
        out = os.open(target, os.O_WRONLY)
        ranges = list(range(0, size, PART))

        async def fetch(start: int) -> None:
            answer = await s3.get_object(Bucket=BUCKET, Key="big", Range=f"bytes={start}-{min(size, start + PART) - 1}")
            position = start
            async with answer["Body"] as body:
                async for piece in body.iter_chunks(MiB):
                    await asyncio.to_thread(os.pwrite, out, piece, position)
                    position += len(piece)

        async def fetcher() -> None:
            while ranges:
                await fetch(ranges.pop(0))
        await asyncio.gather(*(fetcher() for _ in range(IN_FLIGHT)))
        os.close(out)
        return up, time.perf_counter() - started


def boto3_up_down(stack: Stack, source: Path, target: Path) -> tuple[float, float]:
    import boto3
    from botocore.config import Config
    s3 = boto3.client("s3", endpoint_url=stack.s3["endpoint"], region_name="us-east-1",
                      aws_access_key_id=stack.s3["access_key"], aws_secret_access_key=stack.s3["secret_key"],
                      config=Config(s3={"addressing_style": "path"}, max_pool_connections=32))
    started = time.perf_counter()
    s3.upload_file(str(source), BUCKET, "big-boto3")
    up = time.perf_counter() - started
    started = time.perf_counter()
    s3.download_file(BUCKET, "big-boto3", str(target))
    return up, time.perf_counter() - started


def sagestore_cp(stack: Stack, args: list[str], profile: Path | None = None) -> tuple[float, float, float]:
    """One `sagestore cp`; with profile, under `py-spy record --format raw` (its CPU then counts too)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAGESTORE_")}
    env.update(PYTHONPATH=str(REPO), SAGESTORE_URL=stack.server_url, SAGESTORE_TOKEN="user:bench")
    server_before, children_before = cpu_of(stack.server.pid), children_cpu()
    spy = ["py-spy", "record", "--format", "raw", "--rate", "50", "-o", str(profile), "--"] if profile else []
    started = time.perf_counter()
    subprocess.run([*spy, sys.executable, "-m", "sagestore", "cp", "--quiet", *args], env=env, check=True)
    wall = time.perf_counter() - started
    return wall, children_cpu() - children_before, cpu_of(stack.server.pid) - server_before


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--profile", action="store_true",
                        help="record each cp with py-spy into bench/results/profile-cp-{up,down}.txt")
    options = parser.parse_args()
    profiles = REPO / "bench" / "results"
    if options.profile:
        profiles.mkdir(parents=True, exist_ok=True)
    size = options.size_mib * MiB
    gib = size / 2**30
    workdir = Path(tempfile.mkdtemp(prefix="sagestore-bench-client-"))
    stack = Stack(workdir)
    try:
        await stack.start_seaweedfs()
        await stack.start_database()
        await stack.start_sagestore()
        source = workdir / "big.bin"
        with open(source, "wb") as handle:
            for _ in range(size // (64 * MiB)):
                handle.write(os.urandom(64 * MiB))
        started, cpu = time.perf_counter(), own_cpu()
        digest = hashlib.sha256()
        with open(source, "rb") as handle:
            while chunk := handle.read(8 * MiB):
                digest.update(chunk)
        hash_wall, hash_cpu = time.perf_counter() - started, own_cpu() - cpu

        rows = []
        cpu = own_cpu()
        up, down = await aiobotocore_up_down(stack, source, workdir / "down-aiobotocore.bin")
        direct_cpu = (own_cpu() - cpu) / 2
        rows.append(("aiobotocore (direct)", up, down, direct_cpu, direct_cpu, 0.0, 0.0))
        cpu = own_cpu()
        boto_up, boto_down = await asyncio.to_thread(boto3_up_down, stack, source, workdir / "down-boto3.bin")
        boto_cpu = (own_cpu() - cpu) / 2
        rows.append(("boto3 upload_file/download_file", boto_up, boto_down, boto_cpu, boto_cpu, 0.0, 0.0))

        from sagestore.client import Client
        with Client(stack.server_url, "user:bench") as client:
            bucket_id = client.create_bucket("model", "bench-client")["id"]
        cp_up, client_up, server_up = sagestore_cp(stack, [str(source), f"sage://{bucket_id}/big.bin"],
                                                   options.profile and profiles / "profile-cp-up.txt")
        cp_down, client_down, server_down = sagestore_cp(stack, [f"sage://{bucket_id}/big.bin",
                                                                 str(workdir / "down-sagestore.bin")],
                                                         options.profile and profiles / "profile-cp-down.txt")
        rows.append(("sagestore cp", cp_up, cp_down, client_up, client_down, server_up, server_down))

        best_up, best_down = min(up, boto_up), min(down, boto_down)
        print(f"size {options.size_mib} MiB; load: {os.getloadavg()}; sha256 of the file once: "
              f"{hash_wall:.2f} s wall, {hash_cpu / gib:.2f} CPU s/GiB")
        print("| client | up MiB/s | up vs aiobotocore | up vs best | down MiB/s | down vs aiobotocore | down vs best "
              "| client CPU s/GiB up / down | server CPU s/GiB up / down |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, u, d, cu, cd, su, sd in rows:
            print(f"| {name} | {options.size_mib / u:.0f} | {up / u:.2f} | {best_up / u:.2f} | {options.size_mib / d:.0f}"
                  f" | {down / d:.2f} | {best_down / d:.2f} | {cu / gib:.2f} / {cd / gib:.2f} "
                  f"| {su / gib:.2f} / {sd / gib:.2f} |")
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # the input, the downloads and SeaweedFS's copies


if __name__ == "__main__":
    asyncio.run(main())
