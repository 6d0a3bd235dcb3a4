"""tus 1.0 over raw HTTP on real PostgreSQL and SeaweedFS: every status code and header the spec
and issue name, including the corners where tusd and @tus/server deviate (415, 409 with offset,
412, 460, 413)."""
from __future__ import annotations

import base64
import hashlib
import os
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import pytest
from support.apps import AppServer
from support.tus import TUS, metadata, stored, stored_info, tus_headers
from support.data import MiB, auth, make_bucket

from sagestore import context
from sagestore.app import create_app
from sagestore.db import cursor
from sagestore.uploads.checksums import MultiDigest

OCTETS = {"Content-Type": "application/offset+octet-stream"}


async def create(client, bucket_id: str | None, length: int | None = None, key: str = "tus/file.bin",
                 user: str = "alice", **extra) -> str:
    headers = tus_headers(user, **({"Upload-Length": str(length)} if length is not None else
                                   {"Upload-Defer-Length": "1"}))
    if bucket_id is not None:
        headers["Upload-Metadata"] = metadata(bucket=bucket_id, key=key)
    headers.update(extra)
    response = await client.post("/api/v1/tus/", headers=headers)
    assert response.status == 201, await response.text()
    return response.headers["Location"]


async def patch(client, url: str, offset: int, data: bytes, user: str = "alice", **extra):
    return await client.patch(url, data=data, headers=tus_headers(user, **OCTETS, **{"Upload-Offset": str(offset)},
                                                                  **extra))


async def head(client, url: str, user: str = "alice"):
    return await client.head(url, headers=tus_headers(user))


async def test_options_discovery_without_tus_resumable(client):
    response = await client.options("/api/v1/tus/")
    assert response.status == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    extensions = response.headers["Tus-Extension"].split(",")
    assert set(extensions) >= {"creation", "creation-with-upload", "creation-defer-length", "expiration", "checksum",
                               "termination", "concatenation", "concatenation-unfinished"}
    assert int(response.headers["Tus-Max-Size"]) == client.server.app[context.SETTINGS].max_upload_size
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "md5", "sha256", "crc32", "crc32c"}


async def test_missing_or_unsupported_tus_resumable_is_412_with_tus_version(client):
    bucket_id = await make_bucket(client.server.app)
    url = await create(client, bucket_id, 10)
    for headers in ({}, {"Tus-Resumable": "0.2.2"}):
        for method, target in (("POST", "/api/v1/tus/"), ("HEAD", url), ("PATCH", url), ("DELETE", url)):
            response = await client.request(method, target, headers={**auth("alice"), **OCTETS, **headers,
                                                                     "Upload-Offset": "0", "Upload-Length": "5"})
            assert response.status == 412, (method, headers)
            assert response.headers["Tus-Version"] == "1.0.0"
    # nothing was processed: the upload still exists at offset 0
    response = await head(client, url)
    assert response.status == 204 and response.headers["Upload-Offset"] == "0"


async def test_create_head_patch_complete(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    response = await client.post("/api/v1/tus/", headers=tus_headers(**{
        "Upload-Length": "11", "Upload-Metadata": metadata(bucket=bucket_id, filename="../notes.txt",
                                                           filetype="text/plain", empty=None)}))
    assert response.status == 201
    assert response.headers["Tus-Resumable"] == "1.0.0"
    url = response.headers["Location"]
    assert url.startswith("/api/v1/tus/")
    expires = parsedate_to_datetime(response.headers["Upload-Expires"])
    assert expires > datetime.now(timezone.utc)
    response = await head(client, url)
    assert response.status == 204
    assert response.headers["Upload-Offset"] == "0" and response.headers["Upload-Length"] == "11"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Upload-Metadata"] == metadata(bucket=bucket_id, filename="../notes.txt",
                                                           filetype="text/plain", empty=None)
    response = await patch(client, url, 0, b"hello ")
    assert response.status == 204
    assert response.headers["Upload-Offset"] == "6"
    parsedate_to_datetime(response.headers["Upload-Expires"])
    assert await stored(app, bucket_id, "notes.txt") is None  # nothing visible before completion
    response = await patch(client, url, 6, b"world")
    assert response.status == 204 and response.headers["Upload-Offset"] == "11"
    assert await stored(app, bucket_id, "notes.txt") == b"hello world"
    assert (await stored_info(app, bucket_id, "notes.txt")).content_type == "text/plain"
    response = await head(client, url)
    assert response.headers["Upload-Offset"] == "11" and response.headers["Upload-Length"] == "11"
    # a retried last PATCH whose answer was lost is harmless
    response = await patch(client, url, 11, b"")
    assert response.status == 204 and response.headers["Upload-Offset"] == "11"


