"""Files: upload (form and raw), download (Range, HEAD, headers), listing, delete, traversal,
and the Go handlers_test.go file tests."""
from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from urllib.parse import quote

import aiohttp
import pytest

from support.api import (agen, create_bucket, file_keys, grant, put_form, put_raw, raw_request, s3_client,
                         s3_keys, s3_location)
from support.premises import eventually
from support.data import auth, sha256_b64

from sagestore import context
from sagestore.app import create_app
from sagestore.embedded import free_port


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


# --- uploads ---------------------------------------------------------------

async def test_file_upload_with_form_filename(client):
    """Go TestFileUpload / TestFileUploadWithFilename: key '' + form filename."""
    bucket_id = await create_bucket(client, "testuser")
    for filename in ("testfile.txt", "testfile2.txt"):
        response = await put_form(client, bucket_id, "", b"test-data", filename=filename, user="testuser")
        assert response.status == 200
        assert await response.json() == {"bucket-id": bucket_id, "key": filename}
    assert sorted(await file_keys(client, bucket_id, "testuser")) == ["testfile.txt", "testfile2.txt"]


async def test_form_field_without_filename_uses_the_key(client):
    """The Go tests' CreateFile: a plain form field 'file' and the key in the path."""
    bucket_id = await create_bucket(client)
    response = await put_form(client, bucket_id, "dir/mytestfile1.txt", b"test-data")
    assert await response.json() == {"bucket-id": bucket_id, "key": "dir/mytestfile1.txt"}
    response = await client.get(f"/api/v1/objects/{bucket_id}/dir/mytestfile1.txt", headers=auth("alice"))
    assert await response.read() == b"test-data"


@pytest.mark.parametrize("folder, filename, key", [
    ("dir/", "x.txt", "dir/x.txt"),
    ("a/b/", "C:\\Users\\me\\report.pdf", "a/b/report.pdf"),
    ("", "some/dirs/photo.jpg", "photo.jpg"),
    ("", "héllo wörld.txt", "héllo wörld.txt"),
])
async def test_folder_key_appends_the_sanitised_filename(client, folder, filename, key):
    bucket_id = await create_bucket(client)
    response = await put_form(client, bucket_id, quote(folder), b"data", filename=filename)
    assert response.status == 200
    assert await response.json() == {"bucket-id": bucket_id, "key": key}
    assert await file_keys(client, bucket_id) == [key]


async def test_raw_body_upload_keeps_type_owner_and_checksum(client, s3_backend, settings):
    bucket_id = await create_bucket(client)
    data = os.urandom(100_000)
    response = await put_raw(client, bucket_id, "data/table.csv", data, content_type="text/csv; charset=utf-8")
    assert await response.json() == {"bucket-id": bucket_id, "key": "data/table.csv"}
    s3_bucket, s3_key = s3_location(settings, bucket_id, "data/table.csv")
    head = s3_client(s3_backend).head_object(Bucket=s3_bucket, Key=s3_key)
    assert head["ContentType"] == "text/csv; charset=utf-8"
    assert head["Metadata"] == {"owner": "alice", "sha256": hashlib.sha256(data).hexdigest()}
    assert head["ContentLength"] == len(data)


async def test_form_upload_keeps_the_part_type_owner_and_checksum(client, s3_backend, settings):
    bucket_id = await create_bucket(client)
    await grant(client, bucket_id, "USER", "writer", "WRITE")
    form = aiohttp.FormData()
    form.add_field("comment", "ignored")
    form.add_field("file", b"\x89PNG...", filename="pic.png", content_type="image/png")
    response = await client.put(f"/api/v1/objects/{bucket_id}/img/", data=form, headers=auth("writer"))
    assert await response.json() == {"bucket-id": bucket_id, "key": "img/pic.png"}
    s3_bucket, s3_key = s3_location(settings, bucket_id, "img/pic.png")
    head = s3_client(s3_backend).head_object(Bucket=s3_bucket, Key=s3_key)
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {"owner": "writer", "sha256": hashlib.sha256(b"\x89PNG...").hexdigest()}


async def test_content_type_defaults(client):
    bucket_id = await create_bucket(client)
    await client.put(f"/api/v1/objects/{bucket_id}/no-type", data=b"x",
                     headers={**auth("alice"), "Content-Type": ""})
    # curl --data-binary sends application/x-www-form-urlencoded: that does not describe the file
    await put_raw(client, bucket_id, "curl-default", b"x", content_type="application/x-www-form-urlencoded")
    for key in ("no-type", "curl-default"):
        response = await client.head(f"/api/v1/objects/{bucket_id}/{key}", headers=auth("alice"))
        assert response.headers["Content-Type"] == "application/octet-stream", key


