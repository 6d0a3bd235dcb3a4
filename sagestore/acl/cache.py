"""A per-instance cache of (bucket row, grants) in front of the one ACL query.

Correct across instances because PostgreSQL tells every instance what changed: triggers
(migration 0003) pg_notify('sagestore_acl', bucket_id) on each change to buckets or grants, and
each instance keeps one LISTEN connection that drops the named bucket. While that connection is
down the cache is empty and off (every check reads the database), so it never answers from data
that might have missed an invalidation. A short TTL is the backstop for anything else.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any, AsyncIterator

import aiopg

from ..db import cursor
from ..db import grants as grant_queries
from .model import Grant

log = logging.getLogger("sagestore.acl")
CHANNEL = "sagestore_acl"
MAX_ENTRIES = 10_000
RECONNECT_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
# the listener must notice a dead peer even when no RST arrives (network partition)
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}


class AclCache:
    def __init__(self, pool: aiopg.Pool, ttl: float, max_entries: int = MAX_ENTRIES):
        self.pool = pool
        self.ttl = ttl
        self.max_entries = max_entries
        self.enabled = False  # only while the listener is connected and listening
        self.entries: OrderedDict[str, tuple[float, dict[str, Any], list[Grant]]] = OrderedDict()
        # bumped by every invalidation: a query that raced one must not store what it read
        self.generation = 0
        self.hits = 0
        self.misses = 0  # database queries made through the cache
        self.losses = 0  # listener connections lost (or never made)
        self.listener_pid: int | None = None

    async def bucket_with_grants(self, bucket_id: str) -> tuple[dict[str, Any] | None, list[Grant]]:
        entry = self.entries.get(bucket_id) if self.enabled else None
        if entry is not None and entry[0] > time.monotonic():
            self.entries.move_to_end(bucket_id)
            self.hits += 1
            return entry[1], entry[2]
        self.misses += 1
        generation = self.generation
        async with cursor(self.pool) as cur:
            bucket, grants = await grant_queries.bucket_with_grants(cur, bucket_id)
        # missing buckets are not cached: random ids must not push real entries out
        if bucket is not None and self.enabled and generation == self.generation:
            self.entries[bucket_id] = (time.monotonic() + self.ttl, bucket, grants)
            self.entries.move_to_end(bucket_id)
            if len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)
        # callers may change the row they get (pop, add fields); the cached one stays intact
        return dict(bucket) if bucket is not None else None, grants

    def invalidate(self, bucket_id: str) -> None:
        """Drop one bucket; writers call this right after their commit, the listener on notification."""
        self.generation += 1
        self.entries.pop(bucket_id, None)

    def disable(self) -> None:
        self.enabled = False
        self.generation += 1
        self.entries.clear()

    def enable(self) -> None:
        # invalidations may have been missed while disabled: start empty
        self.disable()
        self.enabled = self.ttl > 0

    async def listen(self, database_url: str) -> None:
        """Keep a LISTEN connection for as long as the app runs; the cache is on only while it is up."""
        failures = 0
        while True:
            try:
                async with aiopg.connect(database_url, timeout=10, **KEEPALIVE) as conn:
                    async with conn.cursor() as cur:
                        await cur.execute(f"LISTEN {CHANNEL}")
                        await cur.execute("SELECT pg_backend_pid()")
                        (self.listener_pid,) = await cur.fetchone()
                    self.enable()
                    if failures:
                        log.info("ACL cache listener reconnected; cache enabled again")
                    failures = 0
                    while True:
                        notification = await conn.notifies.get()
                        self.invalidate(notification.payload)
            except asyncio.CancelledError:
                raise
            except Exception as problem:  # noqa: BLE001 - any failure means: stop trusting the cache
                self.disable()
                self.listener_pid = None
                self.losses += 1
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                log.warning("ACL cache listener lost (%s); cache disabled, reconnecting in %.1fs",
                            type(problem).__name__, delay)
                await asyncio.sleep(delay)


@contextlib.asynccontextmanager
async def running(pool: aiopg.Pool, database_url: str, ttl: float) -> AsyncIterator[AclCache]:
    """The cache and its listener task, for an app's cleanup_ctx."""
    cache = AclCache(pool, ttl)
    task = asyncio.create_task(cache.listen(database_url)) if ttl > 0 else None
    try:
        yield cache
    finally:
        cache.disable()
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
