"""The sagestore client library: `Client` (blocking) and `AsyncClient` with the same methods.

It imports nothing of the server package; the `sagestore` command's client commands are in cli.py.
"""
from .aio import AsyncClient, FileInfo, parse_repr_digest
from .config import TransferConfig, resolve
from .errors import (BadRequest, ChecksumMismatch, Conflict, Forbidden, Gone, Locked, NotFound, ObjectChanged,
                     PayloadTooLarge, RangeNotSatisfiable, SagestoreError, ServerError, ServiceUnavailable,
                     TransferError, Unauthorized, UnexpectedAnswer, UnsafeKey)
from .sync import Client

__all__ = ["AsyncClient", "BadRequest", "ChecksumMismatch", "Client", "Conflict", "FileInfo", "Forbidden", "Gone",
           "Locked", "NotFound", "ObjectChanged", "PayloadTooLarge", "RangeNotSatisfiable", "SagestoreError",
           "ServerError", "ServiceUnavailable", "TransferConfig", "TransferError", "Unauthorized",
           "UnexpectedAnswer", "UnsafeKey", "parse_repr_digest", "resolve"]