async def test_zero_byte_file_and_overwrite(client):
    bucket_id = await create_bucket(client)
    assert (await put_raw(client, bucket_id, "empty", b"")).status == 200
    response = await client.get(f"/api/v1/objects/{bucket_id}/empty", headers=auth("alice"))
    assert response.status == 200 and await response.read() == b"" and response.headers["Content-Length"] == "0"
    assert (await put_raw(client, bucket_id, "empty", b"now full")).status == 200
    response = await client.get(f"/api/v1/objects/{bucket_id}/empty", headers=auth("alice"))
    assert await response.read() == b"now full"


COUNTED = {"files": ("file_upload_total", "sagestore_files_uploaded_total"),
           "uploaded": ("file_upload_byte_size_total", "sagestore_uploaded_bytes_total"),
           "downloaded": ("file_download_byte_size_total", "sagestore_downloaded_bytes_total")}


@pytest.mark.parametrize("naming", [0, 1], ids=["go-names", "sagestore-names"])
async def test_upload_counts_files_and_bytes(client, naming):
    text = await (await client.get("/metrics")).text()
    names = {what: pair[naming] for what, pair in COUNTED.items()}
    files, uploaded, downloaded = (metric(text, names[what]) for what in ("files", "uploaded", "downloaded"))
    bucket_id = await create_bucket(client)
    await put_raw(client, bucket_id, "a", b"x" * 1000)
    await put_form(client, bucket_id, "b", b"y" * 234)
    await (await client.get(f"/api/v1/objects/{bucket_id}/a", headers=auth("alice"))).read()
    text = await (await client.get("/metrics")).text()
    assert metric(text, names["files"]) == files + 2
    assert metric(text, names["uploaded"]) == uploaded + 1234
    assert metric(text, names["downloaded"]) == downloaded + 1000


def multipart_body(boundary: str, parts: list[tuple[str, str | None, bytes, dict[str, str]]]) -> bytes:
    """A hand-built multipart/form-data body, to send what well-behaved clients never would."""
    out = b""
    for name, filename, data, extra in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        head = [f"Content-Disposition: {disposition}"] + [f"{k}: {v}" for k, v in extra.items()]
        out += f"--{boundary}\r\n".encode() + "\r\n".join(head).encode() + b"\r\n\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


BOUNDARY = "sagestore-test-boundary"
FORM = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.mark.parametrize("path, headers, body, message", [
    ("x.txt", FORM, multipart_body(BOUNDARY, [("other", None, b"1", {})]), "no field named 'file'"),
    ("x.txt", FORM, f"--{BOUNDARY}--\r\n".encode(), "no field named 'file'"),
    ("dir/", FORM, multipart_body(BOUNDARY, [("file", None, b"1", {})]), "has no filename"),
    ("dir/", FORM, multipart_body(BOUNDARY, [("file", "", b"1", {})]), "has no filename"),
    ("dir/", FORM, multipart_body(BOUNDARY, [("file", "..", b"1", {})]), "must not contain '..'"),
    ("x.txt", FORM, multipart_body(BOUNDARY, [("file", "x", b"MQ==", {"Content-Transfer-Encoding": "base64"})]),
     "Content-Transfer-Encoding"),
    ("x.txt", FORM, multipart_body(BOUNDARY, [("file", "x", b"1", {"Content-Type": "not a type"})]),
     "not a valid media type"),
    ("x.txt", {"Content-Type": "multipart/form-data"}, b"--x\r\n", "malformed multipart"),
    ("x.txt", FORM, b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc",
     "malformed multipart"),
    ("dir/", {"Content-Type": "text/plain"}, b"raw", "a raw body needs the file name in the key"),
    ("", {"Content-Type": "application/octet-stream"}, b"raw", "a raw body needs the file name in the key"),
    ("x.txt", {"Content-Type": "text//plain"}, b"raw", "not a valid media type"),
    ("x.txt", {"Content-Type": "garbage"}, b"raw", "not a valid media type"),
    ("a%01b", {}, b"raw", "control characters"),
    ("a%5Cb", {}, b"raw", "backslash"),
    ("./x", {}, b"raw", "'.' or '..'"),
    ("x" * 1000, {}, b"raw", "longer than"),
])
async def test_bad_uploads_are_400_and_store_nothing(client, s3_backend, settings, path, headers, body, message):
    bucket_id = await create_bucket(client)
    status, _, payload = await raw_request(client, "PUT", f"/api/v1/objects/{bucket_id}/{path}",
                                           {**auth("alice"), **headers}, body)
    assert status == 400, payload
    assert message in payload.decode(), payload
    assert s3_keys(s3_client(s3_backend), settings, bucket_id) == []


