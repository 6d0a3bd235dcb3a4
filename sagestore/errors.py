"""Typed API errors, rendered as JSON in exactly one middleware."""
from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger("sagestore.errors")


class ApiError(Exception):
    """An error the client should see: HTTP status, message, optional extra fields and headers."""

    status = 500
    content_type = "application/json"  # e.g. application/problem+json for the IETF upload draft

    def __init__(self, message: str, *, status: int | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Gone(ApiError):
    status = 410


class RequestTimeout(ApiError):
    """The request body arrived slower than the configured minimum rate."""
    status = 408


class PreconditionFailed(ApiError):
    status = 412


class PayloadTooLarge(ApiError):
    status = 413


class RangeNotSatisfiable(ApiError):
    status = 416


class UnsupportedMediaType(ApiError):
    status = 415


class Locked(ApiError):
    status = 423


class TooManyRequests(ApiError):
    """The caller already has as many uploads in flight as one user may."""
    status = 429


class ServerBusy(ApiError):
    """No part-buffer budget became free in time: 503, the client retries after Retry-After."""
    status = 503


RETRY_AFTER_SECONDS = 5  # what a 503 for an unreachable backend tells the client to wait


class BackendUnavailable(ApiError):
    """PostgreSQL or S3 cannot be reached (or did not answer within its bound): 503 with
    Retry-After, so a client can tell an outage from a slow link and retry."""
    status = 503

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))


class BackendError(ApiError):
    """The storage backend answered with something we cannot map: 502."""
    status = 502


def json_error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    return web.Response(status=status, headers=headers, content_type="application/json",
                        text=json.dumps({"error": message, **extra}))


def _from_backend_exception(error: BaseException) -> ApiError | None:
    """Map database and S3 outages to 503 instead of a 500 traceback."""
    import psycopg2
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
    if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return BackendUnavailable("database unavailable, try again later")
    if isinstance(error, EndpointConnectionError):
        return BackendUnavailable("object storage unavailable, try again later")
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 502)
        if status in (500, 503) or code in ("ServiceUnavailable", "SlowDown", "InternalError"):
            return BackendUnavailable(f"object storage unavailable ({code}), try again later")
        return BackendError(f"object storage error: {code}")
    if isinstance(error, BotoCoreError):
        return BackendUnavailable("object storage unavailable, try again later")
    import aiohttp

    from .storage.s3 import StorageBusy
    if isinstance(error, StorageBusy):
        return BackendUnavailable("object storage is busy, try again later")
    if isinstance(error, (ConnectionError, TimeoutError, aiohttp.ClientConnectionError)):
        return BackendUnavailable("a backend is unavailable, try again later")
    return None


@web.middleware
async def error_middleware(request: web.Request, handler):
    """The one place where exceptions become JSON responses; never HTML, never a traceback."""
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
        mapped = _from_backend_exception(error)
        if mapped is not None:
            log.warning("%s %s: backend failure: %s", request.method, request.path, type(error).__name__)
            return web.json_response(mapped.body(), status=mapped.status, headers=mapped.headers)
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal server error")
