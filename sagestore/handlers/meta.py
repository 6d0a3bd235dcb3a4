"""Service documents, health, readiness, metrics and the OpenAPI document."""
from __future__ import annotations

import asyncio

from aiohttp import web

from .. import __version__, context, gate
from ..db import ping
from ..openapi import ERROR, documented, openapi_document
from .common import wants_html

routes = gate.Routes()
READINESS_TIMEOUT = 4.0  # seconds per backend; below the usual 5 s probe timeout


@routes.route("*", "/", body=gate.SMALL)
@documented("Service document")
async def root(request: web.Request) -> web.Response:
    if wants_html(request):  # a browser: the console; API clients keep the service document
        raise web.HTTPFound("/ui/")
    return web.json_response({"id": "SAGE object store", "available_resources": ["api/v1/", "metrics/"]})


@routes.route("*", "/api/v1/", body=gate.SMALL)
@documented("API version document (also names the server's version)")
async def api_root(request: web.Request) -> web.Response:
    return web.json_response({"id": "SAGE object store", "available_resources": ["objects"], "version": __version__})


@routes.get("/healthz")
@documented("Liveness: the process answers")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
@documented("Readiness: PostgreSQL and S3 answer", {"200": {"description": "ready"}, "503": ERROR})
async def readyz(request: web.Request) -> web.Response:
    """Ready when PostgreSQL answers a query and S3 answers for one of our buckets."""
    app = request.app
    checks: dict[str, str] = {}

    async def check_db() -> None:
        await ping(app[context.DB])

    async def check_s3() -> None:
        await app[context.STORE].ping(app[context.MAPPING].all_s3_buckets()[0])

    async def run(name: str, check) -> None:
        try:
            await asyncio.wait_for(check(), timeout=READINESS_TIMEOUT)
            checks[name] = "ok"
        except Exception as error:  # noqa: BLE001 - readiness reports, it does not raise
            checks[name] = f"unavailable: {type(error).__name__}"

    # both at once: a probe answers within one timeout even when both backends hang
    await asyncio.gather(run("postgres", check_db), run("s3", check_s3))
    checks = {name: checks[name] for name in ("postgres", "s3")}
    ready = all(value == "ok" for value in checks.values())
    return web.json_response({"status": "ready" if ready else "unavailable", "checks": checks},
                             status=200 if ready else 503)


@routes.get("/metrics")
@documented("Prometheus metrics")
async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[context.METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})


@routes.get("/api-docs")
@documented("This OpenAPI document")
async def api_docs(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app))