async def test_truncated_uploads_store_nothing(client, s3_backend, settings):
    """A client that disconnects mid-body must not leave a short file behind."""
    bucket_id = await create_bucket(client)
    head = f"PUT /api/v1/objects/{bucket_id}/{{key}} HTTP/1.1\r\nHost: x\r\nAuthorization: sage user:alice\r\n"
    form_start = multipart_body(BOUNDARY, [("file", "f", b"x" * 50_000, {})])[:30_000]
    for key, request in (
        ("raw-length", head + "Content-Length: 100000\r\n\r\n" + "x" * 5000),
        ("raw-chunked", head + "Transfer-Encoding: chunked\r\n\r\n1388\r\n" + "x" * 5000 + "\r\n"),
        ("form", head + f"Content-Type: {FORM['Content-Type']}\r\nContent-Length: 60000\r\n\r\n"
         + form_start.decode()),
    ):
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(request.format(key=key).encode())
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.transport.abort()
    await asyncio.sleep(1)
    assert s3_keys(s3_client(s3_backend), settings, bucket_id) == []
    assert (await client.get(f"/api/v1/objects/{bucket_id}/", headers=auth("alice"))).status == 200


async def test_upload_size_limit(aiohttp_client, settings, s3_backend):
    client = await aiohttp_client(create_app(settings.replace(max_upload_size=1000)))
    bucket_id = await create_bucket(client)
    assert (await put_raw(client, bucket_id, "fits", b"x" * 1000)).status == 200
    too_big = b"x" * 1001
    for label, send in (
        ("content-length", lambda: put_raw(client, bucket_id, "big1", too_big)),
        ("chunked", lambda: client.put(f"/api/v1/objects/{bucket_id}/big2", data=agen([too_big[:600], too_big[600:]]),
                                       headers=auth("alice"))),
        ("form", lambda: put_form(client, bucket_id, "big3", too_big, filename="big3")),
    ):
        response = await send()
        assert response.status == 413, label
        assert "1000-byte limit" in (await response.json())["error"]
    assert s3_keys(s3_client(s3_backend), settings, bucket_id) == [f"{bucket_id}/fits"]


async def test_upload_into_a_bucket_deleted_meanwhile_leaves_nothing(client, s3_backend, settings):
    bucket_id = await create_bucket(client)
    resume = asyncio.Event()
    first = os.urandom(settings.s3_part_size + 2**20)  # more than a part: S3 sees the upload start

    async def slow_body():
        yield first
        await resume.wait()
        yield b"second half"

    upload = asyncio.create_task(client.put(f"/api/v1/objects/{bucket_id}/late.txt", data=slow_body(),
                                            headers=auth("alice")))
    # the premise: the upload passed its ACL check and streams into S3 (its multipart upload exists)
    app = client.server.app
    location = app[context.MAPPING].object(bucket_id, "late.txt")
    await eventually(lambda: app[context.STORE].list_multipart_uploads(location.bucket, location.key),
                     "the PUT's S3 multipart upload exists")
    response = await client.delete(f"/api/v1/objects/{bucket_id}", headers=auth("alice"))
    assert response.status == 200
    resume.set()
    response = await upload
    assert response.status == 404
    assert s3_keys(s3_client(s3_backend), settings, bucket_id) == []
    assert await app[context.STORE].list_multipart_uploads(location.bucket, location.key) == []


# --- traversal ---------------------------------------------------------------

async def test_traversal_attempts_are_400_and_write_nothing(client, s3_backend, settings):
    """aiohttp routes on the percent-decoded path without collapsing '..' or '//', so every one of
    these reaches key validation; HTTP clients would normalise them, hence raw requests."""
    bucket_id = await create_bucket(client)
    other = await create_bucket(client)
    await put_raw(client, other, "x", b"original")
    s3 = s3_client(s3_backend)
    s3_buckets = {s3_location(settings, b, "")[0] for b in (bucket_id, other)}
    before = {name: sorted(item["Key"] for item in s3.list_objects_v2(Bucket=name).get("Contents", []))
              for name in s3_buckets}

    form = multipart_body(BOUNDARY, [("file", f"../../{other}/x", b"evil", {})])
    attempts = [
        ("PUT", "../x", {}, b"evil"),
        ("PUT", "a//b", {}, b"evil"),
        ("PUT", "%2e%2e/", FORM, multipart_body(BOUNDARY, [("file", "x", b"evil", {})])),
        ("PUT", "%2e%2e/x", {}, b"evil"),
        ("PUT", f"%2E%2E/{other}/x", {}, b"evil"),
        ("PUT", f"a/../../{other}/x", {}, b"evil"),
        ("PUT", "", FORM, form),
        ("PUT", "dir/", FORM, form),
        # quoted-string escaping: this filename decodes to ..\..\<other>\x
        ("PUT", "dir/", FORM, multipart_body(BOUNDARY, [("file", f"..\\\\..\\\\{other}\\\\x", b"evil", {})])),
        ("GET", f"../{other}/x", {}, b""),
        ("GET", "%2e%2e/", {}, b""),
        ("HEAD", f"../{other}/x", {}, b""),
        ("DELETE", f"../{other}/x", {}, b""),
        ("DELETE", "a//b", {}, b""),
    ]
    for method, path, headers, body in attempts:
        status, _, payload = await raw_request(client, method, f"/api/v1/objects/{bucket_id}/{path}",
                                               {**auth("alice"), **headers}, body)
        assert status == 400, (method, path, payload)
        if method != "HEAD":
            assert b"error" in payload
    after = {name: sorted(item["Key"] for item in s3.list_objects_v2(Bucket=name).get("Contents", []))
             for name in s3_buckets}
    assert after == before
    assert s3_keys(s3, settings, bucket_id) == []
    response = await client.get(f"/api/v1/objects/{other}/x", headers=auth("alice"))
    assert await response.read() == b"original"


