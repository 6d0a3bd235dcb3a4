"""Two real server processes on one PostgreSQL and one SeaweedFS, with the parts of one
multipart upload alternating between them."""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import boto3
import requests
from botocore.config import Config

from support.data import auth, create_bucket_row
from sagestore.storage import BucketMapping

MiB = 2**20


def test_two_servers_alternate_parts_of_one_upload(server_process, base_settings):
    first, second = server_process(), server_process()
    servers = [first, second]
    bucket_id = create_bucket_row(base_settings.database_url, "alice")
    headers = auth("alice")
    response = requests.post(f"{first.url}/api/v1/multipart/", headers=headers, json={
        "object_type": "model_version", "object_id": bucket_id, "key": "shared/file.bin"}, timeout=30)
    assert response.status_code == 201, response.text
    upload_id = response.json()["upload_id"]
    data = os.urandom(23 * MiB)
    chunks = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]

    def put(number: int) -> dict:
        server = servers[(number - 1) % 2]
        result = requests.put(f"{server.url}/api/v1/multipart/{upload_id}/parts/{number}", data=chunks[number - 1],
                              headers=headers, timeout=60)
        assert result.status_code == 200, result.text
        return result.json()

    # odd parts through the first server, even ones through the second, two at a time
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(put, range(1, len(chunks) + 1)))
    for server in servers:  # both see the same state
        status = requests.get(f"{server.url}/api/v1/multipart/{upload_id}/", headers=headers, timeout=30).json()
        assert [p["part_number"] for p in status["parts"]] == [1, 2, 3, 4, 5]
        assert status["received"] == len(data)
    # a part re-sent to the other server replaces it
    put_again = requests.put(f"{second.url}/api/v1/multipart/{upload_id}/parts/1", data=chunks[0], headers=headers,
                             timeout=60)
    assert put_again.status_code == 200
    parts[0] = put_again.json()
    response = requests.post(f"{second.url}/api/v1/multipart/complete/", headers=headers, json={
        "object_type": "model_version", "object_id": bucket_id, "upload_id": upload_id,
        "parts": [{"part_number": p["part_number"], "etag": p["etag"]} for p in parts]}, timeout=60)
    assert response.status_code == 201, response.text
    # completing again through the first server gives the same answer
    again = requests.post(f"{first.url}/api/v1/multipart/complete/", headers=headers, json={
        "object_type": "model_version", "object_id": bucket_id, "upload_id": upload_id,
        "parts": [{"part_number": p["part_number"], "etag": p["etag"]} for p in parts]}, timeout=60)
    assert again.status_code == 201 and again.json() == response.json()

    s3 = boto3.client("s3", endpoint_url=base_settings.s3_endpoint, aws_access_key_id=base_settings.s3_access_key,
                      aws_secret_access_key=base_settings.s3_secret_key, region_name=base_settings.s3_region,
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    location = BucketMapping(base_settings.s3_bucket_prefix, base_settings.s3_bucket_count).object(
        bucket_id, "shared/file.bin")
    body = s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
