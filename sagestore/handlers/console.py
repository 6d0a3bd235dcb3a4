"""The web console: static files from package data (sagestore/web/) at /ui/.

No build step and no third-party code: the files are served as they are in the repo. Every page
gets a Content-Security-Policy that allows scripts, styles and requests from this origin only.
"""
from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from aiohttp import web

from .. import gate
from ..errors import NotFound
from ..openapi import documented

routes = gate.Routes()

WEB_ROOT = Path(str(files("sagestore") / "web"))
# only plain file names below the root: no '..', no hidden files, a known type
_ASSET = re.compile(r"^(?:[A-Za-z0-9_-]+/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(js|css|html|svg|png|ico)$")
CONTENT_TYPES = {"js": "text/javascript", "css": "text/css", "html": "text/html", "svg": "image/svg+xml",
                 "png": "image/png", "ico": "image/vnd.microsoft.icon"}
BINARY = ("png", "ico")
SECURITY_HEADERS = {
    # blob: for the download anchor; data: for inline SVG icons in CSS
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors 'none' for browsers that predate CSP 2
    "Referrer-Policy": "no-referrer",  # a #token fragment never leaves, but be sure about paths too
    "Cache-Control": "no-cache",
}


def _file_response(name: str) -> web.FileResponse:
    match = _ASSET.match(name)
    if match is None or ".." in name.split("/"):
        raise NotFound("no such console file")
    path = WEB_ROOT / name
    if not path.is_file():
        raise NotFound("no such console file")
    kind = match.group(1)
    return web.FileResponse(path, headers={**SECURITY_HEADERS, "Content-Type": CONTENT_TYPES[kind]
                                           + ("" if kind in BINARY else "; charset=utf-8")})


@routes.get("/favicon.ico")
@documented("The console's icon (browsers ask for it at the root)", {"200": {"description": "image/vnd.microsoft.icon"}})
async def favicon(request: web.Request) -> web.FileResponse:
    return _file_response("favicon.ico")


@routes.get("/ui")
@documented("Redirect to the web console", {"302": {"description": "to /ui/"}})
async def console_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


@routes.get("/ui/")
@documented("The web console (HTML)", {"200": {"description": "text/html"}})
async def console_index(request: web.Request) -> web.FileResponse:
    return _file_response("index.html")


@routes.get("/ui/{name:.+}")
@documented("A file of the web console (JavaScript module, CSS, image)",
            {"200": {"description": "the file"}, "404": {"description": "no such file"}},
            parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}])
async def console_file(request: web.Request) -> web.FileResponse:
    return _file_response(request.match_info["name"])
