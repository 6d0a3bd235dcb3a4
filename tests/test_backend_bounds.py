"""Backend bounds with real processes: a `sagestore serve` subprocess over its own SeaweedFS and
PostgreSQL, which the tests freeze (SIGSTOP), kill and restart in the middle of a tus upload.
Every request that waits on the missing backend answers 503 JSON with Retry-After (instead of
hanging), /readyz is 503, and once the backend is back the upload resumes and completes with
nothing acknowledged lost and nothing left behind in S3.

The bounds here are the test's own small ones (s3 read timeout 3 s, 2 attempts; db timeout 3 s);
the client waits up to CLIENT_TIMEOUT, far longer than those bounds and far shorter than an
unbounded wait (the old S3 config waited 3 x 120 s)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time

import psutil
import pytest
import requests
from support.chunked import S3View
from support.backends import wait_for
from support.server import ServerProcess
from support.tmp import private_tmp_dir
from support.tus import metadata
from support.data import MiB, create_bucket_row, sha256

from sagestore.config import Settings
from sagestore.embedded import Embedded, _postgres_ready, _s3_ready, _wait_volumes_registered

CLIENT_TIMEOUT = 90
HEADERS = {"Tus-Resumable": "1.0.0", "Authorization": "sage user:alice"}
BOUNDS = {"s3_connect_timeout": 2.0, "s3_read_timeout": 3.0, "s3_max_attempts": 2, "db_timeout": 3.0}


class Backends:
    """Our own embedded SeaweedFS and PostgreSQL, which the tests may stop, freeze and restart."""

    def __init__(self) -> None:
        self.root = private_tmp_dir("sagestore-bounds-")
        self.embedded = Embedded(self.root / "data")
        self.embedded.lock()
        self.start_seaweedfs()
        self.postgres, self.server_database_url = self.embedded.start_postgres()
        wait_for(lambda: _postgres_ready(self.server_database_url))

    def start_seaweedfs(self) -> None:
        self.weed, s3 = self.embedded.start_seaweedfs()
        restart = hasattr(self, "s3")
        if restart:  # the server keeps its endpoint
            assert s3["endpoint"] == self.s3["endpoint"], "SeaweedFS came back on another port"
        wait_for(lambda: _s3_ready(s3["endpoint"], s3["access_key"], s3["secret_key"]))
        asyncio.run(_wait_volumes_registered(self.weed, self.embedded, self.embedded.weed_volumes_on_disk, 60))
        self.s3 = s3
        if restart:
            self.wait_writable()

    def wait_writable(self) -> None:
        """Back means accepting writes: right after a restart SeaweedFS answers ListBuckets while
        its first write can still take 13 s (measured under load), longer than the servers' 3 s
        read timeout here, which rightly answers 503 to that. One small write per S3 bucket the
        servers use, each allowed a minute."""
        s3 = view(self)
        for bucket in s3.mapping.all_s3_buckets():
            s3.client.put_object(Bucket=bucket, Key="probe-after-restart", Body=b"probe")
            s3.client.delete_object(Bucket=bucket, Key="probe-after-restart")

    def restart_postgres(self) -> None:
        self.postgres, url = self.embedded.start_postgres()
        assert url == self.server_database_url  # same port, same password
        wait_for(lambda: _postgres_ready(url))

    def close(self) -> None:
        for child in (self.weed, self.postgres):
            if child.process.poll() is None:
                thaw([psutil.Process(child.process.pid), *psutil.Process(child.process.pid).children()])
        # its data is deleted next, and a SeaweedFS restarted after a kill -9 sometimes takes more
        # than the 20 s grace to stop (under load): no shutdown of it is tested here
        self.weed.process.kill()
        self.embedded.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def backends():
    backends = Backends()
    yield backends
    backends.close()


def server_settings(backends, **overrides) -> Settings:
    """A server on the module's own backends, with the test's small bounds unless overridden."""
    return Settings(data_dir=str(backends.root / "data"), auth_mode="noauth",
                    database_url=backends.server_database_url, s3_endpoint=backends.s3["endpoint"],
                    s3_access_key=backends.s3["access_key"], s3_secret_key=backends.s3["secret_key"],
                    s3_bucket_count=2, s3_part_size=5 * MiB, reaper_interval=0, **{**BOUNDS, **overrides})


@pytest.fixture
def server(backends):
    process = ServerProcess(server_settings(backends)).start()
    yield process
    process.stop()


def freeze(pid: int) -> list[psutil.Process]:
    """SIGSTOP a server and every process it forked (PostgreSQL serves each connection from a
    backend process of its own: freezing the postmaster alone freezes nothing in use)."""
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    return processes


def thaw(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGCONT)


def view(backends) -> S3View:
    return S3View(Settings(s3_endpoint=backends.s3["endpoint"], s3_access_key=backends.s3["access_key"],
                           s3_secret_key=backends.s3["secret_key"], s3_bucket_count=2))


def create_upload(server, bucket_id: str, key: str, length: int) -> str:
    response = requests.post(f"{server.url}/api/v1/tus/", timeout=CLIENT_TIMEOUT, headers={
        **HEADERS, "Upload-Length": str(length), "Upload-Metadata": metadata(bucket=bucket_id, key=key)})
    assert response.status_code == 201, response.text
    return server.url + response.headers["Location"]


def patch(url: str, offset: int, body: bytes) -> requests.Response:
    return requests.patch(url, data=body, timeout=CLIENT_TIMEOUT, headers={
        **HEADERS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})


def offset_of(url: str) -> int:
    response = requests.head(url, headers=HEADERS, timeout=CLIENT_TIMEOUT)
    assert response.status_code in (200, 204), response.status_code
    return int(response.headers["Upload-Offset"])


def assert_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    assert int(response.headers["Retry-After"]) > 0
    if response.request.method != "HEAD":
        assert "error" in response.json()


def assert_not_ready(server) -> None:
    response = requests.get(f"{server.url}/readyz", timeout=CLIENT_TIMEOUT)
    assert response.status_code == 503 and response.json()["status"] == "unavailable"


def finish(url: str, data: bytes, acknowledged: int) -> None:
    """Resume from the server's offset (never below what it acknowledged) and send the rest."""
    offset = offset_of(url)
    assert acknowledged <= offset <= len(data)
    while offset < len(data):
        response = patch(url, offset, data[offset:offset + 6 * MiB])
        assert response.status_code == 204, (response.status_code, response.text)
        offset = int(response.headers["Upload-Offset"])


