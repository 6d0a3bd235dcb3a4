"""Offset chunks (Pulp / Dropbox style, seed 001) over HTTP on real PostgreSQL and SeaweedFS:
the 40 MiB flow in unaligned chunks, wrong offsets, a chunk re-sent after a lost response, a
client dying mid-chunk, chunk limits, import_upload (sha256, other targets, 202), access rules."""
from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import pytest
from support.chunked import S3View, send_partial_request
from support.premises import eventually, lease_taken
from support.data import MiB, auth, make_bucket, sha256

MAX_CHUNK = 8 * MiB


@pytest.fixture
def settings(base_settings):
    return base_settings.replace(max_chunk_size=MAX_CHUNK)


async def start(client, bucket_id: str, chunk: bytes, key: str = "data/file.bin", user: str = "alice") -> dict:
    response = await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": key}, data=chunk,
                                headers=auth(user))
    assert response.status == 201, await response.text()
    return await response.json()


async def append(client, upload_id: str, offset: int, chunk: bytes, user: str = "alice"):
    return await client.put("/api/v1/upload", params={"upload_id": upload_id, "offset": str(offset)}, data=chunk,
                            headers=auth(user))


async def offset_of(client, upload_id: str, user: str = "alice") -> int:
    response = await client.get("/api/v1/upload", params={"upload_id": upload_id}, headers=auth(user))
    assert response.status == 200, await response.text()
    return (await response.json())["offset"]


async def import_upload(client, user: str = "alice", **body):
    return await client.post("/api/v1/import_upload", json=body, headers=auth(user))


def assert_expires_within_ttl(answer: dict, ttl: float) -> None:
    expires = parsedate_to_datetime(answer["expires"])  # an RFC 9110 date, in GMT
    assert answer["expires"].endswith(" GMT")
    now = datetime.now(timezone.utc)
    assert now + timedelta(seconds=ttl - 120) < expires <= now + timedelta(seconds=ttl + 5)


async def test_offset_flow_40_mib_in_7_mib_chunks_then_import_with_sha256_to_two_targets(client, settings):
    view = S3View(settings)
    bucket_id = await make_bucket(client)
    other_bucket = await make_bucket(client)
    data = os.urandom(40 * MiB)
    chunks = [data[start:start + 7 * MiB] for start in range(0, len(data), 7 * MiB)]
    first = await start(client, bucket_id, chunks[0])
    upload_id = first["upload_id"]
    assert first["offset"] == 7 * MiB
    assert_expires_within_ttl(first, settings.upload_ttl)
    offset = first["offset"]
    for chunk in chunks[1:]:
        response = await append(client, upload_id, offset, chunk)
        assert response.status == 200, await response.text()
        answer = await response.json()
        assert answer["upload_id"] == upload_id and answer["offset"] == offset + len(chunk)
        assert_expires_within_ttl(answer, settings.upload_ttl)
        offset = answer["offset"]
    assert offset == len(data) == await offset_of(client, upload_id)
    assert view.object(bucket_id, "data/file.bin") is None  # nothing visible before the import

    response = await import_upload(client, upload_id=upload_id, sha256="0" * 64)
    assert response.status == 400
    error = await response.json()
    assert "sha256 mismatch" in error["error"] and "nothing was published" in error["error"]
    assert error["sha256"] == sha256(data)
    assert view.object(bucket_id, "data/file.bin") is None

    response = await import_upload(client, upload_id=upload_id, sha256=sha256(data).upper())
    assert response.status == 201, await response.text()
    info = await response.json()
    assert info["bucket_id"] == bucket_id and info["key"] == "data/file.bin" and info["size"] == len(data)
    assert info["sha256"] == sha256(data) and parsedate_to_datetime(info["expires"])
    assert sha256(view.object(bucket_id, "data/file.bin")) == sha256(data)

    # repeatable until expiry, to other targets: a server-side copy of the retained bytes
    response = await import_upload(client, upload_id=upload_id, bucket_id=other_bucket, key="copies/again.bin")
    assert response.status == 201, await response.text()
    assert (await response.json())["bucket_id"] == other_bucket
    assert sha256(view.object(other_bucket, "copies/again.bin")) == sha256(data)
    assert sha256(view.object(bucket_id, "data/file.bin")) == sha256(data)
    # a repeated import of the first target (a retry after a lost answer) gives the same info
    response = await import_upload(client, upload_id=upload_id)
    assert response.status == 201 and (await response.json())["etag"] == info["etag"]
    # the upload is finished: no more chunks
    response = await append(client, upload_id, len(data), b"more")
    assert response.status == 409


