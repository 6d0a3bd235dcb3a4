"""Backends going away under a running app: /readyz says 503, requests that need the
missing backend get 503 JSON (never a traceback or a hang). The backends here are our own
embedded SeaweedFS and PostgreSQL in a private dir, so stopping them hurts no other test."""
from __future__ import annotations

import asyncio
import base64
import shutil
import uuid

import pytest
from aiohttp import web

from support.backends import wait_for
from support.tmp import private_tmp_dir
from support.premises import eventually
from support.data import auth
from sagestore import context
from sagestore.app import create_app
from sagestore.config import Settings
from sagestore.db import cursor
from sagestore.embedded import Embedded, _postgres_ready, _s3_ready


@pytest.fixture(scope="module")
def own_backends():
    root = private_tmp_dir("sagestore-outage-")
    embedded = Embedded(root / "data")
    embedded.lock()
    weed, s3 = embedded.start_seaweedfs()
    postgres, database_url = embedded.start_postgres()
    wait_for(lambda: _s3_ready(s3["endpoint"], s3["access_key"], s3["secret_key"]))
    wait_for(lambda: _postgres_ready(database_url))
    settings = Settings(data_dir=str(root / "data"), auth_mode="noauth", database_url=database_url,
                        s3_endpoint=s3["endpoint"], s3_access_key=s3["access_key"], s3_secret_key=s3["secret_key"],
                        s3_bucket_count=2, reaper_interval=0)
    yield settings, {"seaweedfs": weed, "postgres": postgres}
    embedded.stop()
    shutil.rmtree(root, ignore_errors=True)


async def needs_database(request: web.Request) -> web.Response:
    async with cursor(request.app[context.DB]) as cur:
        await cur.execute("SELECT count(*) AS n FROM buckets")
        return web.json_response({"buckets": (await cur.fetchone())["n"]})


async def needs_storage(request: web.Request) -> web.Response:
    location = request.app[context.MAPPING].object("00" + uuid.uuid4().hex[2:], "some/key")
    info = await request.app[context.STORE].head(location)
    return web.json_response({"exists": info is not None})


ANSWER_DEADLINE = 60  # generous (a shared machine): a request must answer, not hang until S3's 120 s timeout


async def answer(request) -> tuple[int, str, dict]:
    """(status, content type, JSON body) of a request that must answer within the deadline."""
    response = await asyncio.wait_for(request, ANSWER_DEADLINE)
    body = await response.json() if response.content_type == "application/json" else {}
    return response.status, response.content_type, body


def tus_create(client, bucket_id: str, key: str):
    metadata = f"bucket {base64.b64encode(bucket_id.encode()).decode()},key {base64.b64encode(key.encode()).decode()}"
    return client.post("/api/v1/tus/", headers={**auth("alice"), "Tus-Resumable": "1.0.0", "Upload-Length": "10",
                                                "Upload-Metadata": metadata})


async def test_readiness_and_requests_when_backends_go_away(aiohttp_client, own_backends):
    settings, children = own_backends
    app = create_app(settings)
    # two plain routes that use the real pool and the real object store
    app.router.add_get("/probe/database", needs_database)
    app.router.add_get("/probe/storage", needs_storage)
    client = await aiohttp_client(app)

    response = await client.get("/readyz")
    assert response.status == 200
    assert (await client.get("/probe/database", headers=auth("alice"))).status == 200
    assert await (await client.get("/probe/storage", headers=auth("alice"))).json() == {"exists": False}
    response = await client.post("/api/v1/objects?type=model&name=outage", headers=auth("alice"))
    assert response.status == 200
    bucket_id = (await response.json())["id"]
    path = f"/api/v1/objects/{bucket_id}"
    assert (await client.put(f"{path}/there.txt", data=b"stored before", headers=auth("alice"))).status == 200

    # S3 goes away
    await asyncio.get_running_loop().run_in_executor(None, children["seaweedfs"].stop)
    status, content_type, body = await answer(client.get("/readyz"))
    assert status == 503 and content_type == "application/json"
    assert body["status"] == "unavailable"
    assert body["checks"]["postgres"] == "ok" and body["checks"]["s3"].startswith("unavailable")
    status, content_type, body = await answer(client.get("/probe/storage", headers=auth("alice")))
    assert status == 503 and content_type == "application/json"
    assert "unavailable" in body["error"]
    assert (await client.get("/healthz")).status == 200, "liveness does not depend on the backends"
    # the real handlers that need S3: download, upload, resumable upload creation
    for what, request in (
            ("object GET", client.get(f"{path}/there.txt", headers=auth("alice"))),
            ("object PUT", client.put(f"{path}/new.txt", data=b"x" * 1000, headers=auth("alice"))),
            ("tus creation", tus_create(client, bucket_id, "tus.bin")),
            ("multipart creation", client.post("/api/v1/multipart/", headers=auth("alice"), json={
                "object_type": "file", "object_id": bucket_id, "key": "mp.bin"}))):
        status, content_type, body = await answer(request)
        assert (what, status, content_type) == (what, 503, "application/json"), body
        assert "unavailable" in body["error"], (what, body)
    # the bucket's row is in PostgreSQL, which is still up
    assert (await client.get(path, headers=auth("alice"))).status == 200

    # PostgreSQL goes away too
    await asyncio.get_running_loop().run_in_executor(None, children["postgres"].stop)
    cache = app[context.ACL]
    await eventually(lambda: not cache.enabled, "the ACL cache noticed its listener is gone")
    status, content_type, body = await answer(client.get("/probe/database", headers=auth("alice")))
    assert status == 503 and content_type == "application/json"
    assert body == {"error": "database unavailable, try again later"}
    status, _, _ = await answer(client.get("/probe/database", headers=auth("alice")))
    assert status == 503  # a second try: no stale pool state
    # the real handlers that need PostgreSQL: bucket info, creation, listing, offset upload, upload status
    for what, request in (
            ("bucket GET", client.get(path, headers=auth("alice"))),
            ("bucket creation", client.post("/api/v1/objects?type=model&name=later", headers=auth("alice"))),
            ("bucket listing", client.get("/api/v1/objects", headers=auth("alice"))),
            ("offset upload", client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": "o.bin"},
                                         data=b"x" * 10, headers=auth("alice"))),
            ("tus creation", tus_create(client, bucket_id, "tus2.bin"))):
        status, content_type, body = await answer(request)
        assert (what, status, content_type) == (what, 503, "application/json"), body
        assert body == {"error": "database unavailable, try again later"}, (what, body)
    status, _, body = await answer(client.get("/readyz"))
    assert status == 503
    checks = body["checks"]
    assert checks["postgres"].startswith("unavailable") and checks["s3"].startswith("unavailable")
