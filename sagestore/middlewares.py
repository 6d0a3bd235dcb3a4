"""The app's middlewares, outermost first: metrics, errors, authentication.

error_middleware is the one place where exceptions become responses: the typed API errors of
errors.py as JSON, and backend failures (PostgreSQL, the object store) as 503 or 502 instead
of a traceback. It is the only module of the HTTP layer that knows the backends' exceptions.
"""
from __future__ import annotations

import json
import logging
import time

import aiohttp
import psycopg2
from aiohttp import web

from . import context
from .auth.identity import refuse_reserved
from .auth.tokens import parse_authorization
from .errors import ApiError, BackendError, BackendUnavailable
from .storage import StorageBusy, StorageError, StorageUnavailable
from .storage.errors import UNREACHABLE

log = logging.getLogger("sagestore.errors")


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


def json_error(status: int, message: str, headers: dict[str, str] | None = None, **extra) -> web.Response:
    return web.Response(status=status, headers=headers, content_type="application/json",
                        text=json.dumps({"error": message, **extra}))


def from_backend_exception(error: BaseException) -> ApiError | None:
    """Database and object-store outages become 503 (with Retry-After), other store failures 502."""
    if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return BackendUnavailable("database unavailable, try again later")
    if isinstance(error, StorageBusy):
        return BackendUnavailable("object storage is busy, try again later")
    if isinstance(error, StorageUnavailable):
        detail = f" ({error.code})" if error.code != UNREACHABLE else ""
        return BackendUnavailable(f"object storage unavailable{detail}, try again later")
    if isinstance(error, StorageError):
        return BackendError(f"object storage error: {error.code}")
    if isinstance(error, (ConnectionError, TimeoutError, aiohttp.ClientConnectionError)):
        return BackendUnavailable("a backend is unavailable, try again later")
    return None


@web.middleware
async def error_middleware(request: web.Request, handler):
    """Exceptions become JSON responses; never HTML, never a traceback."""
    try:
        return await handler(request)
    except ApiError as error:
        return web.json_response(error.body(), status=error.status, headers=error.headers,
                                 content_type=error.content_type)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {k: v for k, v in error.headers.items() if k.lower() in ("allow", "location")}
        message = {404: "not found", 405: f"method {request.method} not allowed",
                   413: "request body too large"}.get(error.status, error.reason)
        return json_error(error.status, message, headers=headers)
    except Exception as error:  # noqa: BLE001 - last line of defence
        mapped = from_backend_exception(error)
        if mapped is not None:
            log.warning("%s %s: backend failure: %s", request.method, request.path, type(error).__name__)
            return web.json_response(mapped.body(), status=mapped.status, headers=mapped.headers)
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal server error")


@web.middleware
async def auth_middleware(request: web.Request, handler):
    token = parse_authorization(request.headers.get("Authorization"))
    if token is not None:
        request[context.IDENTITY] = caller = refuse_reserved(await request.app[context.AUTH].authenticate(token))
        await request.app[context.S3_GROUPS].seen(caller)  # the groups S3 access keys act with
    return await handler(request)
