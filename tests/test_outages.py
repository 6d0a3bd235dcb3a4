"""Backends going away under a running app: /readyz says 503, requests that need the
missing backend get 503 JSON (never a traceback or a hang). The backends here are our own
embedded SeaweedFS and PostgreSQL in a private dir, so stopping them hurts no other test."""
from __future__ import annotations

import asyncio
import shutil
import time
import uuid

import pytest
from aiohttp import web

from conftest import _wait, auth, private_tmp_dir
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
    _wait(lambda: _s3_ready(s3["endpoint"], s3["access_key"], s3["secret_key"]))
    _wait(lambda: _postgres_ready(database_url))
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

    # S3 goes away
    await asyncio.get_running_loop().run_in_executor(None, children["seaweedfs"].stop)
    started = time.monotonic()
    response = await client.get("/readyz")
    assert response.status == 503 and response.content_type == "application/json"
    body = await response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgres"] == "ok" and body["checks"]["s3"].startswith("unavailable")
    assert time.monotonic() - started < 8
    response = await client.get("/probe/storage", headers=auth("alice"))
    assert response.status == 503 and response.content_type == "application/json"
    assert "unavailable" in (await response.json())["error"]
    assert (await client.get("/healthz")).status == 200, "liveness does not depend on the backends"

    # PostgreSQL goes away too
    await asyncio.get_running_loop().run_in_executor(None, children["postgres"].stop)
    started = time.monotonic()
    response = await client.get("/probe/database", headers=auth("alice"))
    assert response.status == 503 and response.content_type == "application/json"
    assert await response.json() == {"error": "database unavailable, try again later"}
    response = await client.get("/probe/database", headers=auth("alice"))  # a second try: no stale pool state
    assert response.status == 503
    assert time.monotonic() - started < 8
    response = await client.get("/readyz")
    assert response.status == 503
    checks = (await response.json())["checks"]
    assert checks["postgres"].startswith("unavailable") and checks["s3"].startswith("unavailable")