async def test_upload_is_visible_through_the_multipart_status_endpoint(client):
    bucket_id = await make_bucket(client.server.app)
    url = await create(client, bucket_id, 100)
    assert (await patch(client, url, 0, b"x" * 40)).status == 204
    upload_id = url.rsplit("/", 1)[1]
    response = await client.get(f"/api/v1/multipart/{upload_id}/", headers=auth("alice"))
    assert response.status == 200
    status = await response.json()
    assert status["protocol"] == "tus" and status["offset"] == 40 and status["length"] == 100
    assert status["bucket_id"] == bucket_id and status["key"] == "tus/file.bin"


async def test_bad_targets_are_json_errors(client):
    app = client.server.app
    bucket_id = await make_bucket(app, grants=[("USER", "bob", "READ")])
    cases = [
        (tus_headers(**{"Upload-Length": "5"}), 400),                                        # no metadata
        (tus_headers(**{"Upload-Length": "5", "Upload-Metadata": metadata(key="a")}), 400),  # no bucket
        (tus_headers(**{"Upload-Length": "5", "Upload-Metadata": metadata(bucket="nope", key="a")}), 400),
        (tus_headers(**{"Upload-Length": "5", "Upload-Metadata": metadata(bucket=bucket_id)}), 400),  # no key
        (tus_headers(**{"Upload-Length": "5", "Upload-Metadata": metadata(bucket=bucket_id, key="../x")}), 400),
        (tus_headers(**{"Upload-Length": "5", "Upload-Metadata": "bucket !!!"}), 400),      # not base64
        (tus_headers(**{"Upload-Length": "5", "Upload-Metadata": metadata(bucket=bucket_id, key="a",
                                                                          filetype="not a type")}), 400),
        (tus_headers(**{"Upload-Length": "-1", "Upload-Metadata": metadata(bucket=bucket_id, key="a")}), 400),
        (tus_headers(**{"Upload-Defer-Length": "2", "Upload-Metadata": metadata(bucket=bucket_id, key="a")}), 400),
        (tus_headers(**{"Upload-Metadata": metadata(bucket=bucket_id, key="a")}), 400),     # no length at all
        (tus_headers("bob", **{"Upload-Length": "5", "Upload-Metadata": metadata(bucket=bucket_id, key="a")}), 403),
        (tus_headers("carol", **{"Upload-Length": "5", "Upload-Metadata": metadata(bucket=bucket_id, key="a")}), 404),
        (tus_headers(**{"Upload-Length": "5", "Upload-Metadata": metadata(bucket=str(__import__("uuid").uuid4()),
                                                                          key="a")}), 404),
        (tus_headers(None, **{"Upload-Length": "5", "Upload-Metadata": metadata(bucket=bucket_id, key="a")}), 401),
    ]
    for headers, status in cases:
        response = await client.post("/api/v1/tus/", headers=headers)
        assert response.status == status, (headers, await response.text())
        assert response.content_type == "application/json" and "error" in await response.json()
        assert response.headers["Tus-Resumable"] == "1.0.0"
    async with cursor(app[context.DB]) as cur:
        await cur.execute("SELECT count(*) AS n FROM uploads WHERE bucket_id = %s", (bucket_id,))
        assert (await cur.fetchone())["n"] == 0


async def test_patch_without_offset_octet_stream_is_415(client):
    bucket_id = await make_bucket(client.server.app)
    url = await create(client, bucket_id, 10)
    for content_type in (None, "application/octet-stream", "text/plain"):
        headers = tus_headers(**{"Upload-Offset": "0"})
        if content_type:
            headers["Content-Type"] = content_type
        response = await client.patch(url, data=b"abc", headers=headers)
        assert response.status == 415, content_type
        assert response.headers["Tus-Resumable"] == "1.0.0"
    assert (await head(client, url)).headers["Upload-Offset"] == "0"


