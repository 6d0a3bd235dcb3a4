"""Time to ready of `sagestore serve` on embedded backends: cold (fresh data dir: initdb,
256 S3 buckets) and warm (existing data dir), measured from the spawn of the process to
the first 200 from /api/v1/, plus the time SIGTERM takes to stop everything.

    python3 bench/startup.py [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from sagestore.embedded import free_port

REPO = Path(__file__).resolve().parent.parent


def one_run(data_dir: Path) -> tuple[float, float]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAGESTORE_")}
    env["PYTHONPATH"] = str(REPO)
    env["SAGESTORE_S3_API_PORT"] = "0"
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "sagestore", "serve", "--data-dir", str(data_dir),
                                "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if process.poll() is not None:
            raise SystemExit(f"serve exited with {process.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/v1/", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.02)
    ready = time.monotonic() - started
    stopping = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(120)
    return ready, time.monotonic() - stopping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cold, warm = [], []
    for _ in range(args.runs):
        root = Path(tempfile.mkdtemp(prefix="sagestore-startup-"))
        try:
            cold.append(one_run(root / "data"))
            warm.append(one_run(root / "data"))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    for name, runs in (("cold", cold), ("warm", warm)):
        ready = [r for r, _ in runs]
        stop = [s for _, s in runs]
        print(f"{name}: ready {', '.join(f'{r:.2f}' for r in ready)} s (median {statistics.median(ready):.2f} s); "
              f"stop {', '.join(f'{s:.2f}' for s in stop)} s")


if __name__ == "__main__":
    main()