async def test_wrong_offset_answers_400_with_the_current_offset_and_changes_nothing(client, settings):
    bucket_id = await make_bucket(client)
    head = os.urandom(1000)
    upload_id = (await start(client, bucket_id, head, key="o.bin"))["upload_id"]
    for wrong in (0, 999, 1001, 50 * MiB):
        response = await append(client, upload_id, wrong, b"garbage")
        assert response.status == 400
        body = await response.json()
        assert body["offset"] == 1000 and body["upload_id"] == upload_id and "error" in body
        assert "does not match" in body["error"] and body["expires"]
    assert await offset_of(client, upload_id) == 1000
    tail = os.urandom(2000)
    response = await append(client, upload_id, 1000, tail)
    assert response.status == 200 and (await response.json())["offset"] == 3000
    response = await import_upload(client, upload_id=upload_id, sha256=sha256(head + tail))
    assert response.status == 201, await response.text()
    assert S3View(settings).object(bucket_id, "o.bin") == head + tail


async def test_bad_requests_are_refused_and_change_nothing(client):
    bucket_id = await make_bucket(client)
    upload_id = (await start(client, bucket_id, b"abc", key="bad.bin"))["upload_id"]
    cases = [
        ({"upload_id": upload_id}, "offset is required"),
        ({"upload_id": upload_id, "offset": "-1"}, "non-negative"),
        ({"upload_id": upload_id, "offset": "3.0"}, "non-negative"),
        ({"upload_id": upload_id, "offset": "\u00b3"}, "non-negative"),
        ({"upload_id": upload_id, "offset": "3", "bucket_id": bucket_id}, "either"),
        ({"bucket_id": bucket_id}, "key is required"),
        ({"bucket_id": bucket_id, "key": "../escape"}, "'..'"),
        ({"bucket_id": bucket_id, "key": "/abs"}, "start with '/'"),
        ({"bucket_id": "not-a-uuid", "key": "k"}, "not a valid UUID"),
        ({"bucket_id": bucket_id, "key": "k", "offset": "5"}, "offset 0"),
    ]
    for params, message in cases:
        response = await client.put("/api/v1/upload", params=params, data=b"xyz", headers=auth("alice"))
        assert response.status == 400, params
        assert message in (await response.json())["error"], params
    assert await offset_of(client, upload_id) == 3
    for body in ({}, {"upload_id": 5}, {"upload_id": upload_id, "sha256": "xyz"},
                 {"upload_id": upload_id, "key": "a//b"}):
        response = await import_upload(client, **body)
        assert response.status == 400, body
    response = await client.post("/api/v1/import_upload", data=b"not json", headers=auth("alice"))
    assert response.status == 400
    # nobody logged in
    response = await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": "k"}, data=b"x")
    assert response.status == 401
    response = await client.get("/api/v1/upload", params={"upload_id": upload_id})
    assert response.status == 401
    response = await client.get("/api/v1/upload", params={"upload_id": "not-a-uuid"}, headers=auth("alice"))
    assert response.status == 404
    assert await offset_of(client, upload_id) == 3