async def test_offset_mismatch_is_409_with_current_offset(client):
    bucket_id = await make_bucket(client.server.app)
    url = await create(client, bucket_id, 20)
    assert (await patch(client, url, 0, b"0123456789")).status == 204
    for offset in (0, 5, 15):
        response = await patch(client, url, offset, b"abcde")
        assert response.status == 409
        assert response.headers["Upload-Offset"] == "10"
        assert (await response.json())["offset"] == 10
    response = await client.patch(url, data=b"x", headers=tus_headers(**OCTETS))
    assert response.status == 400  # no Upload-Offset at all
    assert (await head(client, url)).headers["Upload-Offset"] == "10"


async def test_over_maximum_size_is_413(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.replace(max_upload_size=10 * MiB)))
    bucket_id = await make_bucket(client.server.app)
    response = await client.options("/api/v1/tus/")
    assert response.headers["Tus-Max-Size"] == str(10 * MiB)
    response = await client.post("/api/v1/tus/", headers=tus_headers(**{
        "Upload-Length": str(10 * MiB + 1), "Upload-Metadata": metadata(bucket=bucket_id, key="big")}))
    assert response.status == 413 and "error" in await response.json()
    # a body beyond the declared length is 413 too, and keeps nothing
    url = await create(client, bucket_id, 5)
    response = await patch(client, url, 0, b"123456")
    assert response.status == 413
    assert (await head(client, url)).headers["Upload-Offset"] == "0"
    # a deferred-length upload cannot grow past the maximum either
    url = await create(client, bucket_id, None)
    response = await patch(client, url, 0, b"x" * (10 * MiB + 1))
    assert response.status == 413


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256", "crc32", "crc32c"])
async def test_checksum_algorithms_and_460(client, algorithm):
    bucket_id = await make_bucket(client.server.app)
    url = await create(client, bucket_id, 12, key=f"sum/{algorithm}")
    good, bad = b"hello ", b"world!"
    digest = MultiDigest([algorithm])
    digest.update(good)
    response = await patch(client, url, 0, good, **{"Upload-Checksum": f"{algorithm} {digest.b64(algorithm)}"})
    assert response.status == 204 and response.headers["Upload-Offset"] == "6"
    response = await patch(client, url, 6, bad, **{"Upload-Checksum": f"{algorithm} {digest.b64(algorithm)}"})
    assert response.status == 460
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "error" in await response.json()
    assert (await head(client, url)).headers["Upload-Offset"] == "6"  # the chunk was discarded


