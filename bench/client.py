"""`sagestore cp` of one file up and down, against the server's own relay of the same protocol
driven by a lean client, direct aiobotocore and boto3's upload_file/download_file (s3transfer,
the `aws s3` engine) on the same SeaweedFS, in one run.

    python -m bench.client [--size-mib 1024] [--profile]

The relay reference ("sagestore, lean client") moves the file through the same server requests
as cp and no more client work: up, an indexed session hashed in order (verifySha256) with the
server's chunk size and cp's chunks in flight, each chunk one pread and one PUT, the sha256 given
at completion taken from the untimed hash of the file; down, cp's Range GETs (same size, same
number in flight) written where they belong as they arrive (one pwritev per MiB), no hashing;
both with cp's aiohttp settings. cp ÷ that reference is
what the client adds (goal: >= 0.95 both ways).

Prints wall-clock MiB/s, the ratios to the relay reference, to direct aiobotocore and to the
better of the two direct clients, the client's CPU s/GiB (the cp subprocess, or this process for
the in-process clients) and the server's CPU s/GiB, plus what hashing the file once costs.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


async def relay_reference(stack: Stack, bucket_id: str, source: Path, sha256: str,
                          target: Path) -> tuple[float, float, float, float]:
    """The same server requests as `sagestore cp` up and down, with the least client work:
    (up seconds, down seconds, server CPU s up, server CPU s down)."""
    import aiohttp

    from sagestore.client.config import TransferConfig
    config = TransferConfig()
    size = source.stat().st_size
    headers = {"Authorization": "sage user:bench"}
    key = "big-reference.bin"
    from sagestore.client.aio import READ_BUFFER
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=2 * config.concurrency),
                                     read_bufsize=READ_BUFFER,  # cp's own transport setting
                                     timeout=aiohttp.ClientTimeout(total=None, sock_read=120)) as http:
        async def call(method: str, url: str, ok: tuple[int, ...], **kwargs) -> Any:
            async with http.request(method, stack.server_url + url, **kwargs) as response:
                body = await response.read()
                if response.status not in ok:
                    raise RuntimeError(f"{method} {url}: {response.status} {body[:300]!r}")
                return json.loads(body) if body else None

        server_before, started = cpu_of(stack.server.pid), time.perf_counter()
        session = await call("POST", "/api/v1/attachment/initiate", (201,), json={
            "bucket_id": bucket_id, "key": key, "fileName": key, "fileSize": size,
            "contentType": "application/octet-stream", "verifySha256": True})
        chunk, numbers = session["chunkSize"], list(range(session["totalChunks"], 0, -1))
        fd = os.open(source, os.O_RDONLY)

        async def send() -> None:
            while numbers:
                number = numbers.pop()
                data = await asyncio.to_thread(os.pread, fd, chunk, (number - 1) * chunk)
                await call("PUT", f"/api/v1/attachment/session/{session['sessionId']}/upload/{number}", (200, 201),
                           data=data, headers={"Content-Type": "application/octet-stream"})
        try:
            await asyncio.gather(*(send() for _ in range(config.concurrency)))
        finally:
            os.close(fd)
        await call("POST", f"/api/v1/attachment/session/{session['sessionId']}/complete", (201,),
                   json={"sha256": sha256})
        up, server_up = time.perf_counter() - started, cpu_of(stack.server.pid) - server_before

        server_before, started = cpu_of(stack.server.pid), time.perf_counter()
        with open(target, "wb") as handle:
            handle.truncate(size)
        out = os.open(target, os.O_WRONLY)
        starts = list(range(0, size, config.chunk_size))[::-1]

        async def fetch() -> None:
            while starts:
                start = starts.pop()
                end = min(size, start + config.chunk_size) - 1
                async with http.get(f"{stack.server_url}/api/v1/objects/{bucket_id}/{key}",
                                    headers={"Range": f"bytes={start}-{end}"}) as response:
                    if response.status != 206:
                        raise RuntimeError(f"range GET: {response.status}")
                    position, pending, pending_size = start, [], 0
                    while (piece := (await response.content.readchunk())[0]) or not response.content.at_eof():
                        pending.append(piece)
                        pending_size += len(piece)
                        if pending_size >= MiB:  # one pwritev per MiB received, in a thread
                            await asyncio.to_thread(os.pwritev, out, pending, position)
                            position, pending, pending_size = position + pending_size, [], 0
                    if pending:
                        await asyncio.to_thread(os.pwritev, out, pending, position)
        try:
            await asyncio.gather(*(fetch() for _ in range(config.concurrency)))
        finally:
            os.close(out)
        down, server_down = time.perf_counter() - started, cpu_of(stack.server.pid) - server_before
    return up, down, server_up, server_down


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


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
        sha256 = file_sha256(source)
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
        cpu = own_cpu()
        ref_up, ref_down, ref_server_up, ref_server_down = await relay_reference(
            stack, bucket_id, source, sha256, workdir / "down-reference.bin")
        ref_cpu = (own_cpu() - cpu) / 2
        if file_sha256(workdir / "down-reference.bin") != sha256:  # checked outside the timing
            raise RuntimeError("the relay reference downloaded other bytes")
        (workdir / "down-reference.bin").unlink()
        rows.append(("sagestore, lean client (relay reference)", ref_up, ref_down, ref_cpu, ref_cpu, ref_server_up,
                     ref_server_down))
        cp_up, client_up, server_up = sagestore_cp(stack, [str(source), f"sage://{bucket_id}/big.bin"],
                                                   options.profile and profiles / "profile-cp-up.txt")
        cp_down, client_down, server_down = sagestore_cp(stack, [f"sage://{bucket_id}/big.bin",
                                                                 str(workdir / "down-sagestore.bin")],
                                                         options.profile and profiles / "profile-cp-down.txt")
        rows.append(("sagestore cp", cp_up, cp_down, client_up, client_down, server_up, server_down))

        best_up, best_down = min(up, boto_up), min(down, boto_down)
        print(f"size {options.size_mib} MiB; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}; "
              f"sha256 of the file once: {hash_wall:.2f} s wall, {hash_cpu / gib:.2f} CPU s/GiB")
        print("| client | up MiB/s | up ÷ relay reference | up vs aiobotocore | up vs best | down MiB/s "
              "| down ÷ relay reference | down vs aiobotocore | down vs best "
              "| client CPU s/GiB up / down | server CPU s/GiB up / down |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, u, d, cu, cd, su, sd in rows:
            relayed = name.startswith("sagestore")
            print(f"| {name} | {options.size_mib / u:.0f} | {f'{ref_up / u:.2f}' if relayed else '-'} "
                  f"| {up / u:.2f} | {best_up / u:.2f} | {options.size_mib / d:.0f} "
                  f"| {f'{ref_down / d:.2f}' if relayed else '-'} | {down / d:.2f} | {best_down / d:.2f} "
                  f"| {cu / gib:.2f} / {cd / gib:.2f} | {su / gib:.2f} / {sd / gib:.2f} |")
        print(f"goal: sagestore cp >= 0.95 x the relay reference: up {ref_up / cp_up:.2f}, down {ref_down / cp_down:.2f}")
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # the input, the downloads and SeaweedFS's copies


if __name__ == "__main__":
    asyncio.run(main())
