"""Every byte-carrying route passes the gate: the app's routes are enumerated, a route that may take
a body must have been registered through gate.Routes (STREAM or SMALL), an app with one that was not
is refused at start-up, no adapter reads a request body except through the gate, and a body read
before the gate admitted the caller (or on a route not registered as a STREAM door) is refused."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web
from support.apps import AppServer
from support.data import auth

from sagestore import gate
from sagestore.app import create_app
from sagestore.config import Settings

HANDLERS = Path(__file__).resolve().parent.parent / "sagestore" / "handlers"
# the doors of issue 23's list: each must be registered as a STREAM door
DOORS = {
    ("PUT", "/api/v1/objects/{id}/{key}"),  # SAGE PUT, raw and form
    ("PUT", "/api/v1/signed/{id}/{key}"),  # signed PUT links, share links and OSDU upload URLs
    ("PUT", "/api/v1/multipart/{upload_id}/parts/{part_number}"),  # Arkindex multipart parts
    ("PUT", "/api/v1/upload"),  # offset chunks
    ("PUT", "/api/v1/attachment/session/{session_id}/upload/{chunk_id}"),  # indexed session chunks
    ("POST", "/api/v1/tus/"), ("PATCH", "/api/v1/tus/{upload_id}"), ("POST", "/api/v1/tus/{upload_id}"),  # tus
    ("POST", "/api/v1/uploads/"), ("PATCH", "/api/v1/uploads/{upload_id}"),  # IETF draft
}


def body_routes(app: web.Application) -> dict[tuple[str, str], str | None]:
    return {(route.method, route.resource.canonical): getattr(route.handler, gate.MARK, None)
            for route in app.router.routes() if route.method in gate.BODY_METHODS}


def test_every_route_that_takes_a_body_states_how_and_the_doors_stream_through_the_gate():
    app = create_app(Settings())
    routes = body_routes(app)
    assert routes, "no PUT, PATCH or POST route found"
    unstated = sorted(route for route, mark in routes.items() if mark not in (gate.STREAM, gate.SMALL))
    assert not unstated, f"registered without gate.Routes: {unstated}"
    doors = {route for route, mark in routes.items() if mark == gate.STREAM}
    assert doors == DOORS


def test_an_app_with_a_body_route_that_bypasses_the_gate_is_refused():
    app = create_app(Settings())

    async def sneaky_upload(request: web.Request) -> web.Response:
        async for _ in request.content.iter_any():
            pass
        return web.Response()
    app.router.add_put("/api/v1/sneaky/{key}", sneaky_upload)
    assert gate.unguarded_routes(app) == ["PUT /api/v1/sneaky/{key}"]
    with pytest.raises(RuntimeError, match="gate.Routes"):
        gate.check_routes(app)
    # a route table of the gate does not even take such a route without saying how it takes its body
    with pytest.raises(TypeError, match="body=gate.STREAM"):
        gate.Routes().put("/api/v1/sneaky/{key}")(sneaky_upload)


def test_no_adapter_reads_a_request_body_except_through_the_gate():
    reading = re.compile(r"request\.content\b|\.readchunk\(|\.iter_chunk|\.iter_any\(|\.readany\(|\.multipart\(")
    found = [f"{path.name}:{number}: {line.strip()}" for path in sorted(HANDLERS.glob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if reading.search(line)]
    assert not found, "read the body through gate.body() / gate.form():\n" + "\n".join(found)


async def test_a_body_read_before_admission_or_outside_a_stream_door_is_refused(aiohttp_client, settings):
    """A door that forgets step 2, and a SMALL route that streams: both are a 500 (GateBypassed, a
    programming error), never a silent upload."""
    routes = gate.Routes()

    @routes.put("/forgot-to-admit/{id}/{key}", body=gate.STREAM)
    async def forgot_to_admit(request: web.Request) -> web.Response:
        return web.Response(text=str(sum([len(piece) async for piece in gate.body(request)])))

    @routes.put("/admitted/{id}/{key}", body=gate.STREAM)
    async def admitted(request: web.Request) -> web.Response:
        await gate.admit(request, request.match_info["id"], "WRITE")
        return web.Response(text=str(sum([len(piece) async for piece in gate.body(request)])))

    @routes.put("/small/{id}/{key}", body=gate.SMALL)
    async def small(request: web.Request) -> web.Response:
        await gate.admit(request, request.match_info["id"], "WRITE")
        return web.Response(text=str(sum([len(piece) async for piece in gate.body(request)])))

    app = create_app(settings)
    app.add_routes(routes)
    client = await aiohttp_client(AppServer(app))
    created = await client.post("/api/v1/objects?type=model&name=gate", headers=auth("alice"))
    bucket_id = (await created.json())["id"]
    response = await client.put(f"/admitted/{bucket_id}/x", data=b"12345", headers=auth("alice"))
    assert (response.status, await response.text()) == (200, "5")
    for path in ("forgot-to-admit", "small"):
        response = await client.put(f"/{path}/{bucket_id}/x", data=b"12345", headers=auth("alice"))
        assert response.status == 500, path
    # and the gate's step 2 still refuses whom it must: a user without WRITE
    response = await client.put(f"/admitted/{bucket_id}/x", data=b"12345", headers=auth("mallory"))
    assert response.status == 404
