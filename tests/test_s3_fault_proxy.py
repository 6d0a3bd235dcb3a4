"""The network path to S3 through a TCP fault proxy (tests/faults/proxy.py) between a real app and
the suite's SeaweedFS: latency, a reset in the middle of a part, a black hole. S3 calls are
retried or fail cleanly (503 JSON + Retry-After); no partial object ever appears; after the
fault the upload resumes from what was acknowledged and completes intact."""
from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest
from support.chunked import S3View
from support.apps import AppServer
from faults.proxy import FaultProxy
from support.tus import metadata
from support.data import MiB, auth, make_bucket, sha256

from sagestore.app import create_app

TUS = {"Tus-Resumable": "1.0.0", **auth("alice")}


@pytest.fixture
async def proxied(aiohttp_client, base_settings):
    upstream = urlsplit(base_settings.s3_endpoint)
    proxy = await FaultProxy(upstream.hostname, upstream.port).start()
    settings = base_settings.replace(s3_endpoint=proxy.endpoint, s3_part_size=5 * MiB, s3_connect_timeout=1.0,
                                     s3_read_timeout=2.0, s3_max_attempts=2)
    client = await aiohttp_client(AppServer(create_app(settings)))
    yield client, proxy, S3View(base_settings)
    proxy.mode = "pass"
    await proxy.close()


async def tus_create(client, bucket_id: str, key: str, length: int) -> str:
    response = await client.post("/api/v1/tus/", headers={**TUS, "Upload-Length": str(length),
                                                           "Upload-Metadata": metadata(bucket=bucket_id, key=key)})
    assert response.status == 201
    return response.headers["Location"]


async def tus_patch(client, location: str, offset: int, body: bytes):
    return await client.patch(location, data=body, headers={
        **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})


async def tus_offset(client, location: str) -> int:
    response = await client.head(location, headers=TUS)
    assert response.status in (200, 204)
    return int(response.headers["Upload-Offset"])


async def assert_503(response) -> None:
    assert response.status == 503, (response.status, await response.text())
    assert response.content_type == "application/json" and "error" in await response.json()
    assert int(response.headers["Retry-After"]) > 0


async def test_latency_on_every_packet(proxied):
    client, proxy, view = proxied
    bucket_id = await make_bucket(client)
    proxy.latency = 0.005
    data = os.urandom(12 * MiB + 3)
    response = await client.put(f"/api/v1/objects/{bucket_id}/slow/raw.bin", data=data, headers=auth("alice"))
    assert response.status in (200, 201), await response.text()
    assert sha256(view.object(bucket_id, "slow/raw.bin")) == sha256(data)
    location = await tus_create(client, bucket_id, "slow/tus.bin", len(data))
    for start in range(0, len(data), 7 * MiB):
        response = await tus_patch(client, location, start, data[start:start + 7 * MiB])
        assert response.status == 204, await response.text()
    assert sha256(view.object(bucket_id, "slow/tus.bin")) == sha256(data)


async def test_reset_in_the_middle_of_a_part(proxied):
    client, proxy, view = proxied
    bucket_id = await make_bucket(client)
    data = os.urandom(12 * MiB + 5)

    # a raw PUT: botocore resends the part (its body is in memory) or the request fails cleanly
    proxy.reset_after = 3 * MiB
    response = await client.put(f"/api/v1/objects/{bucket_id}/reset/raw.bin", data=data, headers=auth("alice"))
    assert proxy.resets == 1
    if response.status == 503:
        await assert_503(response)
        assert view.object(bucket_id, "reset/raw.bin") is None
        response = await client.put(f"/api/v1/objects/{bucket_id}/reset/raw.bin", data=data, headers=auth("alice"))
    assert response.status in (200, 201), await response.text()
    assert sha256(view.object(bucket_id, "reset/raw.bin")) == sha256(data)

    # a tus PATCH whose streamed part is cut: acknowledged or refused, never half-counted
    location = await tus_create(client, bucket_id, "reset/tus.bin", len(data))
    response = await tus_patch(client, location, 0, data[:2 * MiB])
    assert response.status == 204
    proxy.reset_after = 2 * MiB
    response = await tus_patch(client, location, 2 * MiB, data[2 * MiB:9 * MiB])
    assert proxy.resets == 2
    if response.status == 204:
        assert int(response.headers["Upload-Offset"]) == 9 * MiB
    else:
        await assert_503(response)
    offset = await tus_offset(client, location)
    assert 2 * MiB <= offset <= 9 * MiB  # at least what was acknowledged, at most what was sent
    assert view.object(bucket_id, "reset/tus.bin") is None
    response = await tus_patch(client, location, offset, data[offset:])
    assert response.status == 204, await response.text()
    assert sha256(view.object(bucket_id, "reset/tus.bin")) == sha256(data)


async def test_a_request_the_s3_server_could_not_parse_is_sent_again_once(proxied, caplog):
    """The S3 server's HTTP layer answers 400 with no S3 error document to bytes it cannot parse
    (seen once in CI, on a kept-alive connection): that request is sent again on a new connection;
    refused twice, the client gets a 502 (the backend's failure, not the client's), and nothing
    is stored."""
    client, proxy, view = proxied
    bucket_id = await make_bucket(client)
    data = os.urandom(6 * MiB + 7)

    proxy.garble_requests = 1
    response = await client.put(f"/api/v1/objects/{bucket_id}/garbled/once.bin", data=data, headers=auth("alice"))
    assert response.status in (200, 201), await response.text()
    assert proxy.garbled == 1 and sha256(view.object(bucket_id, "garbled/once.bin")) == sha256(data)
    assert "answered 400 without an S3 error document" in caplog.text

    proxy.garble_requests = 2
    response = await client.put(f"/api/v1/objects/{bucket_id}/garbled/twice.bin", data=data, headers=auth("alice"))
    assert response.status == 502 and response.content_type == "application/json", await response.text()
    assert proxy.garble_requests == 0 and view.object(bucket_id, "garbled/twice.bin") is None
    response = await client.put(f"/api/v1/objects/{bucket_id}/garbled/twice.bin", data=data, headers=auth("alice"))
    assert response.status in (200, 201) and sha256(view.object(bucket_id, "garbled/twice.bin")) == sha256(data)


async def test_black_hole(proxied):
    client, proxy, view = proxied
    bucket_id = await make_bucket(client)
    data = os.urandom(9 * MiB)
    location = await tus_create(client, bucket_id, "hole/tus.bin", len(data))
    response = await tus_patch(client, location, 0, data[:6 * MiB])
    assert response.status == 204
    proxy.mode = "blackhole"
    await assert_503(await tus_patch(client, location, 6 * MiB, data[6 * MiB:]))
    await assert_503(await client.put(f"/api/v1/objects/{bucket_id}/hole/raw.bin", data=b"x" * 1000,
                                      headers=auth("alice")))
    assert (await client.get("/readyz")).status == 503
    proxy.mode = "pass"
    assert view.object(bucket_id, "hole/tus.bin") is None and view.object(bucket_id, "hole/raw.bin") is None
    offset = await tus_offset(client, location)
    assert offset == 6 * MiB
    response = await tus_patch(client, location, offset, data[offset:])
    assert response.status == 204, await response.text()
    assert sha256(view.object(bucket_id, "hole/tus.bin")) == sha256(data)
    assert (await client.get("/readyz")).status == 200
