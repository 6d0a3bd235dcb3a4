"""Swagger UI at /swagger (-> /swagger-ui/index.html) and the OpenAPI document as YAML.

The UI's assets come from the swagger-ui-bundle-v2 package (PyPI; import name swagger_ui_bundle),
served from its install directory; only the small index page is ours. The OSDU File service's paths
answer under /api/file/v2/ too (swagger, swagger-ui/, api-docs, api-docs.yaml), as the community
service's do.

The UI shares the console's origin, so every answer carries a Content-Security-Policy: scripts from
this origin only, plus the page's own start-up script by its hash (no 'unsafe-inline' or
'unsafe-eval'), and no framing (frame-ancestors 'none', X-Frame-Options).
"""
from __future__ import annotations

import base64
import hashlib
import re

import yaml
from aiohttp import web

from .. import gate
from ..errors import NotFound
from ..openapi import documented, openapi_document

routes = gate.Routes()
OSDU_BASE = "/api/file/v2"
# the files of the package's dist directory that the page loads
ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png",
          "favicon-16x16.png", "oauth2-redirect.html"}
INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>sagestore API</title>
  <link rel="stylesheet" href="./swagger-ui.css">
  <link rel="icon" type="image/png" href="./favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="./swagger-ui-bundle.js"></script>
  <script src="./swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "../api-docs", dom_id: "#swagger-ui", deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"
    });
  </script>
</body>
</html>
"""
_START_UP = re.search(r"<script>(.*?)</script>", INDEX, re.S).group(1)
_START_UP_HASH = base64.b64encode(hashlib.sha256(_START_UP.encode()).digest()).decode()
SECURITY_HEADERS = {
    # Swagger UI sets element styles and shows data: images; it fetches only the document and, for
    # "Try it out", this API
    "Content-Security-Policy": f"default-src 'self'; script-src 'self' 'sha256-{_START_UP_HASH}'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def asset_dir():
    from swagger_ui_bundle import swagger_ui_path  # imported here: only the UI needs the package
    return swagger_ui_path


ASSET_PARAM = {"name": "asset", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "index.html, or a file of the swagger-ui-bundle package"}


# each handler serves both prefixes ("" and the OSDU File service's), with the same description
@documented("Swagger UI: redirects to swagger-ui/index.html", {"302": {"description": "To the UI page"}})
async def swagger_redirect(request: web.Request) -> web.Response:
    prefix = request.path[: -len("/swagger")]
    raise web.HTTPFound(f"{prefix}/swagger-ui/index.html")


@documented("Swagger UI page and assets", {"200": {"description": "The file"}, "404": {"description": "No such file"}},
            parameters=[ASSET_PARAM])
async def swagger_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["asset"]
    if name == "index.html":
        return web.Response(text=INDEX, content_type="text/html", headers=SECURITY_HEADERS)
    if name not in ASSETS:
        raise NotFound("no such Swagger UI file")
    return web.FileResponse(asset_dir() / name, headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"})


@documented("This OpenAPI document (JSON)")
async def api_docs_json(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app))


@documented("This OpenAPI document in YAML")
async def api_docs_yaml(request: web.Request) -> web.Response:
    text = yaml.safe_dump(openapi_document(request.app), sort_keys=False, allow_unicode=True)
    return web.Response(text=text, content_type="application/yaml")


for prefix in ("", OSDU_BASE):
    routes.get(prefix + "/swagger")(swagger_redirect)
    routes.get(prefix + "/swagger-ui/{asset}")(swagger_asset)
    routes.get(prefix + "/api-docs.yaml")(api_docs_yaml)
routes.get(OSDU_BASE + "/api-docs")(api_docs_json)
