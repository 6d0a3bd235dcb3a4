"""What every module of the upload engine shares: the protocol groups, S3's own error wording,
the errors of a lost lease and of a body cut off, and small pure helpers.
"""
from __future__ import annotations

import asyncio
import re
from datetime import datetime, timezone
from typing import AsyncIterable, AsyncIterator

import aiohttp
import aiohttp.http_exceptions

from ..errors import ApiError, BadRequest, Conflict, RequestTimeout
from ..storage import StorageError, StorageRefused

SEQUENTIAL_PROTOCOLS = ("offset", "tus", "ietf")
# S3's own wording, so clients of the multipart API see what S3 would have said
S3_INVALID_PART = ("One or more of the specified parts could not be found.  The part may not have been uploaded, "
                   "or the specified entity tag may not match the part's entity tag.")
S3_INVALID_PART_ORDER = ("The list of parts was not in ascending order. The parts list must be specified in order "
                         "by part number.")
S3_ENTITY_TOO_SMALL = "Your proposed upload is smaller than the minimum allowed object size."
READ_CHUNK = 1 << 20
ChunkChecksum = tuple[str, str]  # (algorithm, base64 digest of this request's body)


class LeaseLost(Conflict):
    """Another request took this upload over (lock steal, abort or expiry); nothing of ours was kept."""


class BodyCutOff(Exception):
    """The request body ended early: client disconnect, truncated body, idle timeout, or a body slower
    than the minimum rate (RequestTimeout, set on the payload by sagestore.connections)."""


def now() -> datetime:
    return datetime.now(timezone.utc)


def validate_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise BadRequest("sha256 must be 64 hexadecimal digits")
    return text


def s3_bad_request(error: StorageError) -> ApiError | None:
    """The store's 400 answers are the client's fault: 400 with the store's own message."""
    if isinstance(error, StorageRefused):
        return BadRequest(error.message, code=error.code)
    return None


async def chunks_with_idle_timeout(body: AsyncIterable[bytes], idle: float) -> AsyncIterator[bytes]:
    """The body's chunks; a stall longer than `idle`, a disconnect or a truncated body become BodyCutOff."""
    iterator = body.__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(iterator.__anext__(), idle)
        except StopAsyncIteration:
            return
        except (asyncio.TimeoutError, ConnectionError, aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError,
                asyncio.IncompleteReadError, EOFError, RequestTimeout) as error:
            raise BodyCutOff(type(error).__name__) from error
        if chunk:
            yield chunk


def normal_etag(etag: str) -> str:
    return str(etag).strip().strip('"').lower()