# --- downloads ---------------------------------------------------------------

async def test_upload_and_download(client):
    """Go TestUploadAndDownload: owner reads; anonymous gets 401 until the bucket is public."""
    bucket_id = await create_bucket(client, "testuser")
    assert (await put_form(client, bucket_id, "mytestfile1.txt", b"test-data", user="testuser")).status == 200
    response = await client.get(f"/api/v1/objects/{bucket_id}/mytestfile1.txt", headers=auth("testuser"))
    assert response.status == 200 and await response.read() == b"test-data"
    assert (await client.get(f"/api/v1/objects/{bucket_id}/mytestfile1.txt")).status == 401
    await grant(client, bucket_id, "GROUP", "AllUsers", "READ", user="testuser")
    response = await client.get(f"/api/v1/objects/{bucket_id}/mytestfile1.txt")
    assert response.status == 200 and await response.read() == b"test-data"
    response = await client.get(f"/api/v1/objects/{bucket_id}/")
    assert response.status == 200 and "mytestfile1.txt" in await response.text()


async def test_download_headers(client):
    bucket_id = await create_bucket(client)
    data = os.urandom(12345)
    await put_raw(client, bucket_id, "dir/report.bin", data, content_type="application/x-custom")
    response = await client.get(f"/api/v1/objects/{bucket_id}/dir/report.bin", headers=auth("alice"))
    assert response.status == 200 and await response.read() == data
    headers = response.headers
    assert headers["Content-Length"] == "12345"
    assert headers["Content-Type"] == "application/x-custom"
    assert headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", headers["Last-Modified"])
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Disposition"] == "attachment; filename=\"report.bin\"; filename*=UTF-8''report.bin"

    head = await client.head(f"/api/v1/objects/{bucket_id}/dir/report.bin", headers=auth("alice"))
    assert head.status == 200 and await head.read() == b""
    for name in ("Content-Length", "Content-Type", "ETag", "Last-Modified", "Accept-Ranges", "Content-Disposition"):
        assert head.headers[name] == headers[name], name

    for method in ("GET", "HEAD"):
        response = await client.request(method, f"/api/v1/objects/{bucket_id}/dir/report.bin",
                                         headers={**auth("alice"), "If-None-Match": headers["ETag"]})
        assert response.status == 304 and response.headers["ETag"] == headers["ETag"]
    response = await client.get(f"/api/v1/objects/{bucket_id}/dir/report.bin",
                                headers={**auth("alice"), "If-None-Match": '"other"'})
    assert response.status == 200


async def test_repr_digest_on_get_head_and_ranges(client):
    """RFC 9530 Repr-Digest: the whole file's sha-256, on GET, HEAD and ranged GETs alike."""
    import base64
    bucket_id = await create_bucket(client)
    data = os.urandom(100_000)
    expected = f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"
    await put_raw(client, bucket_id, "digest.bin", data)
    await put_form(client, bucket_id, "form.bin", data)
    for key in ("digest.bin", "form.bin"):
        url = f"/api/v1/objects/{bucket_id}/{key}"
        response = await client.get(url, headers=auth("alice"))
        assert response.status == 200 and await response.read() == data
        assert response.headers["Repr-Digest"] == expected
        head = await client.head(url, headers=auth("alice"))
        assert head.status == 200 and head.headers["Repr-Digest"] == expected
        ranged = await client.get(url, headers={**auth("alice"), "Range": "bytes=10-19"})
        assert ranged.status == 206 and await ranged.read() == data[10:20]
        assert ranged.headers["Repr-Digest"] == expected  # the representation's digest, not the range's


@pytest.mark.parametrize("key, disposition", [
    ("données été.txt", "attachment; filename=\"donn_es _t_.txt\"; "
                        "filename*=UTF-8''donn%C3%A9es%20%C3%A9t%C3%A9.txt"),
    ('say "hi"; 100%.txt', "attachment; filename=\"say _hi_; 100_.txt\"; "
                           "filename*=UTF-8''say%20%22hi%22%3B%20100%25.txt"),
    ("日本/画像.png", "attachment; filename=\"__.png\"; filename*=UTF-8''%E7%94%BB%E5%83%8F.png"),
])
async def test_content_disposition_rfc6266(client, key, disposition):
    bucket_id = await create_bucket(client)
    assert (await put_raw(client, bucket_id, quote(key), b"x")).status == 200
    response = await client.get(f"/api/v1/objects/{bucket_id}/{quote(key)}", headers=auth("alice"))
    assert response.status == 200
    assert response.headers["Content-Disposition"] == disposition
    assert response.content_disposition.filename == key.rsplit("/", 1)[-1]  # aiohttp reads filename*


