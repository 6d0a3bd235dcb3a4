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
from conftest import auth, create_bucket_row

from sagestore.storage import BucketMapping

MiB = 2**20


def test_takeover_of_a_stalled_append_across_two_instances(server_process, base_settings):
    first, second = server_process(), server_process()
    bucket_id = create_bucket_row(base_settings.database_url)
    # requests (http.client) would take a 104 for the final answer: no interop version, no 104
    headers = auth("alice")
    response = requests.post(f"{first.url}/api/v1/uploads/?bucket={bucket_id}&key=two/takeover.bin",
                             headers={**headers, "Upload-Complete": "?0"}, timeout=30)
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    data = os.urandom(20 * MiB)

    # a PATCH on the first instance whose client goes silent after 7 MiB (a full part is already stored)
    port = urlsplit(first.url).port
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall((f"PATCH {location} HTTP/1.1\r\nHost: a\r\nAuthorization: sage user:alice\r\n"
                     f"Upload-Draft-Interop-Version: 8\r\nContent-Type: application/partial-upload\r\n"
                     f"Upload-Offset: 0\r\nUpload-Complete: ?1\r\nContent-Length: {len(data)}\r\n\r\n").encode()
                    + data[:7 * MiB])
    stalled_status = requests.head(f"{second.url}{location}", headers=headers, timeout=30)
    # the second instance fenced the stalled writer off: its bytes were never acknowledged
    assert stalled_status.status_code == 204 and stalled_status.headers["Upload-Offset"] == "0"
    response = requests.patch(f"{second.url}{location}", data=data, timeout=60, headers={
        **headers, "Content-Type": "application/partial-upload", "Upload-Offset": "0", "Upload-Complete": "?1"})
    assert response.status_code == 201, response.text
    assert response.json()["size"] == len(data)
    # the old client wakes up and sends the rest: it is refused, and nothing it sent is kept
    stalled.settimeout(60)
    try:
        stalled.sendall(data[7 * MiB:])
        answer = stalled.recv(4096)
    except OSError:
        answer = b""
    finally:
        stalled.close()
    assert answer == b"" or answer.split(b" ")[1] in (b"400", b"404", b"409"), answer[:200]
    for server in (first, second):
        response = requests.head(f"{server.url}{location}", headers=headers, timeout=30)
        assert response.headers["Upload-Complete"] == "?1" and response.headers["Upload-Offset"] == str(len(data))

    mapping = BucketMapping(base_settings.s3_bucket_prefix, base_settings.s3_bucket_count,
                            base_settings.s3_single_bucket)
    target = mapping.object(bucket_id, "two/takeover.bin")
    s3 = boto3.client("s3", endpoint_url=base_settings.s3_endpoint, aws_access_key_id=base_settings.s3_access_key,
                      aws_secret_access_key=base_settings.s3_secret_key, region_name=base_settings.s3_region,
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    body = s3.get_object(Bucket=target.bucket, Key=target.key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
