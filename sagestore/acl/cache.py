"""A per-instance cache of (bucket row, grants) in front of the one ACL query.

Correct across instances because PostgreSQL tells every instance what changed: triggers
(migration 0003) pg_notify('sagestore_acl', bucket_id) on each change to buckets or grants, and
each instance keeps one LISTEN connection that drops the named bucket (db/notified.py). While that
connection is down the cache is empty and off (every check reads the database), so it never
answers from data that might have missed an invalidation. A short TTL is the backstop.
"""
from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

import aiopg

from ..db import cursor
from ..db import grants as grant_queries
from ..db.notified import NotifiedCache, listening
from .model import Grant

CHANNEL = "sagestore_acl"


class AclCache(NotifiedCache[tuple[dict[str, Any], list[Grant]]]):
    channel = CHANNEL
    label = "ACL cache"

    async def load(self, bucket_id: str) -> tuple[dict[str, Any], list[Grant]] | None:
        async with cursor(self.pool) as cur:
            bucket, grants = await grant_queries.bucket_with_grants(cur, bucket_id)
        return (bucket, grants) if bucket is not None else None

    async def bucket_with_grants(self, bucket_id: str) -> tuple[dict[str, Any] | None, list[Grant]]:
        found = await self.get(bucket_id)
        if found is None:
            return None, []
        # callers may change the row they get (pop, add fields); the cached one stays intact
        return dict(found[0]), found[1]


@contextlib.asynccontextmanager
async def running(pool: aiopg.Pool, database_url: str, ttl: float) -> AsyncIterator[AclCache]:
    """The cache and its listener task, for an app's cleanup_ctx."""
    async with listening(AclCache(pool, ttl), database_url) as cache:
        yield cache
