"""The design notes in docs/, one test per claim that had none: each fails when its claim
breaks. Real PostgreSQL and SeaweedFS; premises are waited for on observable state."""
from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import timedelta

import pytest
from support.chunked import S3View
from support.apps import AppServer
from support.premises import eventually, lease_taken, upload_row
from support.tus import metadata, stored, tus_headers
from support.data import MiB, auth, make_bucket

from sagestore import context
from sagestore.app import create_app
from sagestore.storage import STAGING_PREFIX

OCTETS = {"Content-Type": "application/offset+octet-stream"}


async def test_every_commit_slides_the_expiry(client, settings):
    """Expiry slides: each commit sets expires_at = its own now() + SAGESTORE_UPLOAD_TTL, for appends
    (offset chunks) and for parts (indexed sessions)."""
    app = client.server.app
    bucket_id = await make_bucket(app)
    ttl = timedelta(seconds=settings.upload_ttl)
    response = await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": "slide.bin"},
                                data=os.urandom(MiB), headers=auth("alice"))
    upload_id = (await response.json())["upload_id"]
    first = await upload_row(app, upload_id)
    assert first["expires_at"] - first["updated_at"] == ttl
    response = await client.put("/api/v1/upload", params={"upload_id": upload_id, "offset": str(MiB)},
                                data=os.urandom(MiB), headers=auth("alice"))
    assert response.status == 200
    second = await upload_row(app, upload_id)
    assert second["expires_at"] > first["expires_at"] and second["expires_at"] - second["updated_at"] == ttl

    response = await client.post("/api/v1/attachment/initiate", headers=auth("alice"), json={
        "bucket_id": bucket_id, "fileName": "s.bin", "fileSize": 2 * settings.s3_part_size})
    session = await response.json()
    before = await upload_row(app, session["sessionId"])
    url = f"/api/v1/attachment/session/{session['sessionId']}/upload/1"
    assert (await client.put(url, data=os.urandom(session["chunkSize"]), headers=auth("alice"))).status == 200
    after = await upload_row(app, session["sessionId"])
    assert after["expires_at"] > before["expires_at"] and after["expires_at"] - after["updated_at"] == ttl


async def test_a_long_request_renews_its_lease(client):
    """The 30 s writer lease is renewed every 10 s while a request runs: a request held for longer
    than a renewal period keeps a lease that never lapses, and its bytes are committed."""
    app = client.server.app
    engine = app[context.ENGINE]
    assert engine.lease_seconds == 30.0
    bucket_id = await make_bucket(app)
    response = await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": "renew.bin"},
                                data=b"x" * 10, headers=auth("alice"))
    upload_id = (await response.json())["upload_id"]
    release = asyncio.Event()

    async def held():
        yield b"y" * 10
        await release.wait()
        yield b"z" * 10

    request = asyncio.create_task(client.put("/api/v1/upload", params={"upload_id": upload_id, "offset": "10"},
                                             data=held(), headers=auth("alice")))
    taken = await lease_taken(app, upload_id)

    async def renewed():
        row = await upload_row(app, upload_id)
        assert row["lease_held"] and row["writer"] == taken["writer"], "the lease lapsed or changed hands"
        return row if row["writer_until"] > taken["writer_until"] else None
    # one renewal period is 10 s; waited for on the row, under a generous deadline
    later = await eventually(renewed, "the lease row's writer_until moved on", timeout=120, interval=0.5)
    assert later["writer_until"] - taken["writer_until"] >= timedelta(seconds=5)  # a renewal, not a retake
    release.set()
    response = await request
    assert response.status == 200 and (await response.json())["offset"] == 30


async def test_young_orphans_survive_the_reaper_until_the_grace(client, settings):
    """S3 multipart uploads and staging objects no row knows about are removed only after
    max(TTL, 24 h): a young one survives a reaper pass; the same pass with the grace over removes it."""
    engine = client.server.app[context.ENGINE]
    assert engine.orphan_grace == max(settings.upload_ttl, 86400.0)
    view = S3View(settings)
    bucket_id = await make_bucket(client.server.app)
    s3_bucket = view.mapping.s3_bucket(bucket_id)
    orphan = view.client.create_multipart_upload(Bucket=s3_bucket, Key=f"{bucket_id}/orphan.bin")["UploadId"]
    ghost = f"{STAGING_PREFIX}uploads/00000000-0000-4000-8000-{os.urandom(6).hex()}/tail-ghost"
    view.client.put_object(Bucket=s3_bucket, Key=ghost, Body=b"ghost")

    def orphans_there() -> tuple[bool, bool]:
        uploads = view.client.list_multipart_uploads(Bucket=s3_bucket, Prefix=f"{bucket_id}/").get("Uploads", [])
        objects = view.client.list_objects_v2(Bucket=s3_bucket, Prefix=ghost).get("Contents", [])
        return orphan in [item["UploadId"] for item in uploads], bool(objects)

    await engine.reap()
    assert orphans_there() == (True, True)
    grace, engine.orphan_grace = engine.orphan_grace, 0.0
    try:
        counts = await engine.reap()
    finally:
        engine.orphan_grace = grace
    assert counts["multipart_uploads"] >= 1 and counts["staging_objects"] >= 1
    assert orphans_there() == (False, False)


