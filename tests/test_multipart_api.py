"""The Arkindex-shaped S3 multipart proxy over HTTP, on real PostgreSQL and SeaweedFS:
presigned parts PUT with curl, proxied parts, completion rules, abort, ACL rules, checksums."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import tempfile
import uuid

import pytest

from support.data import auth, make_bucket, md5_b64
from sagestore import context
from sagestore.app import create_app
from sagestore.acl import Grant
from sagestore.db import transaction
from sagestore.db import grants as grant_queries
from sagestore.uploads.checksums import MultiDigest

MiB = 2**20


async def stored(client, bucket_id: str, key: str) -> bytes | None:
    app = client.server.app
    return await app[context.STORE].read_all(app[context.MAPPING].object(bucket_id, key))


async def start(client, bucket_id: str, key: str = "big/file.bin", user: str = "alice", **extra) -> dict:
    response = await client.post("/api/v1/multipart/", headers=auth(user), json={
        "object_type": "model_version", "object_id": bucket_id, "key": key, **extra})
    assert response.status == 201, await response.text()
    return await response.json()


async def curl_put(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    with tempfile.NamedTemporaryFile() as body:
        body.write(data)
        body.flush()
        args = ["curl", "-s", "-X", "PUT", "--data-binary", f"@{body.name}", "-D", "-", "-o", "/dev/stderr", url]
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
    lines = [line for line in out.decode().split("\r\n") if line]
    status_lines = [line for line in lines if line.startswith("HTTP/")]
    response_headers = {}
    for line in lines:
        if ":" in line and not line.startswith("HTTP/"):
            name, value = line.split(":", 1)
            response_headers[name.strip().lower()] = value.strip()
    return int(status_lines[-1].split()[1]), response_headers, err.decode()


async def test_presigned_parts_with_curl_and_content_md5(client):
    bucket_id = await make_bucket(client)
    created = await start(client, bucket_id)
    assert created["part_size_min"] == 5 * MiB and created["max_parts"] == 10000 and created["expires"]
    upload_id = created["upload_id"]
    data = os.urandom(15 * MiB)
    parts = []
    for number in (1, 2, 3):
        chunk = data[(number - 1) * 5 * MiB:number * 5 * MiB]
        response = await client.post("/api/v1/multipart/part/", headers=auth("alice"), json={
            "object_type": "model_version", "object_id": bucket_id, "upload_id": upload_id,
            "part_number": number, "md5_hash": md5_b64(chunk)})
        assert response.status == 200
        url = (await response.json())["url"]
        status, _, _ = await curl_put(url, chunk, {"Content-MD5": md5_b64(b"not the bytes")})
        assert status in (400, 403)  # a wrong Content-MD5 is refused by S3
        status, headers, error = await curl_put(url, chunk, {"Content-MD5": md5_b64(chunk)})
        assert status == 200, error
        parts.append({"part_number": number, "etag": headers["etag"], "md5_hash": md5_b64(chunk)})
    assert await stored(client, bucket_id, "big/file.bin") is None  # nothing visible before complete
    response = await client.post("/api/v1/multipart/complete/", headers=auth("alice"), json={
        "object_type": "model_version", "object_id": bucket_id, "upload_id": upload_id, "parts": parts})
    assert response.status == 201, await response.text()
    info = await response.json()
    assert info["size"] == len(data) and info["key"] == "big/file.bin" and info["bucket_id"] == bucket_id
    assert hashlib.sha256(await stored(client, bucket_id, "big/file.bin")).hexdigest() == \
        hashlib.sha256(data).hexdigest()
    status = await (await client.get(f"/api/v1/multipart/{upload_id}/", headers=auth("alice"))).json()
    assert status["state"] == "completed" and [p["part_number"] for p in status["parts"]] == [1, 2, 3]


async def test_proxied_parts_four_in_parallel(client):
    bucket_id = await make_bucket(client, bucket_type="training-data")
    created = await client.post("/api/v1/multipart/", headers=auth("alice"), json={
        "object_type": "data_file", "object_id": bucket_id, "key": "train.tar"})
    upload_id = (await created.json())["upload_id"]
    data = os.urandom(17 * MiB)
    chunks = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    assert len(chunks) == 4

    async def put(number: int, chunk: bytes):
        response = await client.put(f"/api/v1/multipart/{upload_id}/parts/{number}", data=chunk,
                                    headers={**auth("alice"), "Content-MD5": md5_b64(chunk)})
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body == {"part_number": number, "etag": response.headers["ETag"], "size": len(chunk)}
        return body

    results = await asyncio.gather(*(put(n, chunk) for n, chunk in enumerate(chunks, start=1)))
    status = await (await client.get(f"/api/v1/multipart/{upload_id}/", headers=auth("alice"))).json()
    assert status["state"] == "open" and status["received"] == len(data) and len(status["parts"]) == 4
    assert await stored(client, bucket_id, "train.tar") is None
    response = await client.post("/api/v1/multipart/complete/", headers=auth("alice"), json={
        "object_type": "data_file", "object_id": bucket_id, "upload_id": upload_id,
        "parts": [{"part_number": r["part_number"], "etag": r["etag"]} for r in results]})
    assert response.status == 201
    assert await stored(client, bucket_id, "train.tar") == data


async def test_proxied_part_with_bad_md5_stores_nothing(client):
    bucket_id = await make_bucket(client)
    upload_id = (await start(client, bucket_id))["upload_id"]
    response = await client.put(f"/api/v1/multipart/{upload_id}/parts/1", data=b"x" * 1000,
                                headers={**auth("alice"), "Content-MD5": md5_b64(b"y")})
    assert response.status == 400 and "Content-MD5" in (await response.json())["error"]
    response = await client.put(f"/api/v1/multipart/{upload_id}/parts/1", data=b"x",
                                headers={**auth("alice"), "Content-MD5": "***"})
    assert response.status == 400
    response = await client.put(f"/api/v1/multipart/{upload_id}/parts/0", data=b"x", headers=auth("alice"))
    assert response.status == 400
    status = await (await client.get(f"/api/v1/multipart/{upload_id}/", headers=auth("alice"))).json()
    assert status["parts"] == []
    app = client.server.app
    upload = await app[context.ENGINE].get(upload_id, "alice")
    assert await app[context.STORE].list_parts(app[context.ENGINE].objects.mpu(upload), upload.s3_upload_id) == []


async def test_complete_rejects_wrong_etag_out_of_order_and_small_middle_part(client):
    bucket_id = await make_bucket(client)
    upload_id = (await start(client, bucket_id))["upload_id"]
    sizes = {1: 5 * MiB, 2: MiB, 3: 5 * MiB}
    etags = {}
    for number, size in sizes.items():
        response = await client.put(f"/api/v1/multipart/{upload_id}/parts/{number}", data=os.urandom(size),
                                    headers=auth("alice"))
        etags[number] = (await response.json())["etag"]

    async def complete(parts):
        response = await client.post("/api/v1/multipart/complete/", headers=auth("alice"), json={
            "object_type": "model_version", "object_id": bucket_id, "upload_id": upload_id, "parts": parts})
        return response.status, await response.json()

    wrong_etag = [{"part_number": 1, "etag": '"0123456789abcdef0123456789abcdef"'}]
    status, body = await complete(wrong_etag)
    assert status == 400 and body["code"] == "InvalidPart" and "could not be found" in body["error"]
    status, body = await complete([{"part_number": 3, "etag": etags[3]}, {"part_number": 1, "etag": etags[1]}])
    assert status == 400 and body["code"] == "InvalidPartOrder" and "ascending order" in body["error"]
    status, body = await complete([{"part_number": n, "etag": etags[n]} for n in (1, 2, 3)])
    assert status == 400 and body["code"] == "EntityTooSmall" and "smaller than the minimum" in body["error"]
    status, body = await complete([{"part_number": 1, "etag": 7}])
    assert status == 400
    assert await stored(client, bucket_id, "big/file.bin") is None
    # the upload is still open and completes with a valid list (parts may be skipped)
    status, body = await complete([{"part_number": 1, "etag": etags[1]}, {"part_number": 3, "etag": etags[3]}])
    assert status == 201 and body["size"] == 10 * MiB


async def test_abort_leaves_no_multipart_upload(client):
    bucket_id = await make_bucket(client)
    upload_id = (await start(client, bucket_id))["upload_id"]
    await client.put(f"/api/v1/multipart/{upload_id}/parts/1", data=os.urandom(MiB), headers=auth("alice"))
    app = client.server.app
    s3_bucket = app[context.MAPPING].s3_bucket(bucket_id)
    store = app[context.STORE]
    assert len(await store.list_multipart_uploads(s3_bucket, prefix=f"{bucket_id}/")) == 1
    response = await client.post("/api/v1/multipart/abort/", headers=auth("alice"), json={
        "object_type": "model_version", "object_id": bucket_id, "upload_id": upload_id})
    assert response.status == 204
    assert await store.list_multipart_uploads(s3_bucket, prefix=f"{bucket_id}/") == []
    response = await client.get(f"/api/v1/multipart/{upload_id}/", headers=auth("alice"))
    assert response.status == 404
    response = await client.put(f"/api/v1/multipart/{upload_id}/parts/2", data=b"x", headers=auth("alice"))
    assert response.status == 404


async def test_no_object_visible_before_complete(client):
    bucket_id = await make_bucket(client)
    upload_id = (await start(client, bucket_id, key="hidden.bin"))["upload_id"]
    response = await client.put(f"/api/v1/multipart/{upload_id}/parts/1", data=os.urandom(2 * MiB),
                                headers=auth("alice"))
    etag = (await response.json())["etag"]
    app = client.server.app
    page = await app[context.STORE].list(app[context.MAPPING].folder(bucket_id), delimiter=None)
    assert page.contents == []
    assert await app[context.STORE].head(app[context.MAPPING].object(bucket_id, "hidden.bin")) is None
    response = await client.post("/api/v1/multipart/complete/", headers=auth("alice"), json={
        "object_type": "file", "object_id": bucket_id, "upload_id": upload_id,
        "parts": [{"part_number": 1, "etag": etag}]})
    assert response.status == 201
    assert (await app[context.STORE].head(app[context.MAPPING].object(bucket_id, "hidden.bin"))).size == 2 * MiB


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
async def test_checksum_algorithms_end_to_end(client, algorithm):
    """A proxied part with x-amz-checksum-*, a presigned part with the checksum signed in, a
    wrong checksum refused for each path, and the object's checksum as S3 computes it."""
    bucket_id = await make_bucket(client)
    created = await start(client, bucket_id, key=f"sum-{algorithm}.bin", checksum_algorithm=algorithm)
    assert created["checksum_algorithm"] == algorithm
    upload_id = created["upload_id"]
    name = algorithm.lower()
    first, second = os.urandom(5 * MiB), os.urandom(MiB + 7)

    def checksum(data: bytes) -> str:
        digest = MultiDigest([name])
        digest.update(data)
        return digest.b64(name)

    header = f"x-amz-checksum-{name}"
    response = await client.put(f"/api/v1/multipart/{upload_id}/parts/1", data=first,
                                headers={**auth("alice"), header: checksum(second)})
    assert response.status == 400
    response = await client.put(f"/api/v1/multipart/{upload_id}/parts/1", data=first,
                                headers={**auth("alice"), header: checksum(first)})
    assert response.status == 200 and response.headers[header] == checksum(first)
    first_etag = response.headers["ETag"]
    response = await client.post("/api/v1/multipart/part/", headers=auth("alice"), json={
        "object_type": "model_version", "object_id": bucket_id, "upload_id": upload_id, "part_number": 2,
        "checksum": checksum(second)})
    url = (await response.json())["url"]
    status, _, _ = await curl_put(url, second, {header: checksum(first)})
    assert status in (400, 403)
    status, headers, error = await curl_put(url, second, {header: checksum(second)})
    assert status == 200, error
    response = await client.post("/api/v1/multipart/complete/", headers=auth("alice"), json={
        "object_type": "model_version", "object_id": bucket_id, "upload_id": upload_id, "parts": [
            {"part_number": 1, "etag": first_etag},
            {"part_number": 2, "etag": headers["etag"], "checksum": checksum(second)}]})
    assert response.status == 201, await response.text()
    app = client.server.app
    location = app[context.MAPPING].object(bucket_id, f"sum-{algorithm}.bin")
    head = await app[context.STORE].client.head_object(Bucket=location.bucket, Key=location.key,
                                                       ChecksumMode="ENABLED")
    if algorithm == "CRC64NVME":  # a full-object checksum
        expected = checksum(first + second)
    else:  # composite: the checksum of the parts' checksums, "-<parts>"
        digest = MultiDigest([name])
        digest.update(base64.b64decode(checksum(first)) + base64.b64decode(checksum(second)))
        expected = f"{digest.b64(name)}-2"
    assert head["Checksum" + algorithm] == expected
    assert await stored(client, bucket_id, f"sum-{algorithm}.bin") == first + second


