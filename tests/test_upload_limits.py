"""Issue 18, items High 1-2 and Medium 5, in process: --max-upload-size on every part, append and
completion (multipart proxy, offset chunks); proxied parts and session chunks at most the max chunk
size; a wait for the part-buffer budget ends in 503 with Retry-After; one user's uploads in flight
are capped (429) while another user's go on."""
from __future__ import annotations

import asyncio
import os

import aiohttp
from support.apps import AppServer
from support.data import auth, insert_bucket

from sagestore import context
from sagestore.app import create_app

MiB = 2**20


async def app_client(aiohttp_client, settings, **overrides):
    client = await aiohttp_client(AppServer(create_app(settings.replace(**overrides))))
    bucket_id = await insert_bucket(client.server.app[context.DB], "alice",
                                       grants=[("USER", "bob", "WRITE"), ("USER", "bob", "READ")])
    return client, bucket_id


async def stored(client, bucket_id: str, key: str) -> bytes | None:
    app = client.server.app
    return await app[context.STORE].read_all(app[context.MAPPING].object(bucket_id, key))


async def new_multipart(client, bucket_id: str, key: str, user: str = "alice") -> str:
    response = await client.post("/api/v1/multipart/", headers=auth(user), json={
        "object_type": "file", "object_id": bucket_id, "key": key})
    assert response.status == 201, await response.text()
    return (await response.json())["upload_id"]


async def test_multipart_parts_and_completion_respect_the_max_upload_size(aiohttp_client, settings):
    client, bucket_id = await app_client(aiohttp_client, settings, max_upload_size=8 * MiB)
    upload_id = await new_multipart(client, bucket_id, "limited.bin")
    first = os.urandom(6 * MiB)
    response = await client.put(f"/api/v1/multipart/{upload_id}/parts/1", data=first, headers=auth("alice"))
    assert response.status == 200
    etag = response.headers["ETag"]
    for body in (os.urandom(6 * MiB), _chunked(os.urandom(6 * MiB))):  # declared, and not declared
        response = await client.put(f"/api/v1/multipart/{upload_id}/parts/2", data=body, headers=auth("alice"))
        assert response.status == 413, await response.text()
        answer = await response.json()
        assert "maximum" in answer["error"] and answer["max_upload_size"] == 8 * MiB
    # a part replaced by one of the same size is fine: only the other parts count
    response = await client.put(f"/api/v1/multipart/{upload_id}/parts/1", data=first, headers=auth("alice"))
    assert response.status == 200
    status = await (await client.get(f"/api/v1/multipart/{upload_id}/", headers=auth("alice"))).json()
    assert [part["part_number"] for part in status["parts"]] == [1] and status["received"] == 6 * MiB
    # a presigned part goes straight to S3, past the server: completion refuses the total
    presigned = await client.post("/api/v1/multipart/part/", headers=auth("alice"), json={
        "object_type": "file", "object_id": bucket_id, "upload_id": upload_id, "part_number": 2})
    url = (await presigned.json())["url"]
    async with aiohttp.ClientSession() as session:
        async with session.put(url, data=os.urandom(6 * MiB)) as direct:
            assert direct.status == 200
            second_etag = direct.headers["ETag"]
    done = await client.post("/api/v1/multipart/complete/", headers=auth("alice"), json={
        "object_type": "file", "object_id": bucket_id, "upload_id": upload_id,
        "parts": [{"part_number": 1, "etag": etag}, {"part_number": 2, "etag": second_etag}]})
    assert done.status == 413, await done.text()
    assert "maximum upload size" in (await done.json())["error"]
    assert await stored(client, bucket_id, "limited.bin") is None
    # the upload stays open: completing with what fits works
    done = await client.post("/api/v1/multipart/complete/", headers=auth("alice"), json={
        "object_type": "file", "object_id": bucket_id, "upload_id": upload_id,
        "parts": [{"part_number": 1, "etag": etag}]})
    assert done.status == 201, await done.text()
    assert await stored(client, bucket_id, "limited.bin") == first


