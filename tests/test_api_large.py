"""1 GiB through a real `sagestore serve`: once as a multipart form (requests-toolbelt, as
sage-storage-py sends it) and once as a raw body, each downloaded back with a matching
sha256. Neither side ever holds the file: the client makes it from a seeded stream, and
the server's peak RSS (sampled with psutil) stays far below the file size.

Run with -s to see the figures (MB/s up and down, peak RSS)."""
from __future__ import annotations

import hashlib
import threading
import time

import psutil
import pytest
import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder

from api_helpers import SeededReader, s3_client, s3_location

GIB = 2**30
MIB = 2**20
RSS_LIMIT = 512 * MIB  # part size (16 MiB) x parts in flight (4) plus the interpreter, with room to spare


class PeakRss:
    """Samples a process's resident set size in a thread while the block runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.stopping.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> "PeakRss":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()


def download_sha256(url: str, headers: dict[str, str]) -> tuple[str, int, float]:
    digest, size = hashlib.sha256(), 0
    started = time.monotonic()
    with requests.get(url, headers=headers, stream=True) as response:
        assert response.status_code == 200
        assert response.headers["Content-Length"] == str(GIB)
        for chunk in response.iter_content(chunk_size=MIB):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size, time.monotonic() - started


@pytest.mark.parametrize("shape", ["form", "raw"])
def test_one_gib_up_and_down(server_process, s3_backend, base_settings, shape):
    server = server_process()
    headers = {"Authorization": "sage user:big"}
    bucket_id = requests.post(f"{server.url}/api/v1/objects", params={"type": "training-data"},
                              headers=headers).json()["id"]
    source = SeededReader(seed=7 if shape == "form" else 8, size=GIB)
    with PeakRss(server.process.pid) as upload_rss:
        started = time.monotonic()
        if shape == "form":
            encoder = MultipartEncoder(fields={"file": ("big.bin", source, "application/octet-stream")})
            response = requests.put(f"{server.url}/api/v1/objects/{bucket_id}/", data=encoder,
                                    headers={**headers, "Content-Type": encoder.content_type})
        else:
            response = requests.put(f"{server.url}/api/v1/objects/{bucket_id}/big.bin", data=source,
                                    headers={**headers, "Content-Type": "application/octet-stream"})
        upload_seconds = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json() == {"bucket-id": bucket_id, "key": "big.bin"}
    assert source.remaining == 0
    expected = source.digest.hexdigest()

    s3_bucket, s3_key = s3_location(base_settings, bucket_id, "big.bin")
    head = s3_client(s3_backend).head_object(Bucket=s3_bucket, Key=s3_key)
    assert head["ContentLength"] == GIB
    assert head["Metadata"] == {"owner": "big", "sha256": expected}

    with PeakRss(server.process.pid) as download_rss:
        actual, size, download_seconds = download_sha256(f"{server.url}/api/v1/objects/{bucket_id}/big.bin",
                                                         headers)
    assert (actual, size) == (expected, GIB)

    print(f"\n1 GiB {shape}: upload {GIB / MIB / upload_seconds:.0f} MiB/s ({upload_seconds:.1f} s), "
          f"download {GIB / MIB / download_seconds:.0f} MiB/s ({download_seconds:.1f} s), server peak RSS "
          f"{upload_rss.peak / MIB:.0f} MiB up / {download_rss.peak / MIB:.0f} MiB down", flush=True)
    assert upload_rss.peak < RSS_LIMIT and download_rss.peak < RSS_LIMIT

    response = requests.delete(f"{server.url}/api/v1/objects/{bucket_id}", headers=headers)
    assert response.json() == {"deleted": [bucket_id]}