async def test_signed_payloads_end_to_end(aiohttp_client, settings):
    """SAGESTORE_S3_SIGN_PAYLOAD=true: every request to S3 carries the payload's sha256 in its
    signature (SeaweedFS checks it); raw PUT, a multi-part tus upload and GET all work."""
    client = await aiohttp_client(AppServer(create_app(settings.replace(s3_sign_payload=True))))
    app = client.server.app
    assert app[context.STORE].sign_payload and not app[context.STORE].capabilities.stream_parts
    bucket_id = await make_bucket(app)
    small = os.urandom(3 * MiB)
    response = await client.put(f"/api/v1/objects/{bucket_id}/signed.bin", data=small, headers=auth("alice"))
    assert response.status == 200, await response.text()
    response = await client.get(f"/api/v1/objects/{bucket_id}/signed.bin", headers=auth("alice"))
    assert await response.read() == small
    big = os.urandom(settings.s3_part_size + 3 * MiB)
    response = await client.post("/api/v1/tus/", headers=tus_headers(**{
        "Upload-Length": str(len(big)), "Upload-Metadata": metadata(bucket=bucket_id, key="signed-tus.bin")}))
    url = response.headers["Location"]
    response = await client.patch(url, data=big, headers=tus_headers(**OCTETS, **{"Upload-Offset": "0"}))
    assert response.status == 204, await response.text()
    assert hashlib.sha256(await stored(app, bucket_id, "signed-tus.bin")).digest() == hashlib.sha256(big).digest()


async def test_a_tus_head_publishes_a_fully_received_upload(client):
    """Every byte is in but the object was never published (the PATCH that brought the last
    byte died before publishing): the next HEAD publishes it."""
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(2 * MiB)
    response = await client.post("/api/v1/tus/", headers=tus_headers(**{
        "Upload-Length": str(len(data)), "Upload-Metadata": metadata(bucket=bucket_id, key="late.bin")}))
    url = response.headers["Location"]
    engine = app[context.ENGINE]
    upload = await engine.get(url.rsplit("/", 1)[1], "alice")

    async def body():
        yield data
    await engine.append(upload, 0, body(), body_length=len(data))  # the bytes, no publication
    assert await stored(app, bucket_id, "late.bin") is None
    response = await client.head(url, headers=tus_headers())
    assert response.status == 204 and response.headers["Upload-Offset"] == str(len(data))
    assert await stored(app, bucket_id, "late.bin") == data


async def test_listing_tokens_are_bound_to_their_folder(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    for key in ("a/1", "a/2", "b/1", "b/2"):
        assert (await client.put(f"/api/v1/objects/{bucket_id}/{key}", data=b"x", headers=auth("alice"))).status == 200
    response = await client.get(f"/api/v1/objects/{bucket_id}/a/", params={"limit": "1"}, headers=auth("alice"))
    page = await response.json()
    assert page["IsTruncated"] and page["NextContinuationToken"]
    token = page["NextContinuationToken"]
    response = await client.get(f"/api/v1/objects/{bucket_id}/a/", params={"limit": "1", "ContinuationToken": token},
                                headers=auth("alice"))
    assert response.status == 200 and [item["Key"] for item in (await response.json())["Contents"]] == ["2"]
    for folder, params in (("b/", {}), ("a/", {"recursive": "true"}), ("", {})):
        response = await client.get(f"/api/v1/objects/{bucket_id}/{folder}", headers=auth("alice"),
                                    params={"limit": "1", "ContinuationToken": token, **params})
        assert response.status == 400, (folder, params)
        assert "ContinuationToken" in (await response.json())["error"]
    other = await make_bucket(app)
    response = await client.get(f"/api/v1/objects/{other}/a/", params={"ContinuationToken": token},
                                headers=auth("alice"))
    assert response.status == 400


@pytest.mark.parametrize("protocol", ["tus", "ietf", "offset", "session"])
async def test_writes_into_an_archived_bucket_are_404_and_store_nothing(client, protocol):
    """Archived buckets are read-only: creating an upload in one is 404, and so is continuing an
    upload created before the bucket was archived; nothing new is stored."""
    app = client.server.app
    bucket_id = await make_bucket(app)
    alice = auth("alice")
    data = os.urandom(MiB)

    async def create(key: str):
        if protocol == "tus":
            return await client.post("/api/v1/tus/", headers=tus_headers(**{
                "Upload-Length": str(2 * len(data)), "Upload-Metadata": metadata(bucket=bucket_id, key=key)}))
        if protocol == "ietf":
            return await client.post(f"/api/v1/uploads/?bucket={bucket_id}&key={key}", headers={
                **alice, "Upload-Draft-Interop-Version": "6", "Upload-Complete": "?0"})
        if protocol == "offset":
            return await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": key}, data=data,
                                    headers=alice)
        return await client.post("/api/v1/attachment/initiate", headers=alice, json={
            "bucket_id": bucket_id, "key": key, "fileName": "s.bin", "fileSize": 2 * MiB})

    async def write(created) -> int:
        if protocol == "tus":
            return (await client.patch(created.headers["Location"], data=data, headers=tus_headers(
                **OCTETS, **{"Upload-Offset": "0"}))).status
        if protocol == "ietf":
            return (await client.patch(created.headers["Location"], data=data, headers={
                **alice, "Upload-Draft-Interop-Version": "6", "Content-Type": "application/partial-upload",
                "Upload-Offset": "0", "Upload-Complete": "?0"})).status
        if protocol == "offset":
            upload_id = (await created.json())["upload_id"]
            return (await client.put("/api/v1/upload", params={"upload_id": upload_id, "offset": str(MiB)},
                                     data=data, headers=alice)).status
        session_id = (await created.json())["sessionId"]
        return (await client.put(f"/api/v1/attachment/session/{session_id}/upload/1", data=data,
                                 headers=alice)).status

    before = await create("before.bin")
    assert before.status in (200, 201), await before.text()
    response = await client.patch(f"/api/v1/objects/{bucket_id}", json={"archived": True}, headers=alice)
    assert response.status == 200
    response = await create("after.bin")
    assert response.status == 404, await response.text()
    assert await write(before) == 404
    assert await stored(app, bucket_id, "after.bin") is None and await stored(app, bucket_id, "before.bin") is None

