"""`python -m bench.parquet_column`: read one column of a Parquet file through sage:// and through
s3fs straight to the same SeaweedFS, in one run, and print the time ratio and the bytes fetched.

It starts its own SeaweedFS, database and sagestore (bench/stack.py), writes a Parquet file of
--size (8 float64 columns of random values, so nothing compresses), stores it once in sagestore
and once in a plain SeaweedFS bucket, then reads column c3 with pyarrow from an fsspec file, as
pandas.read_parquet(url, columns=[...], storage_options=...) does, alternating the readers for
--rounds rounds. Each read is checked: the column's sha256 must be the one written. Rows:

    sage               sage:// with its defaults (read-ahead only while reading is sequential)
    s3fs               s3fs with its defaults (50 MiB blocks, read-ahead cache)
    s3fs-no-readahead  s3fs with cache_type="none": exactly the ranges pyarrow asks for
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from sagestore.config import _size

from .stack import BENCH_USER, Stack, StartError

MIB = 2**20
COLUMNS = 8
COLUMN = "c3"
ROW_GROUP_ROWS = 1 << 20  # pyarrow's default: 8 MiB per float64 column chunk
S3_BUCKET = "bench-parquet"


def write_parquet(path: Path, size: int) -> tuple[int, str, int]:
    """A Parquet file of about `size` bytes; returns (rows, sha256 of COLUMN's values, row groups)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = max(4096, size // (COLUMNS * 8))
    group = min(ROW_GROUP_ROWS, max(1024, rows // 4))  # at least 4 row groups, even when small
    rng = np.random.default_rng(7)
    digest = hashlib.sha256()
    schema = pa.schema([(f"c{i}", pa.float64()) for i in range(COLUMNS)])
    groups = 0
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for start in range(0, rows, group):
            count = min(group, rows - start)
            arrays = [rng.random(count) for _ in range(COLUMNS)]
            digest.update(arrays[int(COLUMN[1:])].tobytes())
            writer.write_table(pa.table(arrays, schema=schema), row_group_size=count)
            groups += 1
    return rows, digest.hexdigest(), groups


def column_bytes(path: Path) -> int:
    import pyarrow.parquet as pq
    meta = pq.ParquetFile(path).metadata
    index = meta.schema.names.index(COLUMN)
    return sum(meta.row_group(g).column(index).total_compressed_size for g in range(meta.num_row_groups))


def read_column(fs: Any, path: str, open_options: dict[str, Any]) -> tuple[float, int, str]:
    """(seconds, bytes the file object fetched, sha256 of the column read)."""
    import pyarrow.parquet as pq
    fetched = 0
    started = time.perf_counter()
    with fs.open(path, "rb", **open_options) as f:
        fetch = f.cache.fetcher

        def counted(start: int, end: int) -> bytes:  # every byte the file object asks its filesystem for
            nonlocal fetched
            data = fetch(start, end)
            fetched += len(data)
            return data
        f.cache.fetcher = counted
        table = pq.read_table(f, columns=[COLUMN])
    seconds = time.perf_counter() - started
    values = table.column(COLUMN).to_numpy()
    return seconds, fetched, hashlib.sha256(values.tobytes()).hexdigest()


async def served_bytes(url: str) -> float:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as response:
            text = await response.text()
    return float(re.search(r"^sagestore_downloaded_bytes_total (\S+)$", text, re.M).group(1))


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


async def run(size: int, rounds: int, workdir: Path, log: Any) -> dict[str, Any]:
    import s3fs

    from sagestore.client import AsyncClient
    from sagestore.client.fs import SageFileSystem

    stack = Stack(workdir)
    try:
        log("starting SeaweedFS, the database and sagestore")
        await asyncio.gather(stack.start_seaweedfs(), stack.start_database())
        await stack.start_sagestore()
        local = workdir / "data.parquet"
        log(f"writing a Parquet file of about {size / MIB:.0f} MiB")
        rows, expected, groups = await asyncio.to_thread(write_parquet, local, size)
        file_size, column_size = local.stat().st_size, column_bytes(local)
        token = f"user:{BENCH_USER}"
        async with AsyncClient(stack.server_url, token) as client:
            bucket = (await client.create_bucket("training-data", "bench-parquet"))["id"]
            log("storing it in sagestore")
            await client.upload_file(bucket, "data.parquet", local)
        direct = s3fs.S3FileSystem(key=stack.s3["access_key"], secret=stack.s3["secret_key"],
                                   endpoint_url=stack.s3["endpoint"], client_kwargs={"region_name": "us-east-1"},
                                   skip_instance_cache=True)
        log("storing it in SeaweedFS for s3fs")
        await asyncio.to_thread(direct.mkdir, S3_BUCKET)
        await asyncio.to_thread(direct.put_file, str(local), f"{S3_BUCKET}/data.parquet")
        local.unlink()
        sage = SageFileSystem(stack.server_url, token, skip_instance_cache=True)
        readers = {
            "sage": (sage, f"{bucket}/data.parquet", {}),
            "s3fs": (direct, f"{S3_BUCKET}/data.parquet", {}),
            "s3fs-no-readahead": (direct, f"{S3_BUCKET}/data.parquet", {"cache_type": "none"}),
        }
        samples: dict[str, list[tuple[float, int]]] = {name: [] for name in readers}
        served: list[float] = []
        for number in range(rounds):
            for name, (fs, path, open_options) in readers.items():
                before = await served_bytes(stack.server_url)
                seconds, fetched, digest = await asyncio.to_thread(read_column, fs, path, open_options)
                if digest != expected:
                    raise RuntimeError(f"{name}: the column read is not the column written")
                samples[name].append((seconds, fetched))
                if name == "sage":
                    served.append(await served_bytes(stack.server_url) - before)
                log(f"round {number + 1}: {name} {seconds:.2f} s, {fetched / MIB:.1f} MiB fetched")
        results = {}
        for name, values in samples.items():
            seconds = statistics.median(s for s, _ in values)
            fetched = statistics.median(f for _, f in values)
            results[name] = {"seconds": round(seconds, 3), "fetched_bytes": int(fetched),
                             "mib_s_of_column": round(column_size / MIB / seconds, 1), "verified": True}
        results["sage"]["served_bytes"] = int(statistics.median(served))
        base = results["s3fs"]["seconds"]
        for row in results.values():
            row["ratio_to_s3fs"] = round(base / row["seconds"], 2)  # > 1: faster than s3fs
        return {"file_bytes": file_size, "column_bytes": column_size, "rows": rows, "row_groups": groups,
                "rounds": rounds, "results": results}
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parquet_column", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB", help="Parquet file size (default 1GiB)")
    parser.add_argument("--rounds", type=int, default=3, help="reads per reader, alternating (median reported)")
    parser.add_argument("--json", default="", metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    size = _size(args.size)
    workdir = Path(tempfile.mkdtemp(prefix="sagestore-bench-parquet-"))
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    load_before = uptime()
    try:
        data = asyncio.run(run(size, max(1, args.rounds), workdir, log))
    except StartError as problem:
        print(f"bench: could not start: {problem}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    data.update(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                uptime_before=load_before, uptime_after=uptime(), cores=os.cpu_count())
    print(f"\none column of a Parquet file: {data['date']}, {data['file_bytes'] / MIB:.0f} MiB file, "
          f"{data['row_groups']} row groups, column {data['column_bytes'] / MIB:.1f} MiB, "
          f"{data['rounds']} rounds (medians)")
    print(f"uptime before: {data['uptime_before']}\nuptime after:  {data['uptime_after']}")
    print(f"{'reader':<20}{'seconds':>9}{'MiB/s':>9}{'fetched MiB':>13}{'÷ s3fs':>9}")
    for name, row in data["results"].items():
        print(f"{name:<20}{row['seconds']:>9.2f}{row['mib_s_of_column']:>9.1f}"
              f"{row['fetched_bytes'] / MIB:>13.1f}{row['ratio_to_s3fs']:>9.2f}")
    print(f"sagestore sent {data['results']['sage']['served_bytes'] / MIB:.1f} MiB per sage:// read "
          f"(its /metrics); '÷ s3fs' is s3fs's time over the row's: above 1 is faster")
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