async def test_create_validation(client):
    bucket_id = await make_bucket(client)
    cases = [
        {"object_type": "model_version", "object_id": bucket_id},  # no key
        {"object_type": "model_version", "object_id": bucket_id, "key": "../x"},
        {"object_type": "model_version", "object_id": bucket_id, "key": "k", "checksum_algorithm": "MD5"},
        {"object_type": "thing", "object_id": bucket_id, "key": "k"},
        {"object_type": "model_version", "object_id": "not-a-uuid", "key": "k"},
        {"object_type": "data_file", "object_id": bucket_id, "key": "k"},  # model bucket
    ]
    for body in cases:
        response = await client.post("/api/v1/multipart/", headers=auth("alice"), json=body)
        assert response.status == 400, body
        assert "error" in await response.json()
    response = await client.post("/api/v1/multipart/", headers=auth("alice"), data=b"{nope")
    assert response.status == 400


async def test_access_rules_for_every_endpoint_and_caller_kind(client):
    """404: missing, unreadable, archived, another user's/bucket's/key's upload; 403: readable
    but not writable; 401: anonymous; 400: object_type does not fit the bucket."""
    writers = [("GROUP", "g-write", "WRITE"), ("USER", "wendy", "WRITE")]
    readers = [("USER", "rita", "READ"), ("GROUP", "g-read", "READ")]
    bucket_id = await make_bucket(client, grants=writers + readers)
    public_bucket = await make_bucket(client, grants=[("GROUP", "AllUsers", "READ")])
    other_bucket = await make_bucket(client)
    archived = await make_bucket(client, grants=writers, archived=True)
    alice_upload = (await start(client, bucket_id, key="a.bin"))["upload_id"]
    other_upload = (await start(client, other_bucket, key="a.bin"))["upload_id"]

    callers = {
        "anonymous": ({}, 401),
        "stranger": (auth("mallory"), 404),
        "user reader": (auth("rita"), 403),
        "group reader": (auth("gus", ("g-read",)), 403),
    }
    shared = {"object_type": "model_version", "object_id": bucket_id, "upload_id": alice_upload}

    async def call(endpoint: str, headers: dict, body: dict | None = None, upload: str = alice_upload):
        if endpoint == "create":
            return await client.post("/api/v1/multipart/", headers=headers,
                                     json={**(body or shared), "key": "n.bin"})
        if endpoint == "part":
            return await client.post("/api/v1/multipart/part/", headers=headers,
                                     json={**(body or shared), "part_number": 1})
        if endpoint == "complete":
            return await client.post("/api/v1/multipart/complete/", headers=headers,
                                     json={**(body or shared), "parts": [{"part_number": 1, "etag": "x"}]})
        if endpoint == "abort":
            return await client.post("/api/v1/multipart/abort/", headers=headers, json=body or shared)
        if endpoint == "put":
            return await client.put(f"/api/v1/multipart/{upload}/parts/1", headers=headers, data=b"x")
        return await client.get(f"/api/v1/multipart/{upload}/", headers=headers)

    body_endpoints = ["create", "part", "complete", "abort"]
    for endpoint in body_endpoints:
        for kind, (headers, expected) in callers.items():
            response = await call(endpoint, headers)
            assert response.status == expected, (endpoint, kind, response.status)
            assert "error" in await response.json()
        # a public bucket: anybody may read it, so a stranger learns 403, and anonymous 401
        response = await call(endpoint, auth("mallory"), {**shared, "object_id": public_bucket})
        assert response.status == 403, endpoint
        response = await call(endpoint, {}, {**shared, "object_id": public_bucket})
        assert response.status == 401, endpoint
        # archived bucket: even writers see 404
        response = await call(endpoint, auth("wendy"), {**shared, "object_id": archived})
        assert response.status == 404, endpoint
        # a bucket that does not exist
        response = await call(endpoint, auth("alice"), {**shared, "object_id": str(uuid.uuid4())})
        assert response.status == 404, endpoint
        # object_type that does not fit the bucket type
        response = await call(endpoint, auth("alice"), {**shared, "object_type": "data_file"})
        assert response.status == 400, endpoint
    for endpoint in ("part", "complete", "abort"):
        # a writer who is not the upload's owner, an upload of another bucket, another key, garbage ids
        for headers, body in ((auth("wendy"), shared), (auth("gina", ("g-write",)), shared),
                              (auth("alice"), {**shared, "upload_id": other_upload}),
                              (auth("alice"), {**shared, "key": "other.bin"}),
                              (auth("alice"), {**shared, "upload_id": str(uuid.uuid4())}),
                              (auth("alice"), {**shared, "upload_id": "garbage"})):
            response = await call(endpoint, headers, body)
            assert response.status == 404, (endpoint, headers, body)
    for endpoint in ("put", "get"):
        for headers in (auth("mallory"), auth("wendy"), auth("rita")):
            assert (await call(endpoint, headers)).status == 404, endpoint  # not their upload
        assert (await call(endpoint, {})).status == 401
        assert (await call(endpoint, auth("alice"), upload=str(uuid.uuid4()))).status == 404
    # writers through a user or group grant may start uploads of their own
    for headers in (auth("wendy"), auth("gina", ("g-write",))):
        assert (await call("create", headers)).status == 201
    # the owner who lost write access: 403 on their own upload's proxied part, GET still works
    wendy_upload = (await (await call("create", auth("wendy"))).json())["upload_id"]
    async with transaction(client.server.app[context.DB]) as cur:
        await grant_queries.remove(cur, bucket_id, "USER", "wendy", "WRITE")
        await grant_queries.add(cur, bucket_id, Grant("USER", "wendy", "READ"))
    # as the permissions handler does after its commit; otherwise this instance learns of the change
    # from PostgreSQL's notification, within the ACL cache's bound, which is not what this test is about
    client.server.app[context.ACL].invalidate(bucket_id)
    assert (await call("put", auth("wendy"), upload=wendy_upload)).status == 403
    assert (await call("get", auth("wendy"), upload=wendy_upload)).status == 200
    assert (await call("abort", auth("wendy"), {**shared, "upload_id": wendy_upload})).status == 403
    # nothing above changed alice's upload
    status = await (await call("get", auth("alice"))).json()
    assert status["state"] == "open" and status["parts"] == []