def assert_complete_and_clean(backends, bucket_id: str, key: str, upload_id: str, data: bytes) -> None:
    s3 = view(backends)
    assert sha256(s3.object(bucket_id, key)) == sha256(data)
    assert s3.multipart_uploads(bucket_id) == [] and s3.multipart_uploads(bucket_id, upload_id) == []
    assert s3.staging_keys(bucket_id, upload_id) == []


def test_s3_frozen_then_killed_mid_upload(backends, server):
    bucket_id = create_bucket_row(backends.server_database_url)
    data = os.urandom(23 * MiB)
    url = create_upload(server, bucket_id, "frozen.bin", len(data))
    upload_id = url.rsplit("/", 1)[1]
    response = patch(url, 0, data[:6 * MiB])  # one 5 MiB part and a staged 1 MiB tail
    assert response.status_code == 204
    acknowledged = int(response.headers["Upload-Offset"])

    os.kill(backends.weed.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert_unavailable(patch(url, acknowledged, data[acknowledged:acknowledged + 2 * MiB]))
        print(f"frozen S3: PATCH answered 503 after {time.monotonic() - started:.1f}s")
        # a part-sized body: the part sent to the frozen S3 is given up (unacknowledged bytes)
        assert_unavailable(patch(url, acknowledged, data[acknowledged:acknowledged + 6 * MiB]))
        assert_not_ready(server)
    finally:
        os.kill(backends.weed.process.pid, signal.SIGCONT)
    offset = offset_of(url)
    assert offset == acknowledged  # nothing of the refused requests counts
    response = patch(url, offset, data[offset:12 * MiB])
    assert response.status_code == 204, response.text
    acknowledged = int(response.headers["Upload-Offset"])
    assert acknowledged == 12 * MiB

    backends.weed.process.kill()
    backends.weed.process.wait()
    assert_unavailable(patch(url, acknowledged, data[acknowledged:acknowledged + 3 * MiB]))
    assert_not_ready(server)
    backends.start_seaweedfs()
    finish(url, data, acknowledged)
    assert_complete_and_clean(backends, bucket_id, "frozen.bin", upload_id, data)
    assert requests.get(f"{server.url}/readyz", timeout=CLIENT_TIMEOUT).status_code == 200


def test_import_waits_10_s_then_answers_202_and_finishes_once_s3_is_back(backends):
    """import_upload without `Prefer` waits up to 10 s for the publication, then answers 202 with a
    status URL; the import goes on and the status URL reports it published. S3 is frozen during
    the wait, with a read timeout longer than it, so the copy is surely still running at 10 s."""
    server = ServerProcess(server_settings(backends, s3_read_timeout=30.0)).start()
    try:
        bucket_id = create_bucket_row(backends.server_database_url)
        data = os.urandom(6 * MiB + 7)
        response = requests.put(f"{server.url}/api/v1/upload", params={"bucket_id": bucket_id, "key": "slow.bin"},
                                data=data, headers={"Authorization": "sage user:alice"}, timeout=CLIENT_TIMEOUT)
        assert response.status_code in (200, 201), response.text
        upload_id = response.json()["upload_id"]
        frozen = freeze(backends.weed.process.pid)
        try:
            started = time.monotonic()
            response = requests.post(f"{server.url}/api/v1/import_upload", timeout=CLIENT_TIMEOUT,
                                     json={"upload_id": upload_id, "sha256": sha256(data)},
                                     headers={"Authorization": "sage user:alice"})
            waited = time.monotonic() - started
        finally:
            thaw(frozen)
        assert response.status_code == 202, response.text
        assert waited >= 10.0  # the documented wait came first (a lower bound, not a speed)
        body = response.json()
        assert body["status"] == "running" and response.headers["Location"] == body["status_url"]
        assert response.headers["Retry-After"] == "1"
        deadline = time.monotonic() + CLIENT_TIMEOUT
        while True:
            status = requests.get(server.url + body["status_url"], headers={"Authorization": "sage user:alice"},
                                  timeout=CLIENT_TIMEOUT)
            if status.status_code != 202 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status.status_code == 200, status.text
        assert status.json()["sha256"] == sha256(data) and status.json()["size"] == len(data)
        assert view(backends).object(bucket_id, "slow.bin") == data
    finally:
        server.stop()


def test_postgres_frozen_then_stopped_and_restarted_mid_upload(backends, server):
    bucket_id = create_bucket_row(backends.server_database_url)
    data = os.urandom(17 * MiB)
    url = create_upload(server, bucket_id, "pg.bin", len(data))
    upload_id = url.rsplit("/", 1)[1]
    response = patch(url, 0, data[:7 * MiB])
    assert response.status_code == 204
    acknowledged = int(response.headers["Upload-Offset"])

    frozen = freeze(backends.postgres.process.pid)
    try:
        started = time.monotonic()
        assert_unavailable(patch(url, acknowledged, data[acknowledged:acknowledged + 2 * MiB]))
        print(f"frozen PostgreSQL: PATCH answered 503 after {time.monotonic() - started:.1f}s")
        assert_unavailable(requests.head(url, headers=HEADERS, timeout=CLIENT_TIMEOUT))
        assert_not_ready(server)
    finally:
        thaw(frozen)
    acknowledged = max(acknowledged, offset_of(url))

    backends.postgres.stop()
    assert_unavailable(patch(url, acknowledged, data[acknowledged:acknowledged + 2 * MiB]))
    assert_not_ready(server)
    backends.restart_postgres()
    finish(url, data, acknowledged)
    assert_complete_and_clean(backends, bucket_id, "pg.bin", upload_id, data)
