"""A bounded soak through `sagestore serve`: worker threads mix small requests (bucket info,
listings), small PUTs, downloads and tus uploads for `seconds`; the server's RSS, open file
descriptors and PostgreSQL connections are sampled every few seconds after a warm-up."""
from __future__ import annotations

import base64
import os
import random
import statistics
import threading
import time
from typing import Any

import psutil
import psycopg2
import requests

from sagestore.config import Settings

from .clients import MiB
from support.data import create_bucket_row

from .matrix import killable_server

ALICE = {"Authorization": "sage user:alice"}


def _tus(session: requests.Session, url: str, bucket_id: str, key: str, data: bytes) -> None:
    meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in (("bucket", bucket_id), ("key", key)))
    response = session.post(f"{url}/api/v1/tus/", timeout=60, headers={
        **ALICE, "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    response.raise_for_status()
    location = url + response.headers["Location"]
    for offset in range(0, len(data), 2 * MiB):
        session.patch(location, data=data[offset:offset + 2 * MiB], timeout=60, headers={
            **ALICE, "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream"}).raise_for_status()


def run_soak(settings: Settings, port: int, seconds: float, workers: int = 4, warm_up: float = 20) -> dict[str, Any]:
    settings = settings.replace(auth_mode="noauth", reaper_interval=60)
    server = killable_server(settings, port)
    server.start()
    bucket_id = create_bucket_row(settings.database_url)
    url = server.url
    small = os.urandom(64 * 1024)
    latencies: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    samples: list[dict[str, float]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    started = time.monotonic()

    def record(kind: str, elapsed: float | None) -> None:
        with lock:
            if elapsed is None:
                errors[kind] = errors.get(kind, 0) + 1
            else:
                latencies.setdefault(kind, []).append(elapsed)

    def worker(number: int) -> None:
        rng = random.Random(number)
        session = requests.Session()
        session.put(f"{url}/api/v1/objects/{bucket_id}/soak/seed-{number}.bin", data=small, headers=ALICE, timeout=60)
        count = 0
        while time.monotonic() < stop_at:
            count += 1
            kind = rng.choices(["info", "list", "put", "get", "tus"], [40, 15, 20, 20, 5])[0]
            begun = time.monotonic()
            try:
                if kind == "info":
                    session.get(f"{url}/api/v1/objects/{bucket_id}", headers=ALICE, timeout=60).raise_for_status()
                elif kind == "list":
                    session.get(f"{url}/api/v1/objects/{bucket_id}/soak/", headers=ALICE, timeout=60,
                                params={"limit": "100"}).raise_for_status()
                elif kind == "put":
                    session.put(f"{url}/api/v1/objects/{bucket_id}/soak/{number}-{count % 50}.bin", data=small,
                                headers=ALICE, timeout=60).raise_for_status()
                elif kind == "get":
                    response = session.get(f"{url}/api/v1/objects/{bucket_id}/soak/seed-{number}.bin",
                                           headers=ALICE, timeout=60)
                    response.raise_for_status()
                    assert response.content == small
                else:
                    _tus(session, url, bucket_id, f"soak/tus-{number}-{count % 5}.bin", os.urandom(6 * MiB))
                record(kind, time.monotonic() - begun)
            except Exception:  # noqa: BLE001 - counted
                record(kind, None)

    def sampler() -> None:
        process = psutil.Process(server.process.pid)
        database = settings.database_url.rsplit("/", 1)[1]
        while time.monotonic() < stop_at:
            time.sleep(5)
            if time.monotonic() - started < warm_up:
                continue
            conn = psycopg2.connect(settings.database_url)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,))
                    connections = cur.fetchone()[0]
            finally:
                conn.close()
            samples.append({"t": round(time.monotonic() - started), "rss_mib": process.memory_info().rss / MiB,
                            "fds": process.num_fds(), "pg_connections": connections - 1})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)] + [threading.Thread(target=sampler)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    server.stop()
    every = sorted(x for values in latencies.values() for x in values)

    def quantile(values: list[float], q: float) -> float:
        return round(statistics.quantiles(values, n=100)[q - 1] * 1000, 1) if len(values) > 1 else 0.0
    return {
        "seconds": seconds, "workers": workers, "requests": len(every), "errors": errors,
        "p50_ms": quantile(every, 50), "p99_ms": quantile(every, 99),
        "by_kind": {kind: {"n": len(v), "p50_ms": quantile(sorted(v), 50), "p99_ms": quantile(sorted(v), 99)}
                    for kind, v in latencies.items()},
        "samples": samples,
    }
