"""`python -m bench`: start SeaweedFS, PostgreSQL and sagestore, run the scenarios,
print the table and write the JSON file."""
from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sagestore.config import _size

from . import report
from .runner import ALL, ALIASES, BIG, MIB, Options, Runner, expand
from .stack import Stack, StartError

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark sagestore against direct S3 (aiobotocore) and @tus/server on one local "
                    "SeaweedFS. Figures are ratios taken in one run on one machine.")
    parser.add_argument("--size", default=None, help="input file size (default 1GiB, 64MiB with --quick), e.g. 256MiB")
    parser.add_argument("--quick", action="store_true",
                        help="64 MiB input (unless --size), 8 concurrent sessions, 1 s small-request runs (a smoke test)")
    parser.add_argument("--big", action="store_true",
                        help="add the memory scenarios: 1 GiB and 10 GiB raw PUT and tus, RSS growth and ratio")
    parser.add_argument("--concurrency", type=int, default=None, metavar="N",
                        help="parallel sessions of 64 MiB in the concurrency scenario (default 100, "
                             "8 with --quick; 0 skips it)")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="run the ratio scenarios N times and report medians (a shared machine is noisy)")
    parser.add_argument("--only", default="", metavar="SCENARIO,...",
                        help=f"run only these scenarios or groups: {', '.join(ALL)}; groups: "
                             f"{', '.join(ALIASES)}")
    parser.add_argument("--profile", default="", metavar="SCENARIO,...",
                        help="record the sagestore server with py-spy during these scenarios "
                             "(e.g. raw-put); raw stacks go to bench/results/profile-<scenario>.txt")
    parser.add_argument("--json", default=str(RESULTS_DIR / "latest.json"), metavar="PATH",
                        help="where to write the JSON results (default bench/results/latest.json)")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument("--rss-limit", default="", metavar="SIZE",
                        help="stop a scenario when the server's RSS passes SIZE (default min(8GiB, 40%% of RAM))")
    parser.add_argument("--server-repo", default=None, metavar="DIR",
                        help="measure the sagestore of another checkout (default: this one)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the sagestore servers (repeatable), e.g. "
                             "SAGESTORE_REQUEST_TRAILERS=false to measure aiohttp's C request parser")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir (logs, data)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        size = _size(args.size) if args.size else 64 * MIB if args.quick else _size("1GiB")
        extra_options = {"rss_limit": _size(args.rss_limit)} if args.rss_limit else {}
        if args.only:
            selected = expand([name.strip() for name in args.only.split(",") if name.strip()])
        else:
            selected = [name for name in ALL if name not in BIG]
        if args.big and not args.only:
            selected += BIG
        profile = [name.strip() for name in args.profile.split(",") if name.strip()]
        expand(profile)
    except ValueError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    if size < 5 * MIB:
        print("bench: error: --size must be at least 5MiB", file=sys.stderr)
        return 2
    concurrency = args.concurrency if args.concurrency is not None else (8 if args.quick else 100)
    workdir = Path(tempfile.mkdtemp(prefix="sagestore-bench-"))
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    options = Options(size=size, selected=selected, concurrency=concurrency, workdir=workdir,
                      results_dir=RESULTS_DIR, profile=profile, log=log, rounds=max(1, args.rounds),
                      small_seconds=1.0 if args.quick else 5.0, **extra_options)
    server_env = dict(item.split("=", 1) for item in args.server_env if "=" in item)
    if len(server_env) != len(args.server_env) or not all(name.startswith("SAGESTORE_") for name in server_env):
        print("bench: error: --server-env takes SAGESTORE_NAME=VALUE", file=sys.stderr)
        return 2
    stack = Stack(workdir, Path(args.server_repo).resolve()) if args.server_repo else Stack(workdir)
    stack.server_env = server_env
    runner = Runner(options, stack)
    load_before = os.getloadavg()
    try:
        asyncio.run(_run(stack, runner, log))
    except StartError as error:
        print(f"bench: could not start: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stack.stop()
        if args.keep:
            log(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    data = report.document(
        runner.results, date=date, seconds=round(time.time() - started, 1),
        args={"size": size, "quick": args.quick, "big": args.big, "concurrency": concurrency,
              "only": args.only, "profile": args.profile, "rounds": max(1, args.rounds),
              "server_env": server_env},
        stack=stack.describe() | {"server_repo": str(stack.server_repo)}, baselines=getattr(runner, "baselines", {}),
        small_requests=runner.small, sha256_floor_s_per_gib=getattr(runner, "sha256_floor", None),
        load_average={"before": load_before, "after": os.getloadavg()})
    print(f"\nsagestore benchmark, {date}, {size / MIB:.0f} MiB input, {os.cpu_count()} cores; "
          f"load average before/after {load_before[0]:.1f}/{data['load_average']['after'][0]:.1f}")
    print(report.table(runner.results))
    print("\ngoals:")
    print(report.goals_text(data["goals"]))
    for result in runner.results:
        if "profile" in result.extra and "self" in result.extra["profile"]:
            from .profile import render
            print(f"\nprofile of the server during {result.name}:")
            print(render(result.extra["profile"]))
    if args.markdown:
        print()
        print(report.markdown_table(runner.results))
    report.write_json(Path(args.json), data)
    print(f"\nJSON: {args.json}")
    failed = [r.name for r in runner.results if r.status == "failed"]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


async def _run(stack: Stack, runner: Runner, log) -> None:
    log("starting SeaweedFS and the database")
    await asyncio.gather(stack.start_seaweedfs(), stack.start_database())
    log(f"starting sagestore ({stack.database_note})")
    await stack.start_sagestore()
    await runner.run()
