"""create_app(settings): routes, middlewares, and a cleanup_ctx for every resource."""
from __future__ import annotations

import logging
import time
from typing import AsyncIterator

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from . import context, cors
from .acl import cache as acl_cache
from .auth.signing import UrlSigner
from .auth.tokens import build_authenticator, parse_authorization
from .config import Settings
from .db import close_pool, create_pool
from .db.migrate import migrate
from .db.notified import listening
from .db.signed_urls import SignedUrlCache
from .errors import error_middleware
from .handlers import (buckets, console, ietf, meta, multipart, objects, offset_uploads, osdu, permissions, sessions,
                       shares, signed, swagger, tus)
from .handlers.common import IDENTITY
from .metrics import Metrics
from .storage import BucketMapping, open_object_store
from .uploads.service import engine_ctx

log = logging.getLogger("sagestore")

# Requests with large bodies stream; this only caps what request.json()/post() may buffer.
CLIENT_MAX_SIZE = 2 * 2**20


class AccessLogger(AbstractAccessLogger):
    """Method, path without query string (it may hold signatures), status, size, time, user.
    Never headers: they carry tokens."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, elapsed: float) -> None:
        identity = request.get(IDENTITY)
        user = identity.user if identity is not None and identity.user else "-"
        self.logger.info('%s "%s %s" %s %s %.3fs user=%s', request.remote, request.method, request.path,
                         response.status, response.body_length, elapsed, user)


@web.middleware
async def auth_middleware(request: web.Request, handler):
    token = parse_authorization(request.headers.get("Authorization"))
    if token is not None:
        request[IDENTITY] = await request.app[context.AUTH].authenticate(token)
    return await handler(request)


@web.middleware
async def metrics_middleware(request: web.Request, handler):
    """Outermost, so it records the status the client got (the error middleware has
    already turned every error into a response)."""
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:  # redirects and the like pass through the error middleware
        status = error.status
        raise
    finally:
        request.app[context.METRICS].observe_request(request, status, time.monotonic() - started)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[context.SETTINGS]
    pool = await create_pool(settings.database_url, settings.db_pool_size, settings.db_timeout)
    try:
        await migrate(pool)
        app[context.DB] = pool
        async with acl_cache.running(pool, settings.database_url, settings.acl_cache_ttl) as cache, \
                listening(SignedUrlCache(pool, settings.acl_cache_ttl), settings.database_url) as signed_urls:
            app[context.ACL] = cache
            app[context.SIGNED_URLS] = signed_urls
            yield
    finally:
        await close_pool(pool)


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[context.SETTINGS]
    mapping = BucketMapping(settings.s3_bucket_prefix, settings.s3_bucket_count, settings.s3_single_bucket)
    async with open_object_store(endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
                                 secret_key=settings.s3_secret_key, region=settings.s3_region,
                                 part_size=settings.s3_part_size,
                                 parts_in_flight=settings.s3_parts_in_flight,
                                 transfers_in_flight=settings.s3_transfers_in_flight,
                                 single_copy_limit=settings.s3_single_copy_limit,
                                 sign_payload=settings.s3_sign_payload,
                                 stream_parts=settings.s3_stream_parts,
                                 connect_timeout=settings.s3_connect_timeout,
                                 read_timeout=settings.s3_read_timeout,
                                 max_attempts=settings.s3_max_attempts) as store:
        if settings.s3_create_buckets:
            created = await store.ensure_buckets(mapping.all_s3_buckets())
            if created:
                log.info("created %d S3 buckets", created)
        app[context.STORE] = store
        app[context.MAPPING] = mapping
        yield


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    authenticator = build_authenticator(app[context.SETTINGS])
    app[context.AUTH] = authenticator
    app[context.SIGNER] = UrlSigner.from_settings(app[context.SETTINGS])
    yield
    await authenticator.close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[metrics_middleware, error_middleware, auth_middleware],
                          client_max_size=CLIENT_MAX_SIZE)
    app[context.SETTINGS] = settings
    app[context.METRICS] = Metrics()
    app.cleanup_ctx.extend([auth_ctx, database_ctx, storage_ctx, engine_ctx])
    app.add_routes(meta.routes)
    app.add_routes(buckets.routes)
    app.add_routes(permissions.routes)
    app.add_routes(objects.routes)
    app.add_routes(multipart.routes)
    app.add_routes(offset_uploads.routes)
    app.cleanup_ctx.append(offset_uploads.import_jobs_ctx)
    app.add_routes(sessions.routes)
    app.add_routes(tus.routes)
    app.add_routes(ietf.routes)
    app.add_routes(signed.routes)
    app.add_routes(shares.routes)
    app.add_routes(osdu.routes)
    app.cleanup_ctx.append(osdu.partitions_ctx)
    app.add_routes(swagger.routes)
    app.add_routes(console.routes)
    cors.setup(app)
    return app
