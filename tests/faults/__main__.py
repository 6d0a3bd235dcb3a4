"""`python -m tests.faults [--trials 50] [--paths tus,ietf,...] [--seed N] [--soak 300] [--json FILE]`:
the full randomised kill -9 matrix on its own embedded PostgreSQL and SeaweedFS, then a bounded
soak (soak.py); prints the tables docs/reliability.md shows. Exit status 1 when any trial failed."""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sagestore.config import Settings
from sagestore.embedded import Embedded, _postgres_ready, _wait_s3_ready, free_port

from .clients import PATHS
from .matrix import run_matrix, summarize


def own_backends(root: Path) -> tuple[Embedded, Settings]:
    embedded = Embedded(root / "data")
    embedded.lock()
    weed, s3 = embedded.start_seaweedfs()
    postgres, database_url = embedded.start_postgres()
    asyncio.run(_wait_s3_ready(weed, s3["endpoint"], s3["access_key"], s3["secret_key"], 120))
    deadline = time.monotonic() + 120
    while True:
        try:
            asyncio.run(_postgres_ready(database_url))
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return embedded, Settings(data_dir=str(root / "data"), database_url=database_url, s3_endpoint=s3["endpoint"],
                              s3_access_key=s3["access_key"], s3_secret_key=s3["secret_key"], s3_bucket_count=4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults")
    parser.add_argument("--trials", type=int, default=50, help="trials per path")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated: " + ", ".join(PATHS))
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--json", help="write the summary and every trial here")
    parser.add_argument("--soak", type=float, default=300, help="seconds of mixed load after the matrix (0: none)")
    args = parser.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths: {', '.join(sorted(unknown))}")
    root = Path(tempfile.mkdtemp(prefix="sagestore-faults-"))
    root.chmod(0o711)  # as root, the embedded PostgreSQL's system user must pass through (as tests/conftest.py)
    embedded, settings = own_backends(root)
    started = time.monotonic()

    def progress(number: int, result) -> None:
        mark = "ok" if result.passed else f"FAILED {result.error}"
        print(f"trial {number + 1:3d} {result.path:10s} {result.size / 2**20:6.1f} MiB kills={result.kills} "
              f"recover={[round(s, 2) for s in result.recover_seconds]} {mark}", flush=True)
    soak = None
    try:
        results = run_matrix(settings, free_port(), paths, args.trials, args.seed, progress) if args.trials else []
        if args.soak:
            from .soak import run_soak
            soak = run_soak(settings, free_port(), args.soak)
            print(json.dumps(soak, indent=1), flush=True)
    finally:
        embedded.stop()
        shutil.rmtree(root, ignore_errors=True)
    table = summarize(results)
    print(f"\nseed {args.seed}, {time.monotonic() - started:.0f}s\n")
    print("| path | trials | passed | kills | acknowledged bytes lost | time to recover (median / max) |")
    print("|---|---|---|---|---|---|")
    for path, row in table.items():
        print(f"| {path} | {row['trials']} | {row['passed']} | {row['kills']} | {row['acknowledged_bytes_lost']} "
              f"| {row['recover_median_s']} s / {row['recover_max_s']} s |")
    if args.json:
        Path(args.json).write_text(json.dumps({"seed": args.seed, "summary": table, "soak": soak,
                                               "trials": [r.__dict__ for r in results]}, indent=1))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
