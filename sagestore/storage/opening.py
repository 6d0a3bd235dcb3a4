"""The store the settings name (`storage_backend`): S3, or the in-memory store."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, AsyncIterator

from .contract import ObjectStore
from .memory import MemoryObjectStore
from .s3 import open_object_store

if TYPE_CHECKING:
    from ..config import Settings


@contextlib.asynccontextmanager
async def open_configured_store(settings: "Settings") -> AsyncIterator[ObjectStore]:
    if settings.storage_backend == "memory":
        yield MemoryObjectStore(part_size=settings.s3_part_size, parts_in_flight=settings.s3_parts_in_flight,
                                single_copy_limit=settings.s3_single_copy_limit,
                                transfers_in_flight=settings.s3_transfers_in_flight,
                                transfer_wait=settings.s3_read_timeout * settings.s3_max_attempts,
                                stream_parts=settings.s3_stream_parts)
        return
    async with open_object_store(endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
                                 secret_key=settings.s3_secret_key, region=settings.s3_region,
                                 part_size=settings.s3_part_size, parts_in_flight=settings.s3_parts_in_flight,
                                 transfers_in_flight=settings.s3_transfers_in_flight,
                                 single_copy_limit=settings.s3_single_copy_limit,
                                 sign_payload=settings.s3_sign_payload, stream_parts=settings.s3_stream_parts,
                                 connect_timeout=settings.s3_connect_timeout, read_timeout=settings.s3_read_timeout,
                                 max_attempts=settings.s3_max_attempts) as store:
        yield store
