"""Indexed resumable sessions (seed 002) over HTTP on real PostgreSQL and SeaweedFS: 64 MiB in 8
parallel shuffled chunks, missing chunks, exact chunk sizes, per-chunk digests, the whole-file
sha256, abort, access rules and two concurrent writes of one chunk."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
from datetime import datetime, timedelta, timezone

import pytest
from support.chunked import S3View
from support.premises import part_in_s3, part_lease_taken, upload_row
from support.data import MiB, auth, make_bucket, md5_b64, sha256, sha256_b64

from sagestore import context
from sagestore.storage import STAGING_PREFIX

CHUNK = 8 * MiB


@pytest.fixture
def settings(base_settings):
    # the server picks chunks of at least this size (S3's 5 MiB minimum is the floor)
    return base_settings.replace(s3_part_size=CHUNK)


async def initiate(client, bucket_id: str, size: int, user: str = "alice", **extra) -> dict:
    response = await client.post("/api/v1/attachment/initiate", headers=auth(user), json={
        "bucket_id": bucket_id, "fileName": "model.bin", "fileSize": size, **extra})
    assert response.status == 201, await response.text()
    return await response.json()


def chunk_url(session: dict, chunk_id: int | str) -> str:
    return session["uploadUrl"].replace("{chunkId}", str(chunk_id))


async def put_chunk(client, session: dict, chunk_id, data: bytes, user: str = "alice", **headers):
    return await client.put(chunk_url(session, chunk_id), data=data, headers={**auth(user), **headers})


async def status_of(client, session: dict, user: str = "alice") -> dict:
    response = await client.get(f"/api/v1/attachment/session/{session['sessionId']}", headers=auth(user))
    assert response.status == 200, await response.text()
    return await response.json()


async def complete(client, session: dict, user: str = "alice", **body):
    return await client.post(f"/api/v1/attachment/session/{session['sessionId']}/complete", headers=auth(user),
                             json=body or None)


def pieces(data: bytes, size: int = CHUNK) -> dict[int, bytes]:
    return {number: data[start:start + size] for number, start in enumerate(range(0, len(data), size), start=1)}


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_64_mib_in_8_parallel_chunks_in_shuffled_order(client, settings):
    view = S3View(settings)
    bucket_id = await make_bucket(client)
    data = os.urandom(64 * MiB)
    session = await initiate(client, bucket_id, len(data), key="models/m.bin", contentType="application/x-model")
    assert session["chunkSize"] == CHUNK and session["totalChunks"] == 8
    assert session["uploadUrl"] == f"/api/v1/attachment/session/{session['sessionId']}/upload/{{chunkId}}"
    expires = parse_iso(session["expiresAt"])
    now = datetime.now(timezone.utc)
    ttl = timedelta(seconds=settings.upload_ttl)
    assert now + ttl - timedelta(minutes=2) < expires <= now + ttl + timedelta(seconds=5)
    chunks = pieces(data)
    order = list(chunks)
    random.Random(7).shuffle(order)
    assert order != sorted(order)

    async def send(number: int):
        # a mix of the digest headers a client may send
        headers = [{"Content-MD5": md5_b64(chunks[number])},
                   {"Content-Digest": f"sha-256=:{sha256_b64(chunks[number])}:"},
                   {"Digest": f"SHA-256={sha256_b64(chunks[number])}"}, {}][number % 4]
        response = await put_chunk(client, session, number, chunks[number], **headers)
        assert response.status == 200, await response.text()
        answer = await response.json()
        assert answer["chunkId"] == number and answer["size"] == len(chunks[number]) and answer["expiresAt"]
        return number

    assert sorted(await asyncio.gather(*(send(number) for number in order))) == list(range(1, 9))
    status = await status_of(client, session)
    assert status["receivedChunks"] == list(range(1, 9)) and status["missingChunks"] == []
    assert status["bytesReceived"] == len(data) and status["fileName"] == "model.bin"
    assert view.object(bucket_id, "models/m.bin") is None  # nothing visible before completion
    response = await complete(client, session)
    assert response.status == 201, await response.text()
    info = await response.json()
    assert info["size"] == len(data) and info["key"] == "models/m.bin" and info["sessionId"] == session["sessionId"]
    assert info["content_type"] == "application/x-model" and parse_iso(info["expiresAt"])
    assert sha256(view.object(bucket_id, "models/m.bin")) == sha256(data)
    assert view.staging_keys(bucket_id, session["sessionId"]) == []
    again = await complete(client, session)  # a retry after a lost answer gives the same answer
    assert again.status == 201 and (await again.json())["etag"] == info["etag"]


async def test_missing_chunks_at_completion_are_listed(client, settings):
    bucket_id = await make_bucket(client)
    data = os.urandom(5 * CHUNK + 1234)
    session = await initiate(client, bucket_id, len(data))
    assert session["totalChunks"] == 6
    chunks = pieces(data)
    for number in (1, 3, 4, 6):
        assert (await put_chunk(client, session, number, chunks[number])).status == 200
    response = await complete(client, session)
    assert response.status == 400
    body = await response.json()
    assert body["missingChunks"] == [2, 5] and "missing" in body["error"]
    status = await status_of(client, session)
    assert status["missingChunks"] == [2, 5] and status["receivedChunks"] == [1, 3, 4, 6]
    assert status["bytesReceived"] == 3 * CHUNK + 1234 and status["state"] == "open"
    assert S3View(settings).object(bucket_id, "model.bin") is None
    for number in (5, 2):
        assert (await put_chunk(client, session, number, chunks[number])).status == 200
    response = await complete(client, session)
    assert response.status == 201, await response.text()
    assert S3View(settings).object(bucket_id, "model.bin") == data


async def test_chunk_sizes_must_be_exact_and_ids_in_range(client, settings):
    bucket_id = await make_bucket(client)
    data = os.urandom(2 * CHUNK + 10)
    session = await initiate(client, bucket_id, len(data), key="exact.bin")
    chunks = pieces(data)

    async def streamed(blob: bytes):
        yield blob

    cases = [
        (1, chunks[1][:-1], "must be"),          # one byte short
        (1, chunks[1] + b"x", "must be"),        # one byte long (Content-Length says so up front)
        (3, chunks[3] + b"x", "must be"),        # the short last chunk, one byte long
        (3, chunks[3][:-1], "must be"),
        (0, b"x", "out of range"),
        (4, b"x", "out of range"),
        ("abc", b"x", "chunkId"),
        ("-1", b"x", "chunkId"),
        ("\u00b2", b"x", "chunkId"),
    ]
    for chunk_id, body, message in cases:
        response = await put_chunk(client, session, chunk_id, body)
        assert response.status == 400, (chunk_id, len(body))
        assert message in (await response.json())["error"], chunk_id
    response = await put_chunk(client, session, 2, streamed(chunks[2] + b"tail"))  # chunked, too long
    assert response.status == 400
    status = await status_of(client, session)
    assert status["receivedChunks"] == [] and status["bytesReceived"] == 0
    for number, blob in chunks.items():
        assert (await put_chunk(client, session, number, streamed(blob))).status == 200
    assert (await complete(client, session)).status == 201
    assert S3View(settings).object(bucket_id, "exact.bin") == data


async def test_chunk_checksum_mismatch_is_400_and_stores_nothing(client, settings):
    bucket_id = await make_bucket(client)
    data = os.urandom(CHUNK + 100)
    session = await initiate(client, bucket_id, len(data), key="sums.bin")
    chunk = data[:CHUNK]
    other = b"not the bytes"
    bad_headers = [
        {"Content-MD5": md5_b64(other)},
        {"Content-MD5": "not base64!"},
        {"Digest": f"sha-256={sha256_b64(other)}"},
        {"Digest": f"md5={md5_b64(other)}"},
        {"Content-Digest": f"sha-256=:{sha256_b64(other)}:"},
        {"Content-Digest": f"sha-256=:{sha256_b64(chunk)}:, md5=:{md5_b64(other)}:"},
        {"Content-Digest": "sha-256=not-a-byte-sequence"},
        {"Content-Digest": "sha-256=:@@@:"},
        {"Content-Digest": f"sha-512=:{base64.b64encode(hashlib.sha512(chunk).digest()).decode()}:"},
        {"Digest": "unixsum=30637"},
        {"Content-MD5": md5_b64(chunk), "Digest": f"md5={md5_b64(other)}"},
    ]
    for headers in bad_headers:
        response = await put_chunk(client, session, 1, chunk, **headers)
        assert response.status == 400, headers
        assert (await response.json())["error"], headers
    status = await status_of(client, session)
    assert status["receivedChunks"] == []
    response = await put_chunk(client, session, 1, chunk, **{
        "Content-Digest": f"sha-512=:AAAA:, sha-256=:{sha256_b64(chunk)}:", "Content-MD5": md5_b64(chunk)})
    assert response.status == 200, await response.text()
    response = await put_chunk(client, session, 2, data[CHUNK:], Digest=f"MD5={md5_b64(data[CHUNK:])}")
    assert response.status == 200
    assert (await complete(client, session)).status == 201
    assert S3View(settings).object(bucket_id, "sums.bin") == data


async def test_sha256_is_verified_at_completion(client, settings):
    view = S3View(settings)
    bucket_id = await make_bucket(client)
    data = os.urandom(CHUNK + 5)
    wrong = await initiate(client, bucket_id, len(data), key="wrong.bin", sha256="ab" * 32)
    good = await initiate(client, bucket_id, len(data), key="good.bin", sha256=sha256(data))
    for session in (wrong, good):
        for number, blob in pieces(data).items():
            assert (await put_chunk(client, session, number, blob)).status == 200
    response = await complete(client, wrong)
    assert response.status == 400
    body = await response.json()
    assert "sha256 mismatch" in body["error"] and body["sha256"] == sha256(data)
    assert view.object(bucket_id, "wrong.bin") is None
    response = await complete(client, good, sha256="cd" * 32)  # differs from the declared one
    assert response.status == 400
    response = await complete(client, good, sha256=sha256(data))
    assert response.status == 201, await response.text()
    assert (await response.json())["sha256"] == sha256(data)
    assert view.object(bucket_id, "good.bin") == data
    assert view.staging_keys(bucket_id, good["sessionId"]) == []


async def test_abort_removes_every_stored_chunk(client, settings):
    view = S3View(settings)
    bucket_id = await make_bucket(client)
    data = os.urandom(3 * CHUNK)
    plain = await initiate(client, bucket_id, len(data), key="plain.bin")
    hashed = await initiate(client, bucket_id, len(data), key="hashed.bin", sha256=sha256(data))
    for session, numbers in ((plain, (1, 3)), (hashed, (1, 2))):  # a hashed session takes chunks in order
        for number in numbers:
            assert (await put_chunk(client, session, number, pieces(data)[number])).status == 200
    assert len(view.multipart_uploads(bucket_id)) == 2  # both target their keys
    assert view.multipart_uploads(bucket_id, hashed["sessionId"]) == []  # nothing staged
    for session in (plain, hashed):
        response = await client.post(f"/api/v1/attachment/session/{session['sessionId']}/abort",
                                     headers=auth("alice"))
        assert response.status == 204
        assert view.staging_keys(bucket_id, session["sessionId"]) == []
        assert (await client.get(f"/api/v1/attachment/session/{session['sessionId']}",
                                 headers=auth("alice"))).status == 404
        assert (await put_chunk(client, session, 3, pieces(data)[3])).status == 404
        assert (await complete(client, session)).status == 404
    # ListMultipartUploads: nothing left
    assert view.multipart_uploads(bucket_id) == []
    assert view.object(bucket_id, "plain.bin") is None and view.object(bucket_id, "hashed.bin") is None


async def test_initiate_validation_and_access_rules(client):
    bucket_id = await make_bucket(client, grants=[("USER", "bob", "READ")])
    good = {"bucket_id": bucket_id, "fileName": "f.bin", "fileSize": 10}
    for change, message in (({"fileName": None}, "fileName"), ({"fileName": ""}, "fileName"),
                            ({"fileSize": -1}, "fileSize"), ({"fileSize": "10"}, "fileSize"),
                            ({"fileSize": True}, "fileSize"), ({"bucket_id": "nope"}, "UUID"),
                            ({"key": "a/../b"}, "'..'"), ({"key": 7}, "key"), ({"fileName": "dir/.."}, "file name"),
                            ({"sha256": "abc"}, "sha256"), ({"contentType": 5}, "contentType"),
                            ({"verifySha256": "yes"}, "verifySha256"), ({"verifySha256": 1}, "verifySha256")):
        response = await client.post("/api/v1/attachment/initiate", headers=auth("alice"), json={**good, **change})
        assert response.status == 400, change
        assert message in (await response.json())["error"], change
    response = await client.post("/api/v1/attachment/initiate", headers=auth("alice"), data=b"{")
    assert response.status == 400
    assert (await client.post("/api/v1/attachment/initiate", json=good)).status == 401
    assert (await client.post("/api/v1/attachment/initiate", headers=auth("bob"), json=good)).status == 403
    assert (await client.post("/api/v1/attachment/initiate", headers=auth("carol"), json=good)).status == 404
    # the key defaults to the file name's last component
    session = await initiate(client, bucket_id, 10)
    assert session["key"] == "model.bin" and session["totalChunks"] == 1 and session["chunkSize"] >= 5 * MiB
    base = f"/api/v1/attachment/session/{session['sessionId']}"
    for method, path in (("GET", base), ("PUT", base + "/upload/1"), ("POST", base + "/complete"),
                         ("POST", base + "/abort")):
        response = await client.request(method, path, headers=auth("bob"), data=b"0123456789")
        assert response.status == 404, (method, path)
        assert (await response.json())["error"] == "upload not found"
        assert (await client.request(method, path, data=b"0123456789")).status == 401
    assert (await client.get("/api/v1/attachment/session/not-a-uuid", headers=auth("alice"))).status == 404
    assert (await put_chunk(client, session, 1, b"0123456789")).status == 200
    # an upload of another protocol takes no chunks here
    response = await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": "o.bin"}, data=b"abc",
                                headers=auth("alice"))
    offset_upload = (await response.json())["upload_id"]
    response = await client.put(f"/api/v1/attachment/session/{offset_upload}/upload/1", data=b"abc",
                                headers=auth("alice"))
    assert response.status == 400 and "not an indexed session" in (await response.json())["error"]


async def test_large_files_get_larger_chunks_and_at_most_10000_of_them(client):
    bucket_id = await make_bucket(client)
    for size in (10_000 * CHUNK, 10_000 * CHUNK + 1, 10**12):
        session = await initiate(client, bucket_id, size)
        assert session["totalChunks"] <= 10_000 and session["chunkSize"] * session["totalChunks"] >= size
        assert session["chunkSize"] % MiB == 0
        await client.post(f"/api/v1/attachment/session/{session['sessionId']}/abort", headers=auth("alice"))
    # chunks are buffered whole, so at most the max chunk size (150 MB): 3 TiB would need ~315 MiB ones
    response = await client.post("/api/v1/attachment/initiate", headers=auth("alice"), json={
        "bucket_id": bucket_id, "fileName": "huge.bin", "fileSize": 3 * 2**40})
    assert response.status == 413
    assert (await response.json())["max_chunk_size"] == client.server.app[context.SETTINGS].max_chunk_size


async def test_two_concurrent_writes_of_one_chunk_exactly_one_wins(client, settings):
    bucket_id = await make_bucket(client)
    session = await initiate(client, bucket_id, CHUNK, key="race.bin")
    bodies = [os.urandom(CHUNK), os.urandom(CHUNK)]

    async def slow(blob: bytes):
        for start in range(0, len(blob), MiB):
            yield blob[start:start + MiB]
            await asyncio.sleep(0.05)

    responses = await asyncio.gather(*(client.put(chunk_url(session, 1), data=slow(blob), headers=auth("alice"))
                                       for blob in bodies))
    statuses = [response.status for response in responses]
    assert sorted(statuses) == [200, 423], statuses
    winner = bodies[statuses.index(200)]
    assert (await complete(client, session)).status == 201
    assert S3View(settings).object(bucket_id, "race.bin") == winner


async def test_unfinished_sessions_by_bucket_and_key_and_abort(client, settings):
    """GET /api/v1/attachment/sessions: the caller's open uploads with what a resume needs; other users'
    are invisible, a bucket filter needs WRITE, completed and aborted uploads drop out."""
    owner = "uploader-" + os.urandom(4).hex()  # no other test's uploads in the unfiltered list
    bucket_id = await make_bucket(client, owner, grants=[("USER", "bob", "READ")])
    other_bucket = await make_bucket(client, owner)
    data = os.urandom(2 * CHUNK + 5)
    digest = sha256(data)
    first = await initiate(client, bucket_id, len(data), owner, key="a/model.bin", sha256=digest)
    second = await initiate(client, bucket_id, len(data), owner, key="b/other.bin")
    await initiate(client, other_bucket, 10, owner, key="a/model.bin")
    assert (await put_chunk(client, first, 1, pieces(data)[1], owner)).status == 200

    async def listed(params, user=owner):
        response = await client.get("/api/v1/attachment/sessions", params=params, headers=auth(user))
        return response.status, await response.json()

    status, body = await listed({"bucket_id": bucket_id, "key": "a/model.bin"})
    assert status == 200 and [s["sessionId"] for s in body["sessions"]] == [first["sessionId"]]
    found = body["sessions"][0]
    assert found["fileSize"] == len(data) and found["chunkSize"] == CHUNK and found["totalChunks"] == 3
    assert found["receivedChunks"] == [1] and found["missingChunks"] == [2, 3]
    assert found["sha256"] == digest and found["protocol"] == "session" and found["state"] == "open"
    assert found["bytesReceived"] == CHUNK and found["key"] == "a/model.bin"
    status, body = await listed({"bucket_id": bucket_id})
    assert status == 200 and {s["sessionId"] for s in body["sessions"]} == {first["sessionId"], second["sessionId"]}
    status, body = await listed({})
    assert status == 200 and len(body["sessions"]) == 3
    # another user sees none of them; a READ grantee cannot filter by the bucket; anonymous is 401
    status, body = await listed({}, user="carol")
    assert status == 200 and body["sessions"] == []
    assert (await listed({"bucket_id": bucket_id}, user="bob"))[0] == 403
    assert (await client.get("/api/v1/attachment/sessions")).status == 401
    assert (await listed({"key": "a/model.bin"}))[0] == 400
    assert (await listed({"bucket_id": "not-a-uuid"}))[0] == 400
    # abort: gone from the list; completed ones too
    response = await client.post(f"/api/v1/attachment/session/{second['sessionId']}/abort", headers=auth(owner))
    assert response.status == 204
    for number in (2, 3):
        assert (await put_chunk(client, first, number, pieces(data)[number], owner)).status == 200
    assert (await complete(client, first, owner)).status == 201
    status, body = await listed({"bucket_id": bucket_id})
    assert status == 200 and body["sessions"] == []


async def test_session_bytes_received_counts_every_chunk_byte(client, settings):
    """/metrics counts chunk bytes as received, also those of a chunk sent twice."""
    import re

    def value(text):
        match = re.search(r"^sagestore_session_received_bytes_total (\S+)$", text, re.M)
        return float(match.group(1))

    before = value(await (await client.get("/metrics")).text())
    bucket_id = await make_bucket(client)
    data = os.urandom(CHUNK + 10)
    session = await initiate(client, bucket_id, len(data))
    for _ in range(2):
        assert (await put_chunk(client, session, 1, pieces(data)[1])).status == 200
    after = value(await (await client.get("/metrics")).text())
    assert after - before == 2 * CHUNK


def sha256_verifications(client, how: str) -> float:
    registry = client.server.app[context.METRICS].registry
    return registry.get_sample_value("sagestore_upload_sha256_verifications_total", {"how": how}) or 0.0


async def test_declared_sha256_hashes_chunks_in_order_even_shuffled_no_staging_no_copy(client, settings):
    """Chunks sent in parallel, in shuffled order: the ones ahead of their turn are stored in S3 and
    wait, unacknowledged, until the chunks before them are hashed. Completion verifies the declared
    sha256 from the hash state committed with the chunks: no read-back, and the multipart upload
    was at the target key from the start, so nothing is staged or copied."""
    view = S3View(settings)
    app = client.server.app
    bucket_id = await make_bucket(client)
    data = os.urandom(5 * CHUNK + 11)
    before = {how: sha256_verifications(client, how) for how in ("received", "read_back")}
    session = await initiate(client, bucket_id, len(data), key="hashed.bin", sha256=sha256(data))
    row = await upload_row(app, session["sessionId"])
    assert not row["staged"] and row["s3_key"] == view.mapping.object(bucket_id, "hashed.bin").key
    chunks = pieces(data)
    release = asyncio.Event()

    async def held_back(blob: bytes):  # chunk 1 is in flight until released
        yield blob[:MiB]
        await release.wait()
        yield blob[MiB:]

    first = asyncio.create_task(put_chunk(client, session, 1, held_back(chunks[1])))
    await part_lease_taken(app, session["sessionId"], 1)
    early = [asyncio.create_task(put_chunk(client, session, number, chunks[number])) for number in (6, 3)]
    for number in (6, 3):  # stored in S3, but waiting for their turn, in memory (not parked)
        await part_in_s3(app, row, number, len(chunks[number]))
    await asyncio.sleep(0.5)
    assert not any(task.done() for task in early + [first])
    assert (await status_of(client, session))["receivedChunks"] == []
    assert view.staging_keys(bucket_id, session["sessionId"]) == []
    release.set()
    results = await asyncio.gather(*(put_chunk(client, session, number, chunks[number]) for number in (5, 2, 4)))
    assert [response.status for response in results + await asyncio.gather(first, *early)] == [200] * 6
    assert view.staging_keys(bucket_id, session["sessionId"]) == []  # none was parked
    row = await upload_row(app, session["sessionId"])
    assert row["acknowledged_offset"] == len(data) and row["sha256_so_far"] == sha256(data)
    response = await complete(client, session)
    assert response.status == 201, await response.text()
    assert (await response.json())["sha256"] == sha256(data)
    assert view.object(bucket_id, "hashed.bin") == data
    assert view.staging_keys(bucket_id, session["sessionId"]) == []
    assert sha256_verifications(client, "received") == before["received"] + 1
    assert sha256_verifications(client, "read_back") == before["read_back"]
    # a wrong declared sha256 is caught before CompleteMultipartUpload: 400, nothing at the target
    # key (the multipart upload stays open there), and the session can still be aborted
    wrong = await initiate(client, bucket_id, len(data), key="wrong-hashed.bin", sha256="ab" * 32)
    for number, blob in chunks.items():
        assert (await put_chunk(client, wrong, number, blob)).status == 200
    response = await complete(client, wrong)
    assert response.status == 400 and (await response.json())["sha256"] == sha256(data)
    assert view.object(bucket_id, "wrong-hashed.bin") is None
    assert (await status_of(client, wrong))["state"] == "open"
    assert view.multipart_uploads(bucket_id) != []
    assert sha256_verifications(client, "read_back") == before["read_back"]


async def test_a_hashed_chunk_sent_again_is_compared_not_replaced(client, settings):
    """A chunk sent again after it was hashed (a lost answer, a resumed client): the same bytes get
    the recorded answer and reach S3 no more; other bytes get 409 ChunkChanged and change nothing,
    so the session still completes with what was hashed."""
    view = S3View(settings)
    app = client.server.app
    bucket_id = await make_bucket(client)
    data = os.urandom(2 * CHUNK + 3)
    session = await initiate(client, bucket_id, len(data), key="kept.bin", sha256=sha256(data))
    answers = {}
    for number, blob in pieces(data).items():
        response = await put_chunk(client, session, number, blob)
        assert response.status == 200
        answers[number] = await response.json()
    row = await upload_row(app, session["sessionId"])
    stored = view.client.list_parts(Bucket=row["s3_bucket"], Key=row["s3_key"], UploadId=row["s3_upload_id"])
    again = await put_chunk(client, session, 2, data[CHUNK:2 * CHUNK])
    assert again.status == 200 and (await again.json())["etag"] == answers[2]["etag"]
    other = await put_chunk(client, session, 2, os.urandom(CHUNK))
    assert other.status == 409
    body = await other.json()
    assert body["code"] == "ChunkChanged" and "nothing was stored" in body["error"]
    # S3 holds the same parts as before, last modified when first sent: neither retry reached it
    now = view.client.list_parts(Bucket=row["s3_bucket"], Key=row["s3_key"], UploadId=row["s3_upload_id"])
    assert [(p["PartNumber"], p["ETag"], p["LastModified"]) for p in now["Parts"]] == \
        [(p["PartNumber"], p["ETag"], p["LastModified"]) for p in stored["Parts"]]
    response = await complete(client, session)
    assert response.status == 201, await response.text()
    assert view.object(bucket_id, "kept.bin") == data


async def test_chunks_sent_one_by_one_out_of_order_are_parked_then_verified(client, settings):
    """A client that sends chunk 3 first and waits for its answer: after the wait, chunk 3 is
    parked (a staging copy) and acknowledged. Completion before chunk 2 came lists it; after, it
    hashes chunk 3 from its copy, verifies the sha256 without reading the file back, and removes
    the copy."""
    view = S3View(settings)
    app = client.server.app
    bucket_id = await make_bucket(client)
    data = os.urandom(3 * CHUNK)
    read_back = sha256_verifications(client, "read_back")
    session = await initiate(client, bucket_id, len(data), key="turns.bin", sha256=sha256(data))
    chunks = pieces(data)
    for number in (3, 1):
        assert (await put_chunk(client, session, number, chunks[number])).status == 200
    status = await status_of(client, session)
    assert status["receivedChunks"] == [1, 3] and status["missingChunks"] == [2]
    assert view.staging_keys(bucket_id, session["sessionId"]) == [
        f"{STAGING_PREFIX}uploads/{session['sessionId']}/chunk-3"]
    assert (await upload_row(app, session["sessionId"]))["acknowledged_offset"] == CHUNK
    response = await complete(client, session)
    assert response.status == 400 and (await response.json())["missingChunks"] == [2]
    assert (await put_chunk(client, session, 2, chunks[2])).status == 200
    assert app[context.ENGINE].turns.waiting_bytes == 0
    response = await complete(client, session)
    assert response.status == 201, await response.text()
    assert (await response.json())["sha256"] == sha256(data)
    assert view.object(bucket_id, "turns.bin") == data
    assert view.staging_keys(bucket_id, session["sessionId"]) == []
    assert sha256_verifications(client, "read_back") == read_back


async def test_a_chunk_waits_at_most_the_time_limit_then_is_parked(client, settings):
    """Chunk 1 stays in flight (its sender stalls within the body timeout): chunk 2 waits for it
    no longer than the limit, then is parked and answered, while chunk 1 is still coming."""
    view = S3View(settings)
    app = client.server.app
    app[context.ENGINE].turns.wait_seconds = 1.0
    bucket_id = await make_bucket(client)
    data = os.urandom(2 * CHUNK)
    session = await initiate(client, bucket_id, len(data), key="slow-head.bin", sha256=sha256(data))
    chunks = pieces(data)
    release = asyncio.Event()

    async def held_back(blob: bytes):
        yield blob[:MiB]
        await release.wait()
        yield blob[MiB:]

    first = asyncio.create_task(put_chunk(client, session, 1, held_back(chunks[1])))
    await part_lease_taken(app, session["sessionId"], 1)
    response = await put_chunk(client, session, 2, chunks[2])
    assert response.status == 200 and not first.done()
    assert view.staging_keys(bucket_id, session["sessionId"]) == [
        f"{STAGING_PREFIX}uploads/{session['sessionId']}/chunk-2"]
    release.set()
    assert (await first).status == 200
    response = await complete(client, session)
    assert response.status == 201, await response.text()
    assert view.object(bucket_id, "slow-head.bin") == data
    assert view.staging_keys(bucket_id, session["sessionId"]) == []


async def test_verify_sha256_hashes_in_order_and_takes_the_sha256_at_completion(client, settings):
    """verifySha256 at initiate, no sha256: chunks are hashed in order as with a declared one; the
    status shows the hashed prefix and its sha256 (what a client resumes by); a wrong sha256 at
    completion publishes nothing, the right one publishes; without one, the computed sha256 is
    the object's (Repr-Digest)."""
    view = S3View(settings)
    bucket_id = await make_bucket(client)
    data = os.urandom(2 * CHUNK + 9)
    chunks = pieces(data)
    session = await initiate(client, bucket_id, len(data), key="later.bin", verifySha256=True)
    assert (await put_chunk(client, session, 1, chunks[1])).status == 200
    status = await status_of(client, session)
    assert status["bytesHashed"] == CHUNK and status["sha256SoFar"] == sha256(data[:CHUNK])
    for number in (2, 3):
        assert (await put_chunk(client, session, number, chunks[number])).status == 200
    response = await complete(client, session, sha256="ab" * 32)
    assert response.status == 400 and (await response.json())["sha256"] == sha256(data)
    assert view.object(bucket_id, "later.bin") is None and (await status_of(client, session))["state"] == "open"
    response = await complete(client, session, sha256=sha256(data))
    assert response.status == 201, await response.text()
    assert (await response.json())["sha256"] == sha256(data) and view.object(bucket_id, "later.bin") == data
    quiet = await initiate(client, bucket_id, len(data), key="quiet.bin", verifySha256=True)
    for number, blob in chunks.items():
        assert (await put_chunk(client, quiet, number, blob)).status == 200
    response = await complete(client, quiet)
    assert response.status == 201 and (await response.json())["sha256"] == sha256(data)
    got = await client.get(f"/api/v1/objects/{bucket_id}/quiet.bin", headers=auth("alice"))
    assert got.status == 200 and got.headers["Repr-Digest"] == f"sha-256=:{sha256_b64(data)}:"
    # a session without either is not hashed: no prefix in its status
    plain = await initiate(client, bucket_id, len(data), key="plain.bin")
    assert "bytesHashed" not in await status_of(client, plain)