async def test_chunk_resent_after_a_lost_response_is_harmless(client, settings):
    """The client sends a whole chunk and loses the connection before the answer: the server has
    it. Re-sending it answers 400 with offset == the chunk's end (nothing stored twice); the client
    seeks there, as the seed prescribes, and the file comes out exactly right."""
    bucket_id = await make_bucket(client)
    data = os.urandom(9 * MiB)
    first, second, third = data[:3 * MiB], data[3 * MiB:6 * MiB], data[6 * MiB:]
    upload_id = (await start(client, bucket_id, first, key="lost.bin"))["upload_id"]
    path = f"/api/v1/upload?upload_id={upload_id}&offset={len(first)}"
    await asyncio.to_thread(send_partial_request, client.server.port, "PUT", path, auth("alice"), len(second),
                            second, reset=False)
    async def committed() -> bool:  # the server commits after reading the whole body
        return await offset_of(client, upload_id) == 6 * MiB
    await eventually(committed, "the server committed the chunk whose answer was lost")
    response = await append(client, upload_id, len(first), second)  # the client's retry
    assert response.status == 400
    assert (await response.json())["offset"] == len(first) + len(second)
    assert await offset_of(client, upload_id) == 6 * MiB
    response = await append(client, upload_id, 6 * MiB, third)
    assert response.status == 200 and (await response.json())["offset"] == len(data)
    response = await import_upload(client, upload_id=upload_id, sha256=sha256(data))
    assert response.status == 201, await response.text()
    assert S3View(settings).object(bucket_id, "lost.bin") == data


async def test_resume_after_the_client_dies_mid_chunk(client, settings):
    """The client announces a 7 MiB chunk, sends 3.5 MiB and dies (RST). Whatever the server
    received is kept; the client asks where to go on (its stale offset answers 400 with the
    current one) and finishes the file."""
    bucket_id = await make_bucket(client)
    data = os.urandom(14 * MiB)
    upload_id = (await start(client, bucket_id, data[:7 * MiB], key="died.bin"))["upload_id"]
    path = f"/api/v1/upload?upload_id={upload_id}&offset={7 * MiB}"
    await asyncio.to_thread(send_partial_request, client.server.port, "PUT", path, auth("alice"), 7 * MiB,
                            data[7 * MiB:7 * MiB + 3 * MiB + MiB // 2])
    for _ in range(1200):  # 423 while the dying request still holds the upload, then 400 + offset
        response = await append(client, upload_id, 7 * MiB, b"")
        if response.status != 423:
            break
        assert response.headers["Retry-After"] == "1"
        await asyncio.sleep(0.1)
    offset = (await response.json())["offset"]
    assert 7 * MiB <= offset <= 7 * MiB + 3 * MiB + MiB // 2
    assert offset == await offset_of(client, upload_id)
    response = await append(client, upload_id, offset, data[offset:])
    assert response.status == 200, await response.text()
    response = await import_upload(client, upload_id=upload_id, sha256=sha256(data))
    assert response.status == 201, await response.text()
    assert S3View(settings).object(bucket_id, "died.bin") == data


async def test_chunks_over_the_maximum_get_413_and_change_nothing(client):
    bucket_id = await make_bucket(client)
    too_big = os.urandom(MAX_CHUNK + 1)

    async def streamed(blob: bytes):  # no Content-Length: chunked transfer encoding
        for start_at in range(0, len(blob), MiB):
            yield blob[start_at:start_at + MiB]

    response = await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": "big.bin"}, data=too_big,
                                headers=auth("alice"))
    assert response.status == 413 and (await response.json())["max_chunk_size"] == MAX_CHUNK
    response = await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": "big.bin"},
                                data=streamed(too_big), headers=auth("alice"))
    assert response.status == 413
    upload_id = (await start(client, bucket_id, b"x" * 10, key="big.bin"))["upload_id"]
    response = await append(client, upload_id, 10, too_big)
    assert response.status == 413
    response = await client.put("/api/v1/upload", params={"upload_id": upload_id, "offset": "10"},
                                data=streamed(too_big), headers=auth("alice"))
    assert response.status == 413
    assert await offset_of(client, upload_id) == 10
    response = await append(client, upload_id, 10, too_big[:MAX_CHUNK])  # exactly the maximum is fine
    assert response.status == 200 and (await response.json())["offset"] == 10 + MAX_CHUNK


