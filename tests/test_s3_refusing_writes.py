"""S3 refusing writes: a SeaweedFS bucket over its quota (`weed shell` s3.bucket.quota and
s3.bucket.quota.enforce -apply make it read only), on a SeaweedFS of this test's own so nothing
else is affected, under a `sagestore serve` subprocess on the suite's PostgreSQL.

SeaweedFS refuses every write to a read-only bucket (PutObject, CreateMultipartUpload, UploadPart)
with a bare 500 InternalError, the answer it gives for any internal fault; sagestore answers a
refused write 503 JSON with Retry-After (docs/operations.md, "S3 refusing writes"). Checked on a tus PATCH, a
raw PUT and a session chunk: a clean 503 within the client's timeout, nothing acknowledged (the
offset and the received chunks unchanged, no object in S3 or in the API), and once the quota is
lifted every upload resumes and completes with its sha256."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import requests
from support.chunked import S3View
from support.backends import wait_for
from support.server import ServerProcess
from support.tmp import private_tmp_dir
from support.premises import eventually_sync
from support.data import MiB, create_bucket_row, sha256
from test_backend_bounds import BOUNDS, CLIENT_TIMEOUT, HEADERS, assert_unavailable, create_upload, offset_of, patch

from sagestore.config import Settings
from sagestore.embedded import Embedded, _s3_ready

BUCKET = "sagestore-quota"
ALICE = {"Authorization": HEADERS["Authorization"]}


class QuotaSeaweedFS:
    """Our own SeaweedFS whose one S3 bucket can be put over a 1 MB quota and back."""

    def __init__(self) -> None:
        self.root = private_tmp_dir("sagestore-quota-")
        self.embedded = Embedded(self.root / "data")
        self.embedded.lock()
        self.weed, self.s3 = self.embedded.start_seaweedfs()
        wait_for(lambda: _s3_ready(self.s3["endpoint"], self.s3["access_key"], self.s3["secret_key"]))
        self.settings = Settings(s3_endpoint=self.s3["endpoint"], s3_access_key=self.s3["access_key"],
                                 s3_secret_key=self.s3["secret_key"], s3_single_bucket=BUCKET)
        self.view = S3View(self.settings)

    def shell(self, command: str) -> str:
        """One `weed shell` command as Embedded.weed_shell runs it; its stdout and stderr (where
        the quota commands report)."""
        embedded = self.embedded
        result = subprocess.run([embedded.weed, "shell", f"-master={embedded.weed_master}"], input=command + "\n",
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
                                cwd=embedded.weed_config_dir,
                                env={key: value for key, value in os.environ.items() if not key.startswith("WEED_")})
        return result.stdout

    def probe_write(self) -> bool:
        """Does S3 itself take a write into the bucket right now?"""
        try:
            self.view.client.put_object(Bucket=BUCKET, Key="probe/write", Body=b"probe")
            return True
        except self.view.client.exceptions.ClientError:
            return False

    def refuse_writes(self) -> None:
        """A 1 MB quota, enforced: the bucket is read only once the master has counted its bytes
        (volume sizes reach it with the volume servers' heartbeats, a few seconds late)."""
        assert "updated quota" in self.shell(f"s3.bucket.quota -name={BUCKET} -op=set -sizeMB=1")
        eventually_sync(lambda: "read only" in self.shell("s3.bucket.quota.enforce -apply"),
                        "the master counts the bucket over its quota and makes it read only", interval=1)
        eventually_sync(lambda: not self.probe_write(), "S3 refuses a write into the bucket")

    def accept_writes(self) -> None:
        self.shell(f"s3.bucket.quota -name={BUCKET} -op=remove")
        eventually_sync(self.probe_write, "S3 takes writes into the bucket again")

    def close(self) -> None:
        self.embedded.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def seaweedfs():
    backend = QuotaSeaweedFS()
    yield backend
    backend.close()


@pytest.fixture
def server(seaweedfs, base_settings):
    settings = base_settings.replace(s3_endpoint=seaweedfs.s3["endpoint"], s3_access_key=seaweedfs.s3["access_key"],
                                     s3_secret_key=seaweedfs.s3["secret_key"], s3_single_bucket=BUCKET,
                                     s3_part_size=5 * MiB, **BOUNDS)
    process = ServerProcess(settings).start()
    yield process
    process.stop()


def assert_refused(response: requests.Response) -> None:
    assert_unavailable(response)  # 503 JSON with Retry-After
    assert "storage" in response.json()["error"]


def test_writes_refused_by_an_s3_quota_then_resumed(seaweedfs, server, base_settings):
    bucket_id = create_bucket_row(base_settings.database_url)
    tus_data, session_data, raw_data = os.urandom(13 * MiB), os.urandom(12 * MiB), os.urandom(2 * MiB + 7)

    # before the quota: a tus upload with one part and a staged tail, a session with its first chunk
    url = create_upload(server, bucket_id, "quota/tus.bin", len(tus_data))
    response = patch(url, 0, tus_data[:6 * MiB])
    assert response.status_code == 204, response.text
    acknowledged = int(response.headers["Upload-Offset"])
    response = requests.post(f"{server.url}/api/v1/attachment/initiate", headers=ALICE, timeout=CLIENT_TIMEOUT, json={
        "bucket_id": bucket_id, "key": "quota/session.bin", "fileName": "s.bin", "fileSize": len(session_data),
        "sha256": sha256(session_data)})
    assert response.status_code in (200, 201), response.text
    session = response.json()
    chunk_size, session_url = session["chunkSize"], f"{server.url}/api/v1/attachment/session/{session['sessionId']}"

    def chunk(number: int) -> requests.Response:
        return requests.put(f"{session_url}/upload/{number}", headers=ALICE, timeout=CLIENT_TIMEOUT,
                            data=session_data[(number - 1) * chunk_size:number * chunk_size])

    assert chunk(1).status_code == 200
    raw_url = f"{server.url}/api/v1/objects/{bucket_id}/quota/raw.bin"

    seaweedfs.refuse_writes()
    started = time.monotonic()
    # a part-sized PATCH (a part for S3) and a small one (a tail to stage): both refused
    assert_refused(patch(url, acknowledged, tus_data[acknowledged:acknowledged + 6 * MiB]))
    assert_refused(patch(url, acknowledged, tus_data[acknowledged:acknowledged + 100_000]))
    assert offset_of(url) == acknowledged
    assert_refused(chunk(2))
    response = requests.get(session_url, headers=ALICE, timeout=CLIENT_TIMEOUT)
    assert response.json()["receivedChunks"] == [1]
    assert_refused(requests.put(raw_url, data=raw_data, headers=ALICE, timeout=CLIENT_TIMEOUT))
    assert requests.get(raw_url, headers=ALICE, timeout=CLIENT_TIMEOUT).status_code == 404
    assert seaweedfs.view.object(bucket_id, "quota/raw.bin") is None
    assert seaweedfs.view.object(bucket_id, "quota/tus.bin") is None
    elapsed = time.monotonic() - started
    print(f"5 refused writes answered in {elapsed:.1f} s")
    assert elapsed < 5 * CLIENT_TIMEOUT / 2  # each answered, none waited out the client's timeout

    seaweedfs.accept_writes()
    offset = offset_of(url)
    assert offset == acknowledged
    while offset < len(tus_data):
        response = patch(url, offset, tus_data[offset:offset + 6 * MiB])
        assert response.status_code == 204, response.text
        offset = int(response.headers["Upload-Offset"])
    for number in range(2, session["totalChunks"] + 1):
        response = chunk(number)
        assert response.status_code == 200, response.text
    response = requests.post(f"{session_url}/complete", headers=ALICE, timeout=CLIENT_TIMEOUT)
    assert response.status_code in (200, 201), response.text
    assert response.json()["sha256"] == sha256(session_data)
    response = requests.put(raw_url, data=raw_data, headers=ALICE, timeout=CLIENT_TIMEOUT)
    assert response.status_code in (200, 201), response.text
    for key, data in (("quota/tus.bin", tus_data), ("quota/session.bin", session_data), ("quota/raw.bin", raw_data)):
        assert sha256(seaweedfs.view.object(bucket_id, key)) == sha256(data), key
