"""The kill -9 fault matrix: for every upload path, a `sagestore serve` subprocess is killed with
SIGKILL at a random byte of the upload (or a random moment of its completing request), restarted
on the same port, and the client reads the server's offset or stored parts, resumes and completes.

Checked in every trial:
- after the restart the server's offset (or set of stored parts) is at least what it had
  acknowledged and at most what the client had sent (`lost` counts acknowledged bytes missing);
- no partial object is ever visible: a watcher polls S3 for the target key during the whole
  trial, and every size it sees is the full length;
- the published object's sha256 equals the data's, read straight from S3.
"""
from __future__ import annotations

import os
import random
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
import requests
from botocore.config import Config

from sagestore.config import Settings
from sagestore.storage import BucketMapping

from support.data import create_bucket_row, sha256
from support.server import ServerProcess

from .clients import MiB, PATHS, TrialBytes

def killable_server(settings: Settings, port: int) -> ServerProcess:
    """A `sagestore serve` subprocess that the harness kills with SIGKILL and restarts on its
    port; ready when /readyz answers (its backends reachable)."""
    return ServerProcess(settings, port, ready_path="/readyz")


class S3Watcher(threading.Thread):
    """Polls the target key in S3 and remembers every size it sees (a partial object would show)."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        super().__init__(daemon=True)
        self.client, self.bucket, self.key = client, bucket, key
        self.sizes: set[int] = set()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.sizes.add(self.client.head_object(Bucket=self.bucket, Key=self.key)["ContentLength"])
            except Exception:  # noqa: BLE001 - absent (404) is the normal state
                pass
            self.halt.wait(0.05)


@dataclass
class TrialResult:
    path: str
    passed: bool
    size: int
    kills: int
    lost: int
    recover_seconds: list[float] = field(default_factory=list)
    error: str = ""


@dataclass
class Target:
    settings: Settings
    bucket_id: str

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.settings.s3_endpoint, region_name=self.settings.s3_region,
                            aws_access_key_id=self.settings.s3_access_key,
                            aws_secret_access_key=self.settings.s3_secret_key,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def location(self, key: str):
        mapping = BucketMapping(self.settings.s3_bucket_prefix, self.settings.s3_bucket_count,
                                self.settings.s3_single_bucket)
        return mapping.object(self.bucket_id, key)


def run_trial(server: ServerProcess, target: Target, path: str, rng: random.Random,
              completion_share: float = 0.2) -> TrialResult:
    """One upload on `path`; the server is killed at a random byte of the upload or, in
    completion_share of the trials, 0-0.4 s into the request that publishes the object."""
    data = os.urandom(rng.randint(8, 16) * MiB + rng.randint(0, MiB))
    key = f"faults/{path}/{uuid.uuid4().hex}.bin"
    kill_times: list[float] = []

    def kill() -> None:
        kill_times.append(time.monotonic())
        server.kill9()

    if rng.random() >= completion_share:
        trial = TrialBytes(rng.randint(1, len(data)), kill)
    else:
        trial = TrialBytes(None, kill, kill_in_completion=rng.uniform(0.0, 0.4))
    client = PATHS[path](server.url, target.bucket_id, key, data, trial, rng)
    client.s3_url = f"http://127.0.0.1:{server.settings.s3_api_port}"  # the S3 paths' endpoint
    location = target.location(key)
    s3 = target.s3()
    watcher = S3Watcher(s3, location.bucket, location.key)
    watcher.start()
    result = TrialResult(path, False, len(data), 0, 0)
    need_resync = False
    try:
        for _ in range(500):
            if client.done:
                break
            try:
                if not client.started:
                    if hasattr(client, "restart_from_scratch"):
                        client.restart_from_scratch()
                    client.begin()
                elif need_resync:
                    client.resync()
                    need_resync = False
                    if kill_times and len(result.recover_seconds) < len(kill_times):
                        result.recover_seconds.append(time.monotonic() - kill_times[-1])
                else:
                    client.step()
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                if not server.dead():
                    raise  # a failure that is not our kill
                result.kills += 1
                server.start()
                need_resync = client.started
        assert client.done, "the upload did not complete"
        watcher.halt.set()
        watcher.join()
        stored = s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        assert sha256(stored) == sha256(data), "the published object differs from the data"
        assert watcher.sizes <= {len(data)}, f"a partial object was visible: sizes {sorted(watcher.sizes)}"
        result.passed = True
    except Exception as error:  # noqa: BLE001 - reported per trial
        result.error = f"{type(error).__name__}: {error}"[:500]
    finally:
        trial.cancel()
        watcher.halt.set()
        result.lost = client.lost
        if server.dead():
            server.start()
    return result


def summarize(results: list[TrialResult]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for path in PATHS:
        mine = [r for r in results if r.path == path]
        if not mine:
            continue
        recover = [s for r in mine for s in r.recover_seconds]
        table[path] = {
            "trials": len(mine), "passed": sum(r.passed for r in mine), "kills": sum(r.kills for r in mine),
            "acknowledged_bytes_lost": sum(r.lost for r in mine),
            "recover_median_s": round(statistics.median(recover), 2) if recover else None,
            "recover_max_s": round(max(recover), 2) if recover else None,
            "errors": [r.error for r in mine if r.error][:5],
        }
    return table


def run_matrix(settings: Settings, port: int, paths: list[str], trials: int, seed: int,
               progress=None) -> list[TrialResult]:
    """`trials` kill -9 trials per path against one server process (restarted after each kill)."""
    from sagestore.embedded import free_port
    settings = settings.replace(auth_mode="noauth", s3_part_size=5 * MiB, reaper_interval=0,
                                s3_api_port=free_port())  # the S3 paths; kept across restarts
    server = killable_server(settings, port)
    server.start()
    results = []
    try:
        target = Target(settings, create_bucket_row(settings.database_url))
        rng = random.Random(seed)
        for number in range(trials):
            for path in paths:
                result = run_trial(server, target, path, rng)
                results.append(result)
                if progress:
                    progress(number, result)
    finally:
        server.stop()
    return results
