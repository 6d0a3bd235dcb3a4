"""The S3 door as an aiohttp application on its own port, over the main app's resources (database
pool, caches, object store, engine): `sagestore serve` runs it beside the main API.

Its middlewares: metrics (outermost), S3 errors as XML (the one place ApiErrors become S3's
<Error>), and SigV4 authentication.
"""
from __future__ import annotations

import logging
import secrets
import time
from datetime import datetime, timezone
from typing import AsyncIterator

from aiohttp import web

from .. import context, gate
from ..errors import ApiError
from ..middlewares import from_backend_exception
from . import handlers, sigv2, sigv4
from .common import OPERATION, SIGNED, caller
from .errors import S3Error, error, translate
from .xml import CONTENT_TYPE, render

log = logging.getLogger("sagestore.s3")
MAIN_APP: web.AppKey[web.Application] = web.AppKey("s3_main_app", web.Application)
SHARED = (context.SETTINGS, context.DB, context.STORE, context.MAPPING, context.METRICS, context.ACL, context.ENGINE,
          context.S3_CACHE, context.S3_CREDENTIALS, context.AUTH, context.SIGNER, context.SIGNED_URLS,
          context.OSDU_BUCKETS)


@web.middleware
async def metrics_middleware(request: web.Request, handler):
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        request.app[context.METRICS].observe_s3_request(request.get(OPERATION, "unknown"), status,
                                                       time.monotonic() - started)


def error_response(request: web.Request, problem: S3Error) -> web.Response:
    request_id = secrets.token_hex(8).upper()
    headers = {"x-amz-request-id": request_id, **problem.headers}
    if request.method == "HEAD":  # a HEAD answer has no body: the status says it all
        return web.Response(status=problem.status, headers=headers)
    body = render("Error", [("Code", problem.code), ("Message", problem.message), ("Resource", request.path),
                            ("RequestId", request_id)], namespace=False)
    return web.Response(status=problem.status, body=body, content_type=CONTENT_TYPE, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler):
    """Every failure as S3's <Error> document: typed errors by their S3 code, backend outages as
    503 ServiceUnavailable, anything else as 500 InternalError (logged), never a traceback."""
    try:
        return await handler(request)
    except ApiError as problem:
        return error_response(request, translate(problem))
    except web.HTTPException as problem:
        if problem.status < 400:
            raise
        code = {404: "NoSuchKey", 405: "MethodNotAllowed", 413: "EntityTooLarge"}.get(problem.status,
                                                                                      "InvalidRequest")
        return error_response(request, error(code))
    except Exception as problem:  # noqa: BLE001 - last line of defence
        mapped = from_backend_exception(problem)
        if mapped is not None:
            log.warning("S3 %s %s: backend failure: %s", request.method, request.path, type(problem).__name__)
            return error_response(request, translate(mapped))
        log.exception("unhandled error in S3 %s %s", request.method, request.path)
        return error_response(request, error("InternalError"))


def acting(request: web.Request, identity) -> None:
    """The gate's caller: an S3 access key acting as its user (the access log names the user)."""
    gate.identify(request, gate.Caller.with_access_key(identity))
    request[context.IDENTITY] = identity


@web.middleware
async def auth_middleware(request: web.Request, handler):
    """A SigV4-signed request acts as its access key's user; an unsigned one is anonymous."""
    signed = sigv4.parse(request.headers, request.query, datetime.now(timezone.utc))
    raw_path, _, raw_query = request.raw_path.partition("?")
    if signed is not None:
        identity, key = await request.app[context.S3_CREDENTIALS].caller(signed.credential)
        sigv4.verify(key, request.method, raw_path, raw_query, request.headers, signed)
        request[SIGNED] = (signed, key)
        acting(request, identity)
    elif (presigned := sigv2.parse(request.query)) is not None:
        identity, secret = await request.app[context.S3_CREDENTIALS].caller_v2(presigned.access_key_id)
        # SigV2 signs the resource as /<bucket>/<key> whichever way the bucket was addressed
        bucket = handlers.hosted_bucket(request)
        resource = f"/{bucket}{raw_path}" if bucket else raw_path
        sigv2.verify(secret, request.method, resource, raw_query, request.headers, presigned)
        acting(request, identity)
    response = await handler(request)
    response.headers.setdefault("x-amz-request-id", secrets.token_hex(8).upper())
    return response


async def shared_resources(app: web.Application) -> AsyncIterator[None]:
    """The main app's resources, opened by its cleanup_ctx before this app starts."""
    main = app[MAIN_APP]
    for key in SHARED:
        if key in main and key not in app:
            app[key] = main[key]
    yield


def create_s3_app(main: web.Application) -> web.Application:
    app = sharing(web.Application(middlewares=[metrics_middleware, error_middleware, auth_middleware],
                                  client_max_size=2 * 2**20), main)
    domain = main[context.SETTINGS].s3_domain
    if domain:  # mounted before the path-style routes: a bucket's own host name wins
        hosted = sharing(web.Application(client_max_size=2 * 2**20), main)
        hosted.add_routes(handlers.hosted_routes)
        gate.check_routes(hosted)
        app.add_domain(f"*.{domain}", hosted)
    app.add_routes(handlers.routes)
    gate.check_routes(app)
    return app


def sharing(app: web.Application, main: web.Application) -> web.Application:
    """`app` with the main app's resources: a handler reads them from its own (sub-)app."""
    app[MAIN_APP] = main
    app[context.SETTINGS] = main[context.SETTINGS]  # the Runner reads its connection limits from it
    app[context.METRICS] = main[context.METRICS]
    app.cleanup_ctx.append(shared_resources)
    return app


__all__ = ["create_s3_app", "caller"]