async def test_s3_400_at_completion_is_a_400_with_s3_message_and_upload_stays_open(client):
    """A SHA256 upload completed without the presigned part's checksum: S3 refuses with HTTP 400."""
    bucket_id = await make_bucket(client)
    upload_id = (await start(client, bucket_id, key="s3-400.bin", checksum_algorithm="SHA256"))["upload_id"]
    response = await client.post("/api/v1/multipart/part/", headers=auth("alice"), json={
        "object_type": "model_version", "object_id": bucket_id, "upload_id": upload_id, "part_number": 1})
    status, headers, error = await curl_put((await response.json())["url"], b"tiny", {})
    assert status == 200, error
    body = {"object_type": "model_version", "object_id": bucket_id, "upload_id": upload_id,
            "parts": [{"part_number": 1, "etag": headers["etag"]}]}
    response = await client.post("/api/v1/multipart/complete/", headers=auth("alice"), json=body)
    assert response.status == 400
    answer = await response.json()
    assert answer["error"] == "Invalid Request" and answer["code"] == "InvalidRequest"
    status = await (await client.get(f"/api/v1/multipart/{upload_id}/", headers=auth("alice"))).json()
    assert status["state"] == "open"
    body["parts"][0]["checksum"] = base64.b64encode(hashlib.sha256(b"tiny").digest()).decode()
    response = await client.post("/api/v1/multipart/complete/", headers=auth("alice"), json=body)
    assert response.status == 201
    assert await stored(client, bucket_id, "s3-400.bin") == b"tiny"


