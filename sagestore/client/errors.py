"""Typed errors of the sagestore client: every non-2xx answer is raised, never returned."""
from __future__ import annotations

from typing import Any


class SagestoreError(Exception):
    """Base of every client error. `status` is the HTTP status (None when no answer came) and
    `message` the server's `error` text; `body` is the whole JSON error body when there was one."""

    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.body = body or {}


class BadRequest(SagestoreError):
    status = 400


class Unauthorized(SagestoreError):
    status = 401


class Forbidden(SagestoreError):
    status = 403


class NotFound(SagestoreError):
    status = 404


class Conflict(SagestoreError):
    status = 409


class Gone(SagestoreError):
    status = 410


class PayloadTooLarge(SagestoreError):
    status = 413


class RangeNotSatisfiable(SagestoreError):
    status = 416


class Locked(SagestoreError):
    status = 423


class ServerError(SagestoreError):
    """A 5xx answer that was still there after the retries."""


class ServiceUnavailable(ServerError):
    status = 503


class TransferError(SagestoreError):
    """No usable answer: connection refused or reset, timeout, a body cut short (after the retries)."""


class ChecksumMismatch(SagestoreError):
    """The bytes received do not have the sha256 the server announced (the download was discarded)."""


class UnexpectedAnswer(SagestoreError):
    """The server answered, but not in the shape the API promises (not JSON, a missing field,
    a wrong type): a proxy's HTML page, another service on that port, or a broken server."""


class UnsafeKey(SagestoreError):
    """A listed key whose local path would land outside the target folder (an absolute path,
    '..', '.', an empty segment, a backslash or a drive letter): it is not downloaded."""


class ObjectChanged(SagestoreError):
    """The remote file changed while it was being downloaded, twice in a row."""


BY_STATUS: dict[int, type[SagestoreError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone,
    413: PayloadTooLarge, 416: RangeNotSatisfiable, 423: Locked, 503: ServiceUnavailable}


def error_for(status: int, body: Any, reason: str = "") -> SagestoreError:
    """The typed error of an answer; the message is the server's `error` field when it sent one."""
    from .terminal import safe_text
    message = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
    kind = BY_STATUS.get(status) or (ServerError if status >= 500 else SagestoreError)
    return kind(safe_text(message or f"HTTP {status} {reason}".strip())[:1000], status=status,
                body=body if isinstance(body, dict) else None)