async def test_offset_chunks_respect_the_max_upload_size(aiohttp_client, settings):
    client, bucket_id = await app_client(aiohttp_client, settings, max_upload_size=8 * MiB)
    first = os.urandom(6 * MiB)
    response = await client.put(f"/api/v1/upload?bucket_id={bucket_id}&key=offset.bin", data=first,
                                headers=auth("alice"))
    assert response.status == 201, await response.text()
    upload_id = (await response.json())["upload_id"]
    for body in (os.urandom(6 * MiB), _chunked(os.urandom(6 * MiB))):
        response = await client.put(f"/api/v1/upload?upload_id={upload_id}&offset={6 * MiB}", data=body,
                                    headers=auth("alice"))
        assert response.status == 413, await response.text()
        assert "maximum upload size" in (await response.json())["error"]
    state = await (await client.get(f"/api/v1/upload?upload_id={upload_id}", headers=auth("alice"))).json()
    assert state["offset"] == 6 * MiB  # nothing of the refused chunks was kept
    rest = os.urandom(2 * MiB)
    response = await client.put(f"/api/v1/upload?upload_id={upload_id}&offset={6 * MiB}", data=rest,
                                headers=auth("alice"))
    assert response.status == 200 and (await response.json())["offset"] == 8 * MiB
    response = await client.put(f"/api/v1/upload?upload_id={upload_id}&offset={8 * MiB}", data=b"x",
                                headers=auth("alice"))
    assert response.status == 413
    done = await client.post("/api/v1/import_upload", headers=auth("alice"), json={"upload_id": upload_id})
    assert done.status in (200, 201), await done.text()
    assert await stored(client, bucket_id, "offset.bin") == first + rest


async def test_proxied_parts_and_session_chunks_are_at_most_the_max_chunk_size(aiohttp_client, settings):
    client, bucket_id = await app_client(aiohttp_client, settings, max_chunk_size=6 * MiB)
    upload_id = await new_multipart(client, bucket_id, "chunky.bin")
    response = await client.put(f"/api/v1/multipart/{upload_id}/parts/1", data=os.urandom(6 * MiB + 1),
                                headers=auth("alice"))
    assert response.status == 413
    answer = await response.json()
    assert answer["max_chunk_size"] == 6 * MiB and "presigned" in answer["error"]
    response = await client.put(f"/api/v1/multipart/{upload_id}/parts/1", data=os.urandom(6 * MiB),
                                headers=auth("alice"))
    assert response.status == 200
    # a session's chunks are at least the S3 part size (16 MiB here): more than this server buffers
    response = await client.post("/api/v1/attachment/initiate", headers=auth("alice"), json={
        "bucket_id": bucket_id, "fileName": "s.bin", "fileSize": MiB})
    assert response.status == 413
    assert (await response.json())["max_chunk_size"] == 6 * MiB


async def test_a_wait_for_the_budget_ends_in_503_and_one_user_is_capped(aiohttp_client, settings):
    """Budget 8 MiB (waits 5 s), two uploads per user: alice's slow part holds 7 MiB of bytes it has
    received; bob's 5 MiB part gets 503 with Retry-After once the wait is over; alice's third
    concurrent upload waits for a slot as long, then gets 429; both go through once alice's part is done."""
    client, bucket_id = await app_client(aiohttp_client, settings, part_buffer_budget=8 * MiB, budget_wait=5.0,
                                         uploads_per_user=2)
    held = await new_multipart(client, bucket_id, "held.bin")
    go_on = asyncio.Event()
    slow_data = os.urandom(7 * MiB + 1)

    async def slow_body():
        yield slow_data[:7 * MiB]
        await go_on.wait()
        yield slow_data[7 * MiB:]
    slow = asyncio.create_task(client.put(f"/api/v1/multipart/{held}/parts/1", data=slow_body(),
                                          headers=auth("alice")))
    engine = client.server.app[context.ENGINE]
    for _ in range(200):
        if engine.memory.used >= 7 * MiB:
            break
        await asyncio.sleep(0.05)
    assert engine.memory.used >= 7 * MiB
    other = await new_multipart(client, bucket_id, "bob.bin", user="bob")
    response = await client.put(f"/api/v1/multipart/{other}/parts/1", data=os.urandom(5 * MiB), headers=auth("bob"))
    assert response.status == 503, await response.text()
    assert response.headers["Retry-After"].isdigit() and "retry" in (await response.json())["error"]
    # alice: one slow part in flight, one more allowed, the third waits for a slot, then is refused
    second = asyncio.create_task(client.put(f"/api/v1/multipart/{held}/parts/2", data=_stalled(go_on),
                                            headers=auth("alice")))
    for _ in range(200):
        if sum(engine.slots._in_flight.values()) >= 2:
            break
        await asyncio.sleep(0.05)
    assert engine.slots._in_flight == {"alice": 2}
    response = await client.put(f"/api/v1/multipart/{held}/parts/3", data=b"x", headers=auth("alice"))
    assert response.status == 429 and response.headers["Retry-After"].isdigit()
    assert "in flight" in (await response.json())["error"]
    go_on.set()
    assert (await slow).status == 200
    assert (await second).status == 200
    assert engine.memory.used == 0
    response = await client.put(f"/api/v1/multipart/{other}/parts/1", data=os.urandom(5 * MiB), headers=auth("bob"))
    assert response.status == 200


async def _chunked(data: bytes):
    """A body without Content-Length (chunked transfer coding)."""
    for start in range(0, len(data), MiB):
        yield data[start:start + MiB]


async def _stalled(go_on: asyncio.Event):
    yield b"l"  # the request head goes out with the first bytes
    await go_on.wait()
    yield b"ate"
