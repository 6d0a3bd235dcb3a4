"""Shared helpers of the offset-chunk, session, reaper and durability tests (real PostgreSQL and
SeaweedFS; nothing of ours is mocked)."""
from __future__ import annotations

import socket
import struct
import time

import boto3
from botocore.config import Config

from sagestore.storage import STAGING_PREFIX, BucketMapping

MiB = 2**20


class S3View:
    """A plain boto3 client on the test SeaweedFS, to look at what is really stored."""

    def __init__(self, settings) -> None:
        self.client = boto3.client(
            "s3", endpoint_url=settings.s3_endpoint, aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.s3_secret_key, region_name=settings.s3_region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        self.mapping = BucketMapping(settings.s3_bucket_prefix, settings.s3_bucket_count, settings.s3_single_bucket)

    def object(self, bucket_id: str, key: str) -> bytes | None:
        location = self.mapping.object(bucket_id, key)
        try:
            return self.client.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def multipart_uploads(self, bucket_id: str, upload_id: str | None = None) -> list[str]:
        """S3 multipart uploads (ListMultipartUploads) of a SAGE bucket's keys, or of one upload's staging."""
        bucket = self.mapping.s3_bucket(bucket_id)
        prefix = f"{STAGING_PREFIX}uploads/{upload_id}/" if upload_id else f"{bucket_id}/"
        listed = self.client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return [item["UploadId"] for item in listed.get("Uploads", [])]

    def staging_keys(self, bucket_id: str, upload_id: str) -> list[str]:
        bucket = self.mapping.s3_bucket(bucket_id)
        listed = self.client.list_objects_v2(Bucket=bucket, Prefix=f"{STAGING_PREFIX}uploads/{upload_id}/")
        return [item["Key"] for item in listed.get("Contents", [])]


def send_partial_request(port: int, method: str, path: str, headers: dict[str, str], announced: int,
                         body: bytes, *, reset: bool = True) -> None:
    """A client that announces `announced` bytes, sends `body` and goes away: with reset=True an
    abrupt close (RST, as a killed process), otherwise a clean close after the whole request."""
    sock = socket.create_connection(("127.0.0.1", port))
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {announced}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    time.sleep(0.3)
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
