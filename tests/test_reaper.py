"""Expiry and the reaper through both chunked APIs: 410 once expired, 404 once reaped,
`sagestore reap` as a real subprocess, the background reaper of two server processes sharing
the work (FOR UPDATE SKIP LOCKED), metrics, and nothing left in S3."""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid

import psycopg2
import pytest
import requests
from support.chunked import S3View
from support.server import REPO, settings_env
from support.backends import new_database
from support.data import MiB, auth, create_bucket_row, make_bucket

from sagestore.storage import STAGING_PREFIX


@pytest.fixture(scope="module")
def reaper_database_url(database_server_url):
    """The module's own database: `sagestore reap` counts every expired upload in it, and on the
    session's, uploads other tests left with a short TTL could expire in between."""
    with new_database(database_server_url) as url:
        yield url


@pytest.fixture
def settings(base_settings, reaper_database_url):
    return base_settings.replace(database_url=reaper_database_url)


def run_reap(settings, *args: str) -> dict[str, int]:
    result = subprocess.run([sys.executable, "-m", "sagestore", "reap", *args], env=settings_env(settings),
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"uploads=\d+ multipart_uploads=\d+ staging_objects=\d+", line), line
    return {name: int(count) for name, count in (item.split("=") for item in line.split())}


async def test_expired_uploads_answer_410_then_404_once_sagestore_reap_ran(client, settings):
    view = S3View(settings)
    bucket_id = await make_bucket(client)
    alice = auth("alice")
    response = await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": "offset.bin"},
                                data=os.urandom(MiB), headers=alice)
    upload_id = (await response.json())["upload_id"]
    response = await client.post("/api/v1/attachment/initiate", headers=alice, json={
        "bucket_id": bucket_id, "fileName": "session.bin", "fileSize": 6 * MiB})
    session = await response.json()
    session_url = f"/api/v1/attachment/session/{session['sessionId']}"
    assert (await client.put(session_url + "/upload/1", data=os.urandom(6 * MiB), headers=alice)).status == 200
    assert view.staging_keys(bucket_id, upload_id)  # the offset upload's staged tail
    # both multipart uploads are assembled at their targets (neither is staged)
    assert len(view.multipart_uploads(bucket_id)) == 2
    # an S3 multipart upload and a staging object that no upload row knows about
    s3_bucket = view.mapping.s3_bucket(bucket_id)
    orphan = view.client.create_multipart_upload(Bucket=s3_bucket, Key=f"{bucket_id}/orphan.bin")["UploadId"]
    ghost = f"{STAGING_PREFIX}uploads/{uuid.uuid4()}/tail-ghost"
    view.client.put_object(Bucket=s3_bucket, Key=ghost, Body=b"ghost")
    # expired now, whatever the load: their expiry moved to the past once everything is written
    await asyncio.to_thread(run_sql, settings.database_url, "UPDATE uploads SET expires_at = now() - interval '1 second'")

    requests_to_try = [
        ("GET", "/api/v1/upload", {"upload_id": upload_id}, None, None),
        ("PUT", "/api/v1/upload", {"upload_id": upload_id, "offset": str(MiB)}, b"more", None),
        ("POST", "/api/v1/import_upload", None, None, {"upload_id": upload_id}),
        ("GET", session_url, None, None, None),
        ("PUT", session_url + "/upload/1", None, os.urandom(6 * MiB), None),
        ("POST", session_url + "/complete", None, None, None),
        ("POST", session_url + "/abort", None, None, None),
    ]

    async def statuses(user: str) -> list[int]:
        return [(await client.request(method, path, params=params, data=data, json=body,
                                      headers=auth(user))).status
                for method, path, params, data, body in requests_to_try]

    assert await statuses("alice") == [410] * len(requests_to_try)
    assert await statuses("bob") == [404] * len(requests_to_try)  # expired or not, still not bob's

    counts = await asyncio.to_thread(run_reap, settings, "--orphan-grace", "0")
    assert counts["uploads"] >= 2 and counts["multipart_uploads"] >= 1 and counts["staging_objects"] >= 1
    assert await statuses("alice") == [404] * len(requests_to_try)
    assert view.multipart_uploads(bucket_id) == [] and view.multipart_uploads(bucket_id, upload_id) == []
    assert view.staging_keys(bucket_id, upload_id) == [] and view.staging_keys(bucket_id, session["sessionId"]) == []
    assert orphan not in [item["UploadId"] for item in
                          view.client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])]
    assert "Contents" not in view.client.list_objects_v2(Bucket=s3_bucket, Prefix=ghost)
    assert await asyncio.to_thread(run_reap, settings) == {"uploads": 0, "multipart_uploads": 0,
                                                           "staging_objects": 0}


def run_sql(database_url: str, sql: str) -> None:
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cur:
            cur.execute(sql)
    finally:
        connection.close()


def reaped_uploads(server) -> float:
    text = requests.get(server.url + "/metrics", timeout=10).text
    match = re.search(r'^sagestore_uploads_reaped_total\{what="uploads"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_every_instance_reaps_and_each_upload_is_reaped_once(server_process, base_settings, fresh_database_url):
    # Deterministic under any load: a database of its own (on the session's, uploads other tests
    # left to expire would be reaped too and counted), and the uploads expire when all are
    # written (their expiry moved to the past) instead of racing a short TTL against the writes.
    servers = [server_process(reaper_interval=0.3, database_url=fresh_database_url) for _ in range(2)]
    view = S3View(base_settings)
    bucket_id = create_bucket_row(fresh_database_url)
    headers = auth("alice")
    ids = []
    for index in range(6):
        server = servers[index % 2]
        if index % 3:
            response = requests.put(f"{server.url}/api/v1/upload", params={"bucket_id": bucket_id,
                                    "key": f"o{index}.bin"}, data=os.urandom(MiB), headers=headers, timeout=30)
            assert response.status_code == 201, response.text
            ids.append(("offset", response.json()["upload_id"]))
        else:
            response = requests.post(f"{server.url}/api/v1/attachment/initiate", headers=headers, timeout=30, json={
                "bucket_id": bucket_id, "fileName": f"s{index}.bin", "fileSize": 12 * MiB})
            session_id = response.json()["sessionId"]
            response = requests.put(f"{server.url}/api/v1/attachment/session/{session_id}/upload/1",
                                    data=os.urandom(12 * MiB), headers=headers, timeout=30)
            assert response.status_code == 200, response.text
            ids.append(("session", session_id))
    run_sql(fresh_database_url, "UPDATE uploads SET expires_at = now() - interval '1 second'")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answers = set()
        for kind, upload_id in ids:
            url = (f"{servers[0].url}/api/v1/upload?upload_id={upload_id}" if kind == "offset"
                   else f"{servers[1].url}/api/v1/attachment/session/{upload_id}")
            answers.add(requests.get(url, headers=headers, timeout=10).status_code)
        if answers == {404}:
            break
        assert answers <= {200, 404, 410}
        time.sleep(0.3)
    assert answers == {404}
    # each upload was reaped exactly once across both instances (a pass counts at its end, after
    # its sweep of unknown multipart uploads), and S3 holds nothing of them
    while time.monotonic() < deadline + 30 and sum(reaped_uploads(server) for server in servers) < len(ids):
        time.sleep(0.3)
    time.sleep(1)
    assert sum(reaped_uploads(server) for server in servers) == len(ids)
    assert view.multipart_uploads(bucket_id) == []
    for _, upload_id in ids:
        assert view.multipart_uploads(bucket_id, upload_id) == [] and view.staging_keys(bucket_id, upload_id) == []
