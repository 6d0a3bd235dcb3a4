"""Scale-out: two `sagestore serve` instances behind HAProxy (Debian's haproxy) on the suite's
PostgreSQL and SeaweedFS. tus and session uploads go through the load balancer while one instance
is killed with SIGKILL and restarted; clients retry (re-reading the offset or the stored chunks)
and every upload completes with its sha256 intact. Skipped when haproxy is not installed."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
import requests
from chunked_helpers import MiB, S3View, make_bucket_sync, sha256
from conftest import ServerProcess, auth
from tus_helpers import metadata

from sagestore.embedded import free_port

HAPROXY = shutil.which("haproxy")
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="needs haproxy (apt-get install haproxy)")
ALICE = auth("alice")
TUS = {"Tus-Resumable": "1.0.0"}
RETRYABLE = (502, 503, 504)


@pytest.fixture
def balanced(base_settings):
    servers = [ServerProcess(base_settings.replace(s3_part_size=5 * MiB)).start() for _ in range(2)]
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
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.1)
    yield url, servers
    haproxy.terminate()
    haproxy.wait(10)
    os.unlink(config.name)
    for server in servers:
        server.stop()


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


def test_uploads_through_haproxy_while_an_instance_is_killed(balanced, base_settings):
    url, servers = balanced
    bucket_id = make_bucket_sync(base_settings.database_url)
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
    view = S3View(base_settings)
    for key, data in files.items():
        assert sha256(view.object(bucket_id, key)) == sha256(data), key
