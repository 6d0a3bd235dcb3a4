"""CORS for browser clients (tus-js-client, Uppy): allowed origins come from settings.cors_origins.

Preflights (OPTIONS with Access-Control-Request-Method) are answered by a middleware before
routing, so they work on every path and are never mistaken for a tus OPTIONS discovery request.
The allow-origin and expose headers are added in on_response_prepare, so error answers and
streamed downloads carry them too; without them a browser hides the response from the script.
"""
from __future__ import annotations

from aiohttp import web

from . import context

ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOWED_HEADERS = ("Authorization, Content-Type, Content-Length, Content-MD5, Content-Disposition, Content-Digest, "
                   "Repr-Digest, Want-Repr-Digest, Range, If-Match, If-None-Match, X-Requested-With, X-Request-ID, "
                   "X-HTTP-Method-Override, Tus-Resumable, Upload-Offset, Upload-Length, Upload-Defer-Length, "
                   "Upload-Metadata, Upload-Checksum, Upload-Concat, Upload-Complete, Upload-Draft-Interop-Version")
EXPOSED_HEADERS = ("Location, ETag, Content-Length, Content-Range, Content-Disposition, Retry-After, Upload-Offset, "
                   "Upload-Length, Upload-Defer-Length, Upload-Metadata, Upload-Expires, Upload-Concat, Upload-Complete, "
                   "Upload-Limit, Upload-Draft-Interop-Version, Tus-Resumable, Tus-Version, Tus-Extension, "
                   "Tus-Max-Size, Tus-Checksum-Algorithm, Repr-Digest, x-amz-checksum-crc32, x-amz-checksum-crc32c, "
                   "x-amz-checksum-sha1, x-amz-checksum-sha256")
PREFLIGHT_MAX_AGE = "600"


def allowed_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if not origin:
        return None
    origins = request.app[context.SETTINGS].cors_origins
    if "*" in origins or origin in origins:
        return origin
    return None


@web.middleware
async def cors_middleware(request: web.Request, handler):
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        origin = allowed_origin(request)
        if origin is not None:
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS, "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
                "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"})
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    origin = allowed_origin(request)
    if origin is None or "Access-Control-Allow-Origin" in response.headers:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    vary = response.headers.get("Vary")
    response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"


def setup(app: web.Application) -> None:
    """Adds the preflight middleware (outermost) and the response headers."""
    app.middlewares.insert(0, cors_middleware)
    app.on_response_prepare.append(add_cors_headers)
