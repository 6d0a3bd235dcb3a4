"""A large file through a real `sagestore serve`: once as a multipart form (requests-toolbelt,
as sage-storage-py sends it) and once as a raw body, each downloaded back with a matching
sha256. Neither side ever holds the file: the client makes it from a seeded stream, and the
server's RSS (sampled with psutil) grows by less than half the file while it passes, so a
server that held the file, or most of it, fails.

The size is 256 MiB by default: its bound on memory already tells a streaming server from one
that buffers; the 1 GiB run is an opt-in (docs/testing.md):
    SAGESTORE_TEST_LARGE_MIB=1024 scripts/test tests/test_api_large.py tests/test_signed_urls_large.py -s
Run with -s to see the figures (MB/s up and down, RSS growth)."""
from __future__ import annotations

import hashlib
import os
import threading
import time

import psutil
import pytest
import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder

from support.api import SeededReader, s3_client, s3_location

MIB = 2**20
SIZE = int(os.environ.get("SAGESTORE_TEST_LARGE_MIB", "256")) * MIB
# part size (16 MiB) x (parts in flight (4) + 1) and the reading buffers, with room to spare
# under a loaded machine; a server that buffers the file grows by at least its size
GROWTH_LIMIT = min(192 * MIB, SIZE // 2)
RSS_LIMIT = 512 * MIB  # the interpreter and the buffers, whatever the size


class PeakRss:
    """Samples a process's resident set size in a thread while the block runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = self.peak = self.process.memory_info().rss
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

    @property
    def growth(self) -> int:
        return self.peak - self.before


def assert_flat(*samples: PeakRss) -> None:
    """The server's memory did not follow the file: it grew by less than half of it (and by no
    more than its buffers need), and stayed under the absolute limit."""
    figures = [(round(sample.growth / MIB), round(sample.peak / MIB)) for sample in samples]
    assert all(sample.growth < GROWTH_LIMIT and sample.peak < RSS_LIMIT for sample in samples), (
        f"(growth, peak) MiB: {figures}; limits {GROWTH_LIMIT // MIB} and {RSS_LIMIT // MIB} MiB "
        f"for a {SIZE // MIB} MiB file")


def download_sha256(url: str, headers: dict[str, str], expected_size: int = SIZE) -> tuple[str, int, float]:
    digest, size = hashlib.sha256(), 0
    started = time.monotonic()
    with requests.get(url, headers=headers, stream=True) as response:
        assert response.status_code == 200
        assert response.headers["Content-Length"] == str(expected_size)
        for chunk in response.iter_content(chunk_size=MIB):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size, time.monotonic() - started


@pytest.mark.parametrize("shape", ["form", "raw"])
def test_large_file_up_and_down_in_flat_memory(server_process, s3_backend, base_settings, shape):
    server = server_process()
    headers = {"Authorization": "sage user:big"}
    bucket_id = requests.post(f"{server.url}/api/v1/objects", params={"type": "training-data"},
                              headers=headers).json()["id"]
    source = SeededReader(seed=7 if shape == "form" else 8, size=SIZE)
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
    assert head["ContentLength"] == SIZE
    assert head["Metadata"] == {"owner": "big", "sha256": expected}

    with PeakRss(server.process.pid) as download_rss:
        actual, size, download_seconds = download_sha256(f"{server.url}/api/v1/objects/{bucket_id}/big.bin",
                                                         headers)
    assert (actual, size) == (expected, SIZE)

    print(f"\n{SIZE // MIB} MiB {shape}: upload {SIZE / MIB / upload_seconds:.0f} MiB/s ({upload_seconds:.1f} s), "
          f"download {SIZE / MIB / download_seconds:.0f} MiB/s ({download_seconds:.1f} s), server RSS growth "
          f"{upload_rss.growth / MIB:.0f} MiB up / {download_rss.growth / MIB:.0f} MiB down", flush=True)
    assert_flat(upload_rss, download_rss)

    response = requests.delete(f"{server.url}/api/v1/objects/{bucket_id}", headers=headers)
    assert response.json() == {"deleted": [bucket_id]}