async def test_import_answers_202_with_a_status_url_while_the_copy_runs(client, settings):
    view = S3View(settings)
    bucket_id = await make_bucket(client)
    data = os.urandom(6 * MiB + 7)
    upload_id = (await start(client, bucket_id, data, key="async.bin"))["upload_id"]
    response = await client.post("/api/v1/import_upload", json={"upload_id": upload_id, "sha256": sha256(data)},
                                 headers={**auth("alice"), "Prefer": "respond-async"})
    assert response.status == 202
    body = await response.json()
    assert body["status"] == "running" and response.headers["Location"] == body["status_url"]
    assert body["status_url"].startswith(f"/api/v1/import_upload/{upload_id}?")
    for _ in range(1200):
        status = await client.get(body["status_url"], headers=auth("alice"))
        if status.status != 202:
            break
        await asyncio.sleep(0.1)
    assert status.status == 200, await status.text()
    info = await status.json()
    assert info["key"] == "async.bin" and info["sha256"] == sha256(data) and info["size"] == len(data)
    assert view.object(bucket_id, "async.bin") == data
    # asking again reports the publication without copying again
    again = await client.get(body["status_url"], headers=auth("alice"))
    assert again.status == 200 and (await again.json())["etag"] == info["etag"]
    # someone else's status URL is not found
    assert (await client.get(body["status_url"], headers=auth("bob"))).status == 404


async def test_another_users_upload_is_404_and_write_is_checked_at_creation_and_import(client, settings):
    view = S3View(settings)
    bucket_id = await make_bucket(client, grants=[("USER", "bob", "READ")])
    shared = await make_bucket(client, grants=[("USER", "bob", "WRITE")])
    upload_id = (await start(client, bucket_id, b"alice's bytes", key="mine.bin"))["upload_id"]
    for response in (await append(client, upload_id, 13, b"bob", user="bob"),
                     await client.get("/api/v1/upload", params={"upload_id": upload_id}, headers=auth("bob")),
                     await import_upload(client, user="bob", upload_id=upload_id),
                     await import_upload(client, user="bob", upload_id=upload_id, bucket_id=shared, key="x")):
        assert response.status == 404
        assert (await response.json())["error"] == "upload not found"
    # bob may read alice's bucket but not write it: 403 at creation; carol cannot see it: 404
    response = await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": "b"}, data=b"x",
                                headers=auth("bob"))
    assert response.status == 403
    response = await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": "c"}, data=b"x",
                                headers=auth("carol"))
    assert response.status == 404
    # bob writes into the shared bucket, then tries to import into alice's: 403 and nothing published
    bobs = (await start(client, shared, b"bob's bytes", key="bob.bin", user="bob"))["upload_id"]
    response = await import_upload(client, user="bob", upload_id=bobs, bucket_id=bucket_id, key="sneaky.bin")
    assert response.status == 403
    assert view.object(bucket_id, "sneaky.bin") is None
    response = await import_upload(client, user="bob", upload_id=bobs)
    assert response.status == 201
    assert view.object(shared, "bob.bin") == b"bob's bytes"
    assert await offset_of(client, upload_id) == 13


async def test_two_concurrent_writes_at_one_offset_exactly_one_wins(client, settings):
    """The second write arrives while the first visibly holds the lease (its row in
    PostgreSQL): 423 with Retry-After, and only the first one's bytes are kept."""
    bucket_id = await make_bucket(client)
    head = os.urandom(MiB)
    upload_id = (await start(client, bucket_id, head, key="race.bin"))["upload_id"]
    first, second = os.urandom(6 * MiB), os.urandom(6 * MiB)
    release = asyncio.Event()

    async def held(blob: bytes):
        yield blob[:MiB]
        await release.wait()
        for start_at in range(MiB, len(blob), MiB):
            yield blob[start_at:start_at + MiB]

    holder = asyncio.create_task(client.put("/api/v1/upload", params={"upload_id": upload_id, "offset": str(MiB)},
                                            data=held(first), headers=auth("alice")))
    await lease_taken(client.server.app, upload_id)
    response = await append(client, upload_id, MiB, second)
    assert response.status == 423 and response.headers["Retry-After"] == "1", await response.text()
    release.set()
    response = await holder
    assert response.status == 200 and (await response.json())["offset"] == 7 * MiB
    assert await offset_of(client, upload_id) == 7 * MiB
    response = await import_upload(client, upload_id=upload_id)
    assert response.status == 201
    assert S3View(settings).object(bucket_id, "race.bin") == head + first