async def test_missing_file_is_404(client):
    bucket_id = await create_bucket(client)
    for method in ("GET", "HEAD", "DELETE"):
        response = await client.request(method, f"/api/v1/objects/{bucket_id}/nope.txt", headers=auth("alice"))
        assert response.status == 404, method


async def test_range_reads(client):
    bucket_id = await create_bucket(client)
    data = bytes(range(256)) * 40  # 10240 bytes
    await put_raw(client, bucket_id, "r.bin", data)
    url = f"/api/v1/objects/{bucket_id}/r.bin"
    for header, status, body, content_range in [
        ("bytes=0-9", 206, data[0:10], "bytes 0-9/10240"),
        ("bytes=100-", 206, data[100:], "bytes 100-10239/10240"),
        ("bytes=-5", 206, data[-5:], "bytes 10235-10239/10240"),
        ("bytes=10000-99999", 206, data[10000:], "bytes 10000-10239/10240"),
        ("bytes=-99999", 206, data, "bytes 0-10239/10240"),
        ("bytes=10239-10239", 206, data[-1:], "bytes 10239-10239/10240"),
        ("BYTES=1-2", 206, data[1:3], "bytes 1-2/10240"),
        ("bytes=5-2", 200, data, None),  # invalid: ignored, as RFC 9110 allows
        ("bytes=0-1,5-6", 200, data, None),  # multiple ranges: whole file
        ("pages=1-2", 200, data, None),
    ]:
        response = await client.get(url, headers={**auth("alice"), "Range": header})
        assert response.status == status, header
        assert await response.read() == body, header
        assert response.headers["Content-Length"] == str(len(body))
        assert response.headers.get("Content-Range") == content_range, header
        assert response.headers["Accept-Ranges"] == "bytes"
    for header in ("bytes=10240-", "bytes=20000-30000", "bytes=-0"):
        response = await client.get(url, headers={**auth("alice"), "Range": header})
        assert response.status == 416, header
        assert response.headers["Content-Range"] == "bytes */10240"
        assert "outside the file" in (await response.json())["error"]

    etag = (await client.head(url, headers=auth("alice"))).headers["ETag"]
    response = await client.get(url, headers={**auth("alice"), "Range": "bytes=0-9", "If-Range": etag})
    assert response.status == 206 and await response.read() == data[:10]
    response = await client.get(url, headers={**auth("alice"), "Range": "bytes=0-9", "If-Range": '"stale"'})
    assert response.status == 200 and await response.read() == data


