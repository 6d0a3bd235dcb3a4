"""Typed API errors: what a client is told (status, message, extra fields, headers). This module
only defines them; the one middleware that renders them, and maps backend failures to them, is
sagestore.middlewares.error_middleware."""
from __future__ import annotations

from typing import Any


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


class Unsupported(ApiError):
    """This server cannot do what the request asks (its configuration lacks it)."""
    status = 501


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
