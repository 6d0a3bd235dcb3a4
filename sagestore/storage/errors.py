"""The errors of the storage contract: what every object store raises, whatever it talks to.

Callers catch these, never a client library's own exceptions: the S3 store turns botocore's
into them at its boundary, the in-memory store raises them itself. Each carries the store's
error `code` (S3's wording: NoSuchKey, InvalidRange, EntityTooSmall, ...), its `message` and the
HTTP `status` the store answered with.
"""
from __future__ import annotations


class StorageError(Exception):
    """The store refused or failed a call in a way no narrower class below describes (e.g. a
    wrong signature): the API answers 502."""

    default_status = 502

    def __init__(self, code: str, message: str = "", *, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}" if message and message != code else code)
        self.code = code
        self.message = message or code
        self.status = status if status is not None else self.default_status


class ObjectNotFound(StorageError):
    """No such object, multipart upload or bucket (`code` says which: NoSuchKey, NoSuchUpload,
    NoSuchBucket, or 404 when the store answered without a body, as S3 does to HEAD)."""
    default_status = 404


class InvalidRange(StorageError):
    """A byte range outside the object (GET, or a part copy's source range)."""
    default_status = 416


class SourceChanged(StorageError):
    """A copy's source no longer has the ETag the caller named (if_match): nothing was copied."""
    default_status = 412


class StorageRefused(StorageError):
    """The store answered 400: the request itself is wrong (InvalidPart, InvalidPartOrder,
    EntityTooSmall, BadDigest, InvalidArgument, ...). `message` is the store's own wording."""
    default_status = 400


class StorageUnavailable(StorageError):
    """The store cannot be reached or did not answer in time, or answered 500/503: retry later."""
    default_status = 503


class StorageBusy(StorageUnavailable, TimeoutError):
    """Every upload slot of this instance stayed taken for the whole wait (a slow or frozen store)."""

    def __init__(self, message: str) -> None:
        super().__init__("Busy", message)


class ChecksumMismatch(ValueError):
    """The body's digest differs from the one declared; nothing was stored."""

    def __init__(self, algorithm: str, expected: str, actual: str) -> None:
        super().__init__(f"{algorithm} mismatch: declared {expected}, received {actual}")
        self.algorithm, self.expected, self.actual = algorithm, expected, actual


UNREACHABLE = "Unreachable"  # the code of a StorageUnavailable that is no answer of the store (no connection, timeout)
NOT_FOUND_CODES = ("404", "NoSuchKey", "NotFound", "NoSuchUpload", "NoSuchBucket")