async def test_checksum_mismatch_discards_a_chunk_spanning_parts(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(40 * MiB + 5)
    url = await create(client, bucket_id, len(data), key="sum/big")
    first = data[:3 * MiB]
    response = await patch(client, url, 0, first, **{
        "Upload-Checksum": "sha256 " + base64.b64encode(hashlib.sha256(first).digest()).decode()})
    assert response.status == 204
    rest = data[3 * MiB:]
    wrong = base64.b64encode(hashlib.sha256(rest + b"!").digest()).decode()
    response = await patch(client, url, 3 * MiB, rest, **{"Upload-Checksum": f"sha256 {wrong}"})
    assert response.status == 460
    assert (await head(client, url)).headers["Upload-Offset"] == str(3 * MiB)
    right = base64.b64encode(hashlib.sha256(rest).digest()).decode()
    response = await patch(client, url, 3 * MiB, rest, **{"Upload-Checksum": f"sha256 {right}"})
    assert response.status == 204 and response.headers["Upload-Offset"] == str(len(data))
    assert await stored(app, bucket_id, "sum/big") == data


async def test_unsupported_or_malformed_checksum_is_400(client):
    bucket_id = await make_bucket(client.server.app)
    url = await create(client, bucket_id, 5)
    for value in ("whirlpool abc=", "sha1", "sha1 not-base64!", "sha1 " + base64.b64encode(b"short").decode()):
        response = await patch(client, url, 0, b"hello", **{"Upload-Checksum": value})
        assert response.status == 400, value
    assert (await head(client, url)).headers["Upload-Offset"] == "0"


@pytest.mark.parametrize("stream_parts", [True, False], ids=["parts-sent-while-filling", "parts-sent-whole"])
async def test_arbitrary_chunk_sizes_become_valid_parts(aiohttp_client, settings, stream_parts):
    client = await aiohttp_client(AppServer(create_app(settings.replace(s3_stream_parts=stream_parts))))
    app = client.server.app
    assert app[context.STORE].capabilities.stream_parts is stream_parts
    bucket_id = await make_bucket(app)
    data = os.urandom(23 * MiB + 12345)
    url = await create(client, bucket_id, len(data), key="chunks/odd.bin")
    offset = 0
    for size in (1, 3 * MiB + 7, 17, 9 * MiB, 1000, 5 * MiB - 1):
        response = await patch(client, url, offset, data[offset:offset + size])
        assert response.status == 204
        offset += size
        assert response.headers["Upload-Offset"] == str(offset)
    response = await patch(client, url, offset, data[offset:])
    assert response.status == 204 and response.headers["Upload-Offset"] == str(len(data))
    assert await stored(app, bucket_id, "chunks/odd.bin") == data


async def test_creation_with_upload_and_empty_upload(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    response = await client.post("/api/v1/tus/", data=b"first", headers=tus_headers(**OCTETS, **{
        "Upload-Length": "10", "Upload-Metadata": metadata(bucket=bucket_id, key="cwu")}))
    assert response.status == 201 and response.headers["Upload-Offset"] == "5"
    assert (await patch(client, response.headers["Location"], 5, b"+last")).status == 204
    assert await stored(app, bucket_id, "cwu") == b"first+last"
    # the whole file in the POST
    response = await client.post("/api/v1/tus/", data=b"all at once", headers=tus_headers(**OCTETS, **{
        "Upload-Length": "11", "Upload-Metadata": metadata(bucket=bucket_id, key="whole")}))
    assert response.status == 201 and response.headers["Upload-Offset"] == "11"
    assert await stored(app, bucket_id, "whole") == b"all at once"
    # Upload-Length: 0 is complete at creation
    url = await create(client, bucket_id, 0, key="empty")
    assert await stored(app, bucket_id, "empty") == b""
    assert (await head(client, url)).headers["Upload-Offset"] == "0"
    # a body with the wrong type is 415, but the upload exists and says where
    response = await client.post("/api/v1/tus/", data=b"abc", headers=tus_headers(**{
        "Content-Type": "text/plain", "Upload-Length": "3", "Upload-Metadata": metadata(bucket=bucket_id, key="t")}))
    assert response.status == 415 and response.headers["Location"].startswith("/api/v1/tus/")


async def test_deferred_length(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    url = await create(client, bucket_id, None, key="deferred.bin")
    response = await head(client, url)
    assert response.headers["Upload-Defer-Length"] == "1" and "Upload-Length" not in response.headers
    data = os.urandom(6 * MiB + 3)
    assert (await patch(client, url, 0, data[:4 * MiB])).status == 204
    assert await stored(app, bucket_id, "deferred.bin") is None
    response = await patch(client, url, 4 * MiB, data[4 * MiB:], **{"Upload-Length": str(len(data))})
    assert response.status == 204 and response.headers["Upload-Offset"] == str(len(data))
    response = await head(client, url)
    assert response.headers["Upload-Length"] == str(len(data)) and "Upload-Defer-Length" not in response.headers
    assert await stored(app, bucket_id, "deferred.bin") == data


async def test_termination(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    url = await create(client, bucket_id, 10 * MiB, key="gone.bin")
    assert (await patch(client, url, 0, os.urandom(6 * MiB))).status == 204
    response = await client.delete(url, headers=tus_headers())
    assert response.status == 204 and response.headers["Tus-Resumable"] == "1.0.0"
    for response in (await head(client, url), await patch(client, url, 6 * MiB, b"x"),
                     await client.delete(url, headers=tus_headers())):
        assert response.status == 404
    upload_id = url.rsplit("/", 1)[1]
    async with cursor(app[context.DB]) as cur:
        await cur.execute("SELECT s3_bucket, s3_key FROM uploads WHERE id = %s", (upload_id,))
        row = await cur.fetchone()
    listed = await app[context.STORE].list_multipart_uploads(row["s3_bucket"])
    assert not [item for item in listed if item["Key"] == row["s3_key"]]


async def test_another_users_upload_is_404_and_anonymous_is_401(client):
    bucket_id = await make_bucket(client.server.app, grants=[("USER", "bob", "WRITE")])
    url = await create(client, bucket_id, 10)
    assert (await head(client, url, user="bob")).status == 404
    assert (await patch(client, url, 0, b"abc", user="bob")).status == 404
    assert (await client.delete(url, headers=tus_headers("bob"))).status == 404
    assert (await head(client, url, user=None)).status == 401
    assert (await head(client, "/api/v1/tus/not-a-uuid")).status == 404
    assert (await head(client, url)).headers["Upload-Offset"] == "0"


async def test_write_permission_is_checked_again_at_completion(client):
    app = client.server.app
    bucket_id = await make_bucket(app, grants=[("USER", "bob", "WRITE")])
    url = await create(client, bucket_id, 10, user="bob", key="revoked")
    assert (await patch(client, url, 0, b"12345", user="bob")).status == 204
    async with cursor(app[context.DB]) as cur:
        await cur.execute("DELETE FROM grants WHERE bucket_id = %s AND grantee = 'bob'", (bucket_id,))
    response = await patch(client, url, 5, b"67890", user="bob")
    assert response.status == 404  # bob cannot see the bucket any more
    assert await stored(app, bucket_id, "revoked") is None


async def test_method_override(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    url = await create(client, bucket_id, 6, key="override")
    response = await client.post(url, data=b"abc", headers=tus_headers(**OCTETS, **{
        "X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0"}))
    assert response.status == 204 and response.headers["Upload-Offset"] == "3"
    response = await client.post(url, headers=tus_headers(**{"X-HTTP-Method-Override": "HEAD"}))
    assert response.status == 204 and response.headers["Upload-Offset"] == "3"
    response = await client.post(url, headers=tus_headers())
    assert response.status == 400
    response = await client.post(url, headers=tus_headers(**{"X-HTTP-Method-Override": "DELETE"}))
    assert response.status == 204
    assert (await head(client, url)).status == 404


async def test_expired_upload_is_410(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    url = await create(client, bucket_id, 10)
    async with cursor(app[context.DB]) as cur:
        await cur.execute("UPDATE uploads SET expires_at = now() - interval '1 second' WHERE id = %s",
                          (url.rsplit("/", 1)[1],))
    assert (await head(client, url)).status == 410
    assert (await patch(client, url, 0, b"abc")).status == 410
    await app[context.ENGINE].reap(orphans=False)
    assert (await head(client, url)).status == 404


async def test_cors_preflight_and_exposed_headers(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.replace(cors_origins=("https://app.example",))))
    bucket_id = await make_bucket(client.server.app)
    for method in ("POST", "PATCH", "HEAD", "DELETE"):
        response = await client.options("/api/v1/tus/some-id" if method != "POST" else "/api/v1/tus/", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "tus-resumable, upload-offset, upload-length, content-type"})
        assert response.status == 204, method
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert method in response.headers["Access-Control-Allow-Methods"]
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert "tus-resumable" in allowed and "upload-offset" in allowed and "upload-metadata" in allowed
    response = await client.options("/api/v1/tus/", headers={"Origin": "https://evil.example",
                                                              "Access-Control-Request-Method": "PATCH"})
    assert "Access-Control-Allow-Origin" not in response.headers
    response = await client.post("/api/v1/tus/", headers=tus_headers(**{
        "Origin": "https://app.example", "Upload-Length": "3", "Upload-Metadata": metadata(bucket=bucket_id, key="c")}))
    assert response.status == 201
    exposed = {name.strip().lower() for name in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"location", "upload-offset", "upload-length", "upload-metadata", "upload-expires", "tus-resumable",
            "tus-version", "tus-extension", "tus-max-size", "tus-checksum-algorithm"} <= exposed
    # errors are readable by the page too
    response = await client.head(response.headers["Location"], headers={"Origin": "https://app.example", **TUS})
    assert response.status == 401 and response.headers["Access-Control-Allow-Origin"] == "https://app.example"


async def test_a_finished_tus_upload_is_served_with_its_repr_digest(client):
    """The sha256 a tus upload was hashed with as it came (no declared checksum) is the published
    object's: GET and HEAD of the file send it as RFC 9530 Repr-Digest."""
    bucket_id = await make_bucket(client.server.app)
    data = os.urandom(6 * MiB + 3)
    url = await create(client, bucket_id, len(data), key="tus/digest.bin")
    for offset in range(0, len(data), 2 * MiB):
        response = await patch(client, url, offset, data[offset:offset + 2 * MiB])
        assert response.status == 204, await response.text()
    expected = f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"
    got = await client.get(f"/api/v1/objects/{bucket_id}/tus/digest.bin", headers=auth("alice"))
    assert got.status == 200 and await got.read() == data
    assert got.headers["Repr-Digest"] == expected
    head_response = await client.head(f"/api/v1/objects/{bucket_id}/tus/digest.bin", headers=auth("alice"))
    assert head_response.headers["Repr-Digest"] == expected
