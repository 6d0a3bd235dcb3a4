"""Takeover across instances: a PATCH stalled on one server process is cut off by a HEAD and a new
PATCH on another process sharing PostgreSQL and SeaweedFS; the old request can commit nothing."""
from __future__ import annotations

import hashlib
import os
import socket
from urllib.parse import urlsplit

import boto3
import requests
from botocore.config import Config
from support.premises import eventually_sync, s3_parts_sync, upload_row_sync
from support.data import auth, create_bucket_row

from sagestore.storage import BucketMapping

MiB = 2**20


def test_takeover_of_a_stalled_append_across_two_instances(server_process, base_settings):
    # 5 MiB parts, so that the 7 MiB the stalled request sends hold one full part
    first, second = server_process(s3_part_size=5 * MiB), server_process(s3_part_size=5 * MiB)
    s3 = boto3.client("s3", endpoint_url=base_settings.s3_endpoint, aws_access_key_id=base_settings.s3_access_key,
                      aws_secret_access_key=base_settings.s3_secret_key, region_name=base_settings.s3_region,
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    bucket_id = create_bucket_row(base_settings.database_url)
    # requests (http.client) would take a 104 for the final answer: no interop version, no 104
    headers = auth("alice")
    response = requests.post(f"{first.url}/api/v1/uploads/?bucket={bucket_id}&key=two/takeover.bin",
                             headers={**headers, "Upload-Complete": "?0"}, timeout=30)
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    upload_id = location.rstrip("/").rsplit("/", 1)[1]
    data = os.urandom(20 * MiB)

    # a PATCH on the first instance whose client goes silent after 7 MiB (a full part is already stored)
    port = urlsplit(first.url).port
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall((f"PATCH {location} HTTP/1.1\r\nHost: a\r\nAuthorization: sage user:alice\r\n"
                     f"Upload-Draft-Interop-Version: 8\r\nContent-Type: application/partial-upload\r\n"
                     f"Upload-Offset: 0\r\nUpload-Complete: ?1\r\nContent-Length: {len(data)}\r\n\r\n").encode()
                    + data[:7 * MiB])
    # the premise: the first instance holds the lease and S3 already has the full first part
    row = eventually_sync(lambda: (row := upload_row_sync(base_settings.database_url, upload_id))["lease_held"]
                          and row, "the stalled PATCH holds the lease")
    eventually_sync(lambda: s3_parts_sync(s3, row).get(1) == 5 * MiB, "S3 lists the stalled PATCH's first part")
    stalled_status = requests.head(f"{second.url}{location}", headers=headers, timeout=60)
    # the second instance fenced the stalled writer off: its bytes were never acknowledged
    assert stalled_status.status_code == 204 and stalled_status.headers["Upload-Offset"] == "0"
    fenced = upload_row_sync(base_settings.database_url, upload_id)
    assert fenced["writer"] is None and fenced["acknowledged_offset"] == 0
    response = requests.patch(f"{second.url}{location}", data=data, timeout=60, headers={
        **headers, "Content-Type": "application/partial-upload", "Upload-Offset": "0", "Upload-Complete": "?1"})
    assert response.status_code == 201, response.text
    assert response.json()["size"] == len(data)
    # the old client wakes up and sends the rest: it is refused (409, its lease is gone), and
    # nothing it sent is kept
    stalled.settimeout(60)
    try:
        stalled.sendall(data[7 * MiB:])
        answer = stalled.recv(4096)
    finally:
        stalled.close()
    assert answer.split(b" ")[1] == b"409", answer[:300]
    for server in (first, second):
        response = requests.head(f"{server.url}{location}", headers=headers, timeout=30)
        assert response.headers["Upload-Complete"] == "?1" and response.headers["Upload-Offset"] == str(len(data))

    mapping = BucketMapping(base_settings.s3_bucket_prefix, base_settings.s3_bucket_count,
                            base_settings.s3_single_bucket)
    target = mapping.object(bucket_id, "two/takeover.bin")
    body = s3.get_object(Bucket=target.bucket, Key=target.key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
