"""Scale-out: two `sagestore serve` instances behind HAProxy (Debian's haproxy) on the suite's
PostgreSQL, over the suite's SeaweedFS (`weed mini`, one process) and over a SeaweedFS cluster of
separate processes (master, two volume servers, filer, S3 gateway; tests/seaweedfs_cluster.py).
tus and session uploads go through the load balancer while one instance is killed with SIGKILL and
restarted; clients retry (re-reading the offset or the stored chunks) and every upload completes
with its sha256 intact. Skipped when haproxy is not installed."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
import requests
from support.chunked import S3View
from support.server import ServerProcess
from support.tmp import private_tmp_dir
from support.premises import eventually_sync
from support.seaweedfs_cluster import SeaweedCluster
from support.tus import metadata
from support.data import MiB, auth, create_bucket_row, sha256

from sagestore.embedded import free_port

HAPROXY = shutil.which("haproxy")
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="needs haproxy (apt-get install haproxy)")
ALICE = auth("alice")
TUS = {"Tus-Resumable": "1.0.0"}
RETRYABLE = (502, 503, 504)


@contextlib.contextmanager
def load_balanced(settings):
    """Two `sagestore serve` instances on settings behind HAProxy; yields (url, servers)."""
    servers = [ServerProcess(settings.replace(s3_part_size=5 * MiB)).start() for _ in range(2)]
    port = free_port()
    config = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
    config.write(f"""global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    retries 3
    option redispatch
frontend api
    bind 127.0.0.1:{port}
    default_backend sagestore
backend sagestore
    balance roundrobin
    option httpchk GET /readyz
    default-server inter 500ms fall 1 rise 1
""" + "".join(f"    server s{n} 127.0.0.1:{server.port} check\n" for n, server in enumerate(servers)))
    config.close()
    haproxy = subprocess.Popen([HAPROXY, "-f", config.name, "-db"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        yield url, servers
    finally:
        haproxy.terminate()
        haproxy.wait(10)
        os.unlink(config.name)
        for server in servers:
            server.stop()


@pytest.fixture
def balanced(base_settings):
    with load_balanced(base_settings) as balanced:
        yield balanced


@pytest.fixture
def cluster_settings(base_settings):
    """The suite's PostgreSQL, and S3 from a SeaweedFS cluster of separate processes of this test's."""
    root = private_tmp_dir("sagestore-cluster-")
    cluster = SeaweedCluster(root)
    try:
        cluster.start()
        yield base_settings.replace(s3_endpoint=cluster.endpoint, s3_access_key=cluster.access_key,
                                    s3_secret_key=cluster.secret_key, s3_bucket_count=4), cluster
    finally:
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)


def retrying(call):
    """The client's retry loop: connection errors and 502/503/504 are retried after a pause."""
    for _ in range(120):
        try:
            response = call()
            if response.status_code not in RETRYABLE:
                return response
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError("no answer after 60 s of retries")


def tus_upload(url: str, bucket_id: str, key: str, data: bytes) -> None:
    created = retrying(lambda: requests.post(f"{url}/api/v1/tus/", timeout=60, headers={
        **ALICE, **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": metadata(bucket=bucket_id, key=key)}))
    assert created.status_code == 201, created.text
    location = url + created.headers["Location"]
    offset = 0
    while offset < len(data):
        response = retrying(lambda: requests.patch(location, data=data[offset:offset + 2 * MiB], timeout=60, headers={
            **ALICE, **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}))
        if response.status_code in (409, 423):  # a lost answer, or the dead instance's request: re-read
            response = retrying(lambda: requests.head(location, headers={**ALICE, **TUS}, timeout=60))
        assert response.status_code in (200, 204), (response.status_code, response.text)
        offset = int(response.headers["Upload-Offset"])


def session_upload(url: str, bucket_id: str, key: str, data: bytes) -> None:
    initiated = retrying(lambda: requests.post(f"{url}/api/v1/attachment/initiate", headers=ALICE, timeout=60, json={
        "bucket_id": bucket_id, "key": key, "fileName": "f", "fileSize": len(data), "sha256": sha256(data)}))
    assert initiated.status_code in (200, 201), initiated.text
    session = initiated.json()
    base = f"{url}/api/v1/attachment/session/{session['sessionId']}"
    size = session["chunkSize"]
    for number in range(1, session["totalChunks"] + 1):
        chunk = data[(number - 1) * size:number * size]
        response = retrying(lambda: requests.put(f"{base}/upload/{number}", data=chunk, headers=ALICE, timeout=60))
        assert response.status_code in (200, 409, 423), response.text
    received = retrying(lambda: requests.get(base, headers=ALICE, timeout=60)).json()
    assert received["missingChunks"] == [], received
    response = retrying(lambda: requests.post(f"{base}/complete", headers=ALICE, timeout=120))
    assert response.status_code in (200, 201), response.text
    assert response.json()["sha256"] == sha256(data)


def uploads_while_an_instance_is_killed(url: str, servers: list, settings) -> int:
    """3 tus (9 MiB) and 2 session (11 MiB) uploads at once through the load balancer; 2 s in, one
    instance is killed with SIGKILL and restarted 2 s later. 0 failed, every sha256 identical in S3."""
    bucket_id = create_bucket_row(settings.database_url)
    files = {f"lb/tus-{n}.bin": os.urandom(9 * MiB + n) for n in range(3)}
    files.update({f"lb/session-{n}.bin": os.urandom(11 * MiB + n) for n in range(2)})
    failures: list[str] = []

    def upload(key: str) -> None:
        try:
            (tus_upload if "tus" in key else session_upload)(url, bucket_id, key, files[key])
        except Exception as error:  # noqa: BLE001 - collected
            failures.append(f"{key}: {error}")

    threads = [threading.Thread(target=upload, args=(key,)) for key in files]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    servers[0].process.kill()  # SIGKILL in the middle of the uploads
    servers[0].process.wait()
    time.sleep(2.0)
    servers[0].start()
    for thread in threads:
        thread.join(300)
    assert failures == []
    view = S3View(settings)
    for key, data in files.items():
        assert sha256(view.object(bucket_id, key)) == sha256(data), key
    return sum(len(data) for data in files.values())


def test_uploads_through_haproxy_while_an_instance_is_killed(balanced, base_settings):
    url, servers = balanced
    uploads_while_an_instance_is_killed(url, servers, base_settings)


def test_uploads_through_haproxy_over_a_seaweedfs_cluster(cluster_settings):
    settings, cluster = cluster_settings
    with load_balanced(settings) as (url, servers):
        uploaded = uploads_while_an_instance_is_killed(url, servers, settings)
    # the bytes went through the cluster: with replication 001 each volume server holds a copy of
    # every needle, so each one's volumes hold at least what was uploaded; every process is still up
    cluster.check_alive()
    assert len(cluster.data_nodes()) == 2
    eventually_sync(lambda: len(stored := cluster.stored_bytes()) == 2 and min(stored.values()) >= uploaded,
                    f"both volume servers report at least the {uploaded} bytes uploaded", timeout=60, interval=1)