class CuttingProxy:
    """A TCP proxy in front of SeaweedFS that cuts any connection after `limit` response bytes:
    a real S3 failure in the middle of a download, without mocking anything."""

    def __init__(self, target_host: str, target_port: int, limit: int) -> None:
        self.target = (target_host, target_port)
        self.limit = limit
        self.port = free_port()
        self.server: asyncio.AbstractServer | None = None
        self.cuts = 0

    async def start(self) -> "CuttingProxy":
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)
        return self

    async def handle(self, client_reader, client_writer) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)

        async def pump(reader, writer, limit: int | None) -> None:
            sent = 0
            try:
                while data := await reader.read(65536):
                    if limit is not None and sent + len(data) > limit:
                        writer.write(data[:limit - sent])
                        await writer.drain()
                        self.cuts += 1
                        break
                    sent += len(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            for w in (client_writer, upstream_writer):
                w.transport.abort()

        await asyncio.gather(pump(client_reader, upstream_writer, None),
                             pump(upstream_reader, client_writer, self.limit))

    async def stop(self) -> None:
        self.server.close()


async def test_s3_failure_mid_download_truncates_instead_of_a_clean_200(aiohttp_client, client, settings,
                                                                         s3_backend):
    size = 8 * 2**20
    bucket_id = await create_bucket(client)
    data = os.urandom(size)
    assert (await put_raw(client, bucket_id, "big.bin", data)).status == 200
    host, port = s3_backend["endpoint"].removeprefix("http://").split(":")
    proxy = await CuttingProxy(host, int(port), limit=3 * 2**20).start()
    try:
        cut_client = await aiohttp_client(create_app(settings.replace(s3_endpoint=f"http://127.0.0.1:{proxy.port}",
                                                                      s3_create_buckets=False)))
        # without the cut, the client would wait forever for the promised bytes: bound that wait
        response = await cut_client.get(f"/api/v1/objects/{bucket_id}/big.bin", headers=auth("alice"),
                                        timeout=aiohttp.ClientTimeout(sock_read=30))
        assert response.status == 200 and response.headers["Content-Length"] == str(size)
        received = b""
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in response.content.iter_any():
                received += chunk
        assert 0 < len(received) < size and data.startswith(received)
        assert proxy.cuts >= 1
        # the instance is fine afterwards
        response = await cut_client.get(f"/api/v1/objects/{bucket_id}/", headers=auth("alice"))
        assert response.status == 200
    finally:
        await proxy.stop()


async def test_parallel_uploads_and_anonymous_downloads(client):
    """Go TestPerformance: 15 files of 2-6 MB uploaded in parallel, downloaded anonymously in parallel."""
    bucket_id = await create_bucket(client, public=True)
    files = {f"perf/file-{i}.bin": os.urandom(2_000_000 + i * 285_714) for i in range(15)}

    async def upload(key: str, data: bytes) -> None:
        response = await put_form(client, bucket_id, key, data)
        assert response.status == 200

    async def download(key: str) -> bytes:
        response = await client.get(f"/api/v1/objects/{bucket_id}/{key}")
        assert response.status == 200
        return await response.read()

    await asyncio.gather(*(upload(key, data) for key, data in files.items()))
    downloaded = await asyncio.gather(*(download(key) for key in files))
    assert dict(zip(files, downloaded)) == files


# --- listing -----------------------------------------------------------------

LISTING_FIELDS = {"CommonPrefixes", "Contents", "ContinuationToken", "Delimiter", "EncodingType", "IsTruncated",
                  "KeyCount", "MaxKeys", "Name", "NextContinuationToken", "Prefix", "StartAfter"}


async def test_list_files_simple(client):
    """Go TestListFilesSimple, and the exact Go shape."""
    bucket_id = await create_bucket(client, "testuser")
    await put_form(client, bucket_id, "mytestfile1.txt", user="testuser")
    await put_form(client, bucket_id, "directory/mytestfile2.txt", user="testuser")
    response = await client.get(f"/api/v1/objects/{bucket_id}/", headers=auth("testuser"))
    assert response.status == 200
    listing = await response.json()
    assert set(listing) == LISTING_FIELDS
    assert listing["CommonPrefixes"] == [{"Prefix": "directory/"}]
    [item] = listing["Contents"]
    assert set(item) == {"ETag", "Key", "LastModified", "Owner", "Size", "StorageClass"}
    assert (item["Key"], item["Size"], item["Owner"], item["StorageClass"]) == ("mytestfile1.txt", 9, None,
                                                                                 "STANDARD")
    assert item["ETag"] == f'"{hashlib.md5(b"test-data").hexdigest()}"'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", item["LastModified"])
    assert (listing["Name"], listing["Prefix"], listing["Delimiter"], listing["MaxKeys"], listing["KeyCount"],
            listing["IsTruncated"], listing["NextContinuationToken"], listing["ContinuationToken"],
            listing["EncodingType"], listing["StartAfter"]) == (bucket_id, None, "/", 1000, 2, False, None, None,
                                                                None, None)


async def test_list_files_recursive(client):
    """Go TestListFilesRecursive, and every spelling of the flag."""
    bucket_id = await create_bucket(client)
    await put_form(client, bucket_id, "mytestfile1.txt")
    await put_form(client, bucket_id, "directory/mytestfile2.txt")
    for query, recursive in (("?recursive", True), ("?recursive=true", True), ("?recursive=True", True),
                             ("?recursive=1", True), ("?recursive=false", False), ("?recursive=0", False),
                             ("?recursive=False", False), ("", False)):
        listing = await (await client.get(f"/api/v1/objects/{bucket_id}/{query}", headers=auth("alice"))).json()
        keys = [item["Key"] for item in listing["Contents"]]
        if recursive:
            assert keys == ["directory/mytestfile2.txt", "mytestfile1.txt"], query
            assert listing["CommonPrefixes"] is None and listing["Delimiter"] is None
        else:
            assert keys == ["mytestfile1.txt"], query
            assert listing["CommonPrefixes"] == [{"Prefix": "directory/"}]


async def test_list_a_folder_gives_folder_relative_keys_in_s3_order(client):
    """sage-cli's tests.sh: '/dir-test/temp/a.txt' ... printed in S3 lexicographic order."""
    bucket_id = await create_bucket(client)
    for key in ("dir-test/temp/dir1/dir2/d.txt", "dir-test/temp/a.txt", "dir-test/temp/dir1/c.txt",
                "dir-test/temp/dir1/b.txt", "dir-test/temp/B.txt", "other/z.txt", "dir-testing/no.txt"):
        assert (await put_raw(client, bucket_id, key)).status == 200
    listing = await (await client.get(f"/api/v1/objects/{bucket_id}/dir-test/?recursive",
                                      headers=auth("alice"))).json()
    assert [item["Key"] for item in listing["Contents"]] == [
        "temp/B.txt", "temp/a.txt", "temp/dir1/b.txt", "temp/dir1/c.txt", "temp/dir1/dir2/d.txt"]
    listing = await (await client.get(f"/api/v1/objects/{bucket_id}/dir-test/temp/", headers=auth("alice"))).json()
    assert [item["Key"] for item in listing["Contents"]] == ["B.txt", "a.txt"]
    assert listing["CommonPrefixes"] == [{"Prefix": "dir1/"}]
    assert listing["Prefix"] is None and listing["Name"] == bucket_id


async def test_empty_listing_has_null_lists(client):
    bucket_id = await create_bucket(client)
    for path in ("", "no/such/folder/"):
        listing = await (await client.get(f"/api/v1/objects/{bucket_id}/{path}", headers=auth("alice"))).json()
        assert (listing["CommonPrefixes"], listing["Contents"], listing["KeyCount"], listing["IsTruncated"]) == \
            (None, None, 0, False)


async def test_listing_prefix_filters_names_inside_the_folder(client):
    bucket_id = await create_bucket(client)
    for key in ("run-1.bin", "run-2.bin", "rest.bin", "runs/x.bin", "other/run-3.bin", "data/run-4.bin"):
        assert (await put_raw(client, bucket_id, key, b"d")).status == 200
    url = f"/api/v1/objects/{bucket_id}/"
    page = await (await client.get(url, params={"prefix": "run"}, headers=auth("alice"))).json()
    assert [item["Key"] for item in page["Contents"]] == ["run-1.bin", "run-2.bin"]
    assert [common["Prefix"] for common in page["CommonPrefixes"]] == ["runs/"]
    page = await (await client.get(url + "data/", params={"prefix": "run-"}, headers=auth("alice"))).json()
    assert [item["Key"] for item in page["Contents"]] == ["run-4.bin"]  # relative to the folder, as without
    page = await (await client.get(url, params={"prefix": "run-", "limit": "1"}, headers=auth("alice"))).json()
    token = page["NextContinuationToken"]
    following = await (await client.get(url, params={"prefix": "run-", "limit": "1", "ContinuationToken": token},
                                        headers=auth("alice"))).json()
    assert [item["Key"] for item in following["Contents"]] == ["run-2.bin"]
    # a token belongs to its prefix; a prefix is a name, not a path
    for params in ({"prefix": "re", "ContinuationToken": token}, {"prefix": "runs/x"}, {"prefix": "a\x01"}):
        response = await client.get(url, params=params, headers=auth("alice"))
        assert response.status == 400 and "error" in await response.json(), params


async def test_list_files_many_paginated(client):
    """Go TestListFilesMany: 100 files, limit 10, ContinuationToken until IsTruncated is false."""
    bucket_id = await create_bucket(client)
    semaphore = asyncio.Semaphore(16)

    async def upload(i: int) -> None:
        async with semaphore:
            assert (await put_raw(client, bucket_id, f"mytestfile_{i}.txt", b"d")).status == 200
    await asyncio.gather(*(upload(i) for i in range(1, 101)))
    seen: list[str] = []
    tokens: list[str] = []
    token = None
    while True:
        params = {"limit": "10", **({"ContinuationToken": token} if token else {})}
        response = await client.get(f"/api/v1/objects/{bucket_id}/", params=params, headers=auth("alice"))
        assert response.status == 200
        page = await response.json()
        assert page["MaxKeys"] == 10 and page["KeyCount"] == len(page["Contents"]) <= 10
        assert page["ContinuationToken"] == token
        seen += [item["Key"] for item in page["Contents"]]
        if not page["IsTruncated"]:
            assert page["NextContinuationToken"] is None
            break
        token = page["NextContinuationToken"]
        assert token not in tokens and bucket_id not in token  # opaque, and it moves on
        tokens.append(token)
    assert len(tokens) == 9
    assert seen == sorted(f"mytestfile_{i}.txt" for i in range(1, 101))


async def test_bad_listing_parameters_are_400(client):
    bucket_id = await create_bucket(client)
    for i in range(3):
        await put_raw(client, bucket_id, f"d/f{i}")
    page = await (await client.get(f"/api/v1/objects/{bucket_id}/d/?limit=1", headers=auth("alice"))).json()
    token = page["NextContinuationToken"]
    other_bucket = await create_bucket(client)
    for path, message in (
        ("?limit=1001", "between 0 and 1000"),
        ("?limit=-1", "between 0 and 1000"),
        ("?limit=ten", "must be an integer"),
        ("?recursive=maybe", "'recursive' must be true or false"),
        ("?ContinuationToken=garbage!", "not a token this server issued"),
        (f"?ContinuationToken={token}&recursive", "another listing"),
    ):
        response = await client.get(f"/api/v1/objects/{bucket_id}/d/{path}", headers=auth("alice"))
        assert response.status == 400, path
        assert message in (await response.json())["error"], path
    response = await client.get(f"/api/v1/objects/{other_bucket}/d/?ContinuationToken={token}",
                                headers=auth("alice"))
    assert response.status == 400
    response = await client.get(f"/api/v1/objects/{bucket_id}/d/?limit=0", headers=auth("alice"))
    assert (await response.json())["MaxKeys"] == 1000  # the Go server's "no limit"


# --- deletes ------------------------------------------------------------------

async def test_delete_file(client, s3_backend, settings):
    """Go TestDeleteFile."""
    bucket_id = await create_bucket(client, "testuser")
    for i in (1, 2, 3):
        await put_form(client, bucket_id, f"mytestfile{i}.txt", user="testuser")
    assert len(await file_keys(client, bucket_id, "testuser")) == 3
    response = await client.delete(f"/api/v1/objects/{bucket_id}/mytestfile1.txt", headers=auth("testuser"))
    assert response.status == 200
    assert await response.json() == {"deleted": ["mytestfile1.txt"]}
    assert sorted(await file_keys(client, bucket_id, "testuser")) == ["mytestfile2.txt", "mytestfile3.txt"]
    assert len(s3_keys(s3_client(s3_backend), settings, bucket_id)) == 2
    response = await client.delete(f"/api/v1/objects/{bucket_id}/mytestfile1.txt", headers=auth("testuser"))
    assert response.status == 404


async def test_delete_of_a_folder_key_is_400(client):
    bucket_id = await create_bucket(client)
    await put_raw(client, bucket_id, "dir/a")
    for path in ("", "dir/"):
        response = await client.delete(f"/api/v1/objects/{bucket_id}/{path}", headers=auth("alice"))
        assert response.status == 400
        assert "needs a file key" in (await response.json())["error"]
    assert await file_keys(client, bucket_id) == ["dir/a"]
    response = await client.head(f"/api/v1/objects/{bucket_id}/dir/", headers=auth("alice"))
    assert response.status == 400


async def test_keys_are_case_sensitive_and_unicode_safe(client):
    bucket_id = await create_bucket(client)
    keys = ["A.txt", "a.txt", "ünï cödé/ファイル.txt", "with space/and+plus&amp.txt", "percent%41.txt"]
    for index, key in enumerate(keys):
        assert (await put_raw(client, bucket_id, quote(key), str(index).encode())).status == 200
    for index, key in enumerate(keys):
        response = await client.get(f"/api/v1/objects/{bucket_id}/{quote(key)}", headers=auth("alice"))
        assert await response.read() == str(index).encode(), key
    assert sorted(await file_keys(client, bucket_id)) == sorted(keys)
    # a fresh uuid names no bucket, whatever the caller
    assert (await client.get(f"/api/v1/objects/{uuid.uuid4()}/A.txt", headers=auth("alice"))).status == 404


def sha256_field(data: bytes) -> str:
    return f"sha-256=:{sha256_b64(data)}:"


@pytest.mark.parametrize("size", [1000, 20 * 2**20 + 5])  # one PutObject; a multipart upload
async def test_declared_sha256_is_verified(client, s3_backend, settings, size):
    bucket_id = await create_bucket(client)
    data = os.urandom(size)
    for header in ("Repr-Digest", "Content-Digest"):
        response = await client.put(f"/api/v1/objects/{bucket_id}/{header}.bin", data=data,
                                    headers={**auth("alice"), header: f"md5=:AAAA:, {sha256_field(data)}"})
        assert response.status == 200, await response.text()
    s3 = s3_client(s3_backend)
    s3_bucket, s3_key = s3_location(settings, bucket_id, "Repr-Digest.bin")
    assert s3.head_object(Bucket=s3_bucket, Key=s3_key)["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()

    wrong = sha256_field(data + b"!")
    response = await client.put(f"/api/v1/objects/{bucket_id}/wrong.bin", data=data,
                                headers={**auth("alice"), "Repr-Digest": wrong})
    assert response.status == 400
    body = await response.json()
    assert "does not match its declared digest" in body["error"]
    assert body["actual"] == hashlib.sha256(data).hexdigest()
    assert sorted(s3_keys(s3, settings, bucket_id)) == [f"{bucket_id}/Content-Digest.bin",
                                                        f"{bucket_id}/Repr-Digest.bin"]
    assert not [u for u in s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
                if u["Key"].startswith(bucket_id)]


@pytest.mark.parametrize("headers, message", [
    ({"Repr-Digest": "sha-256=abc"}, "32-byte byte sequence"),
    ({"Repr-Digest": "sha-256=:AAAA:"}, "32-byte byte sequence"),
    ({"Content-Digest": "sha-256=:not base64!:"}, "not a valid structured field"),
    ({"Repr-Digest": sha256_field(b"a"), "Content-Digest": sha256_field(b"b")}, "declare different"),
])
async def test_bad_digest_headers_are_400(client, s3_backend, settings, headers, message):
    bucket_id = await create_bucket(client)
    response = await client.put(f"/api/v1/objects/{bucket_id}/x", data=b"a", headers={**auth("alice"), **headers})
    assert response.status == 400
    assert message in (await response.json())["error"]
    assert s3_keys(s3_client(s3_backend), settings, bucket_id) == []
