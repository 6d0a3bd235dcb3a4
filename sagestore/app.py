"""create_app(settings): routes, middlewares, and a cleanup_ctx for every resource."""
from __future__ import annotations

import logging
from typing import AsyncIterator

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from . import context, cors, gate, osdu
from .acl import cache as acl_cache
from .auth.signing import UrlSigner
from .auth.tokens import build_authenticator
from .config import Settings
from .db import close_pool, create_pool
from .db.migrate import migrate
from .db.notified import listening
from .db.s3_cache import S3DoorCache
from .db.signed_urls import SignedUrlCache
from .handlers import (buckets, console, ietf, meta, multipart, objects, offset_uploads, permissions, s3_keys,
                       sessions, shares, signed, swagger, tus)
from .handlers import osdu as osdu_adapter
from .handlers.common import HANDOFFS
from .handlers.resumable import IETF_ON_TUS
from .metrics import Metrics
from .middlewares import auth_middleware, error_middleware, metrics_middleware
from .s3api.credentials import GroupsRecorder, S3Credentials
from .storage import BucketMapping, open_configured_store
from .uploads.service import engine_ctx

log = logging.getLogger("sagestore")

# Requests with large bodies stream; this only caps what request.json()/post() may buffer.
CLIENT_MAX_SIZE = 2 * 2**20


class AccessLogger(AbstractAccessLogger):
    """Method, path without query string (it may hold signatures), status, size, time, user.
    Never headers: they carry tokens."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, elapsed: float) -> None:
        identity = request.get(context.IDENTITY)
        user = identity.user if identity is not None and identity.user else "-"
        self.logger.info('%s "%s %s" %s %s %.3fs user=%s', request.remote, request.method, request.path,
                         response.status, response.body_length, elapsed, user)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[context.SETTINGS]
    pool = await create_pool(settings.database_url, settings.db_pool_size, settings.db_timeout)
    try:
        await migrate(pool)
        app[context.DB] = pool
        async with acl_cache.running(pool, settings.database_url, settings.acl_cache_ttl) as cache, \
                listening(SignedUrlCache(pool, settings.acl_cache_ttl), settings.database_url) as signed_urls, \
                listening(S3DoorCache(pool, settings.acl_cache_ttl), settings.database_url) as s3_cache:
            app[context.ACL] = cache
            app[context.SIGNED_URLS] = signed_urls
            app[context.S3_CACHE] = s3_cache
            app[context.S3_CREDENTIALS] = S3Credentials(app[context.SIGNER], s3_cache)
            app[context.S3_GROUPS] = GroupsRecorder(pool)
            yield
    finally:
        await close_pool(pool)


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[context.SETTINGS]
    mapping = BucketMapping(settings.s3_bucket_prefix, settings.s3_bucket_count, settings.s3_single_bucket)
    async with open_configured_store(settings) as store:
        if not store.capabilities.durable:
            log.warning("storage backend %s: every byte is lost when this process exits; for tests and "
                        "development only", settings.storage_backend)
        if settings.s3_create_buckets or not store.capabilities.durable:  # a new memory store has none
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
    app.add_routes(sessions.routes)
    app.add_routes(tus.routes)
    app.add_routes(ietf.routes)
    app.add_routes(signed.routes)
    app.add_routes(shares.routes)
    app.add_routes(s3_keys.routes)
    app.add_routes(osdu_adapter.routes)
    app.cleanup_ctx.append(osdu.partitions_ctx)
    app.add_routes(swagger.routes)
    app.add_routes(console.routes)
    # adapters that answer one another's requests, composed here rather than importing each other
    app[HANDOFFS] = {"permissions GET": permissions.show, "permissions DELETE": permissions.revoke}
    app[IETF_ON_TUS] = {"OPTIONS": ietf.options, "POST": ietf.create, "HEAD": ietf.offset_retrieval,
                        "PATCH": ietf.append, "DELETE": ietf.cancel}
    gate.check_routes(app)
    cors.setup(app)
    return app
