"""The small-request reference: a bare aiohttp app answering a bucket-shaped JSON document,
with no database, no auth and no middlewares. `python -m bench.bare_app PORT`."""
from __future__ import annotations

import sys

from aiohttp import web

DOCUMENT = {"id": "00000000-0000-0000-0000-000000000000", "name": "bench", "owner": "bench",
            "type": "training-data", "time_created": "2026-01-01T00:00:00Z",
            "time_last_updated": "2026-01-01T00:00:00Z"}


async def bucket(request: web.Request) -> web.Response:
    return web.json_response({**DOCUMENT, "id": request.match_info["bucket_id"]})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application()
    app.router.add_get("/api/v1/objects/{bucket_id}", bucket)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