async def test_backend_failures_are_502_and_503_json(aiohttp_client, settings):
    """S3 refusing us (wrong credentials) -> 502; S3 unreachable -> 503; both JSON, no traceback."""
    refused = await aiohttp_client(create_app(settings.replace(
        s3_secret_key="not-the-secret", s3_create_buckets=False)))
    bucket_id = await make_bucket(refused)
    response = await refused.post("/api/v1/multipart/", headers=auth("alice"), json={
        "object_type": "file", "object_id": bucket_id, "key": "k"})
    assert response.status == 502 and "object storage error" in (await response.json())["error"]
    unreachable = await aiohttp_client(create_app(settings.replace(
        s3_endpoint="http://127.0.0.1:9", s3_create_buckets=False)))
    response = await unreachable.post("/api/v1/multipart/", headers=auth("alice"), json={
        "object_type": "file", "object_id": bucket_id, "key": "k"})
    assert response.status == 503 and "unavailable" in (await response.json())["error"]


async def test_proxied_part_cut_off_stores_nothing_and_frees_the_part(client):
    bucket_id = await make_bucket(client)
    upload_id = (await start(client, bucket_id, key="cut.bin"))["upload_id"]
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    head = (f"PUT /api/v1/multipart/{upload_id}/parts/1 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: sage user:alice\r\nContent-Length: {6 * MiB}\r\n\r\n")
    writer.write(head.encode() + os.urandom(MiB))
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.transport.abort()
    data = os.urandom(6 * MiB)
    for _ in range(50):  # the server notices the disconnect and releases the part lease
        response = await client.put(f"/api/v1/multipart/{upload_id}/parts/1", data=data, headers=auth("alice"))
        if response.status != 423:
            break
        await asyncio.sleep(0.1)
    assert response.status == 200
    status = await (await client.get(f"/api/v1/multipart/{upload_id}/", headers=auth("alice"))).json()
    assert status["parts"] == [{"part_number": 1, "size": 6 * MiB, "etag": response.headers["ETag"]}]
