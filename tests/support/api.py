"""Small helpers shared by the tests/test_api_*.py files: they speak HTTP to the real app."""
from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any, AsyncIterator

import aiohttp
import boto3
from botocore.config import Config

from support.data import auth


async def create_bucket(client, user: str = "alice", *, bucket_type: str = "training-data", name: str = "",
                        public: bool = False, groups: tuple[str, ...] = ()) -> str:
    params = {"type": bucket_type, "name": name}
    if public:
        params["public"] = "true"
    response = await client.post("/api/v1/objects", params=params, headers=auth(user, groups))
    assert response.status == 200, await response.text()
    return (await response.json())["id"]


async def put_raw(client, bucket_id: str, key: str, data: bytes = b"test-data", user: str | None = "alice",
                  content_type: str | None = None, groups: tuple[str, ...] = ()) -> aiohttp.ClientResponse:
    headers = auth(user, groups)
    if content_type:
        headers["Content-Type"] = content_type
    return await client.put(f"/api/v1/objects/{bucket_id}/{key}", data=data, headers=headers)


async def put_form(client, bucket_id: str, key: str, data: bytes = b"test-data", filename: str | None = None,
                   user: str | None = "alice", content_type: str | None = None) -> aiohttp.ClientResponse:
    form = aiohttp.FormData(quote_fields=False)  # raw UTF-8 filenames, as browsers and requests send them
    form.add_field("file", data, filename=filename, content_type=content_type)
    return await client.put(f"/api/v1/objects/{bucket_id}/{key}", data=form, headers=auth(user))


async def grant(client, bucket_id: str, grantee_type: str, grantee: str, permission: str,
                user: str = "alice") -> None:
    response = await client.put(f"/api/v1/objects/{bucket_id}?permissions", headers=auth(user),
                                json={"granteeType": grantee_type, "grantee": grantee, "permission": permission})
    assert response.status == 200, await response.text()


async def file_keys(client, bucket_id: str, user: str = "alice") -> list[str]:
    """Every key of a bucket, through the API's recursive listing."""
    keys: list[str] = []
    params: dict[str, str] = {"recursive": "true"}
    while True:
        response = await client.get(f"/api/v1/objects/{bucket_id}/", params=params, headers=auth(user))
        assert response.status == 200, await response.text()
        page = await response.json()
        keys += [item["Key"] for item in page["Contents"] or []]
        if not page["IsTruncated"]:
            return keys
        params["ContinuationToken"] = page["NextContinuationToken"]


async def raw_request(client, method: str, raw_target: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send exactly this request target over a socket: HTTP clients normalise '..' and '//' away."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = [f"{method} {raw_target} HTTP/1.1", f"Host: {client.host}", "Connection: close",
            f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    response_headers = {}
    for line in header_block.split(b"\r\n"):
        name, _, value = line.decode("latin-1").partition(":")
        response_headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), response_headers, payload


def s3_client(s3_backend: dict[str, str]):
    """A boto3 client straight to SeaweedFS, to check what really is (not) stored."""
    return boto3.client("s3", endpoint_url=s3_backend["endpoint"], aws_access_key_id=s3_backend["access_key"],
                        aws_secret_access_key=s3_backend["secret_key"], region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}))


def s3_keys(s3, settings, bucket_id: str) -> list[str]:
    """Every S3 key under a SAGE bucket's prefix (and nothing else)."""
    from sagestore.storage import BucketMapping
    mapping = BucketMapping(settings.s3_bucket_prefix, settings.s3_bucket_count, settings.s3_single_bucket)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=mapping.s3_bucket(bucket_id),
                                                              Prefix=f"{bucket_id}/"):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def s3_location(settings, bucket_id: str, key: str) -> tuple[str, str]:
    from sagestore.storage import BucketMapping
    mapping = BucketMapping(settings.s3_bucket_prefix, settings.s3_bucket_count, settings.s3_single_bucket)
    return mapping.s3_bucket(bucket_id), f"{bucket_id}/{key}"


class SeededReader:
    """A read()-able file of `size` deterministic pseudo-random bytes, made as it is read
    (never held whole); sha256 covers everything handed out so far."""

    def __init__(self, seed: int, size: int) -> None:
        self.rng = random.Random(seed)
        self.remaining = size
        self.digest = hashlib.sha256()

    @property
    def len(self) -> int:
        """What is left to read: requests and requests-toolbelt take the length from here."""
        return self.remaining

    def read(self, size: int = -1) -> bytes:
        size = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self.rng.randbytes(size)
        self.remaining -= size
        self.digest.update(data)
        return data

    def __iter__(self):
        while block := self.read(1 << 20):
            yield block


async def agen(blocks) -> AsyncIterator[bytes]:
    for block in blocks:
        yield block


def grants_in_db(database_url: str, bucket_id: str) -> list[tuple[str, str, str]]:
    import psycopg2
    with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
        cur.execute("SELECT grantee_type, grantee, permission FROM grants WHERE bucket_id = %s ORDER BY 1, 2, 3",
                    (bucket_id,))
        rows = cur.fetchall()
    connection.close()
    return rows


def bucket_in_db(database_url: str, bucket_id: str) -> dict[str, Any] | None:
    import psycopg2
    import psycopg2.extras
    with psycopg2.connect(database_url, cursor_factory=psycopg2.extras.RealDictCursor) as connection, \
            connection.cursor() as cur:
        cur.execute("SELECT id::text, name, type, owner, archived FROM buckets WHERE id = %s", (bucket_id,))
        row = cur.fetchone()
    connection.close()
    return row
