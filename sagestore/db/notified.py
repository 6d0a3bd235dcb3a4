"""A per-instance cache of database rows that PostgreSQL keeps honest across instances.

Triggers pg_notify(<channel>, <key>) on every change to the cached rows; each instance keeps
one LISTEN connection that drops the named entry. While that connection is down the cache is
empty and off (every lookup reads the database), so it never answers from data that might
have missed an invalidation. A short TTL is the backstop for anything else. Used by the ACL
cache (buckets and grants) and by the signed-URL revocation cache.
"""
from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import AsyncIterator, Generic, TypeVar

import aiopg

from .. import background

log = logging.getLogger("sagestore.cache")
MAX_ENTRIES = 10_000
RECONNECT_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
# the listener must notice a dead peer even when no RST arrives (network partition)
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}

Value = TypeVar("Value")


class NotifiedCache(abc.ABC, Generic[Value]):
    """Subclasses name their NOTIFY channel and load one entry; missing rows (None) are not cached,
    so random keys cannot push real entries out."""

    channel = ""
    label = "cache"

    def __init__(self, pool: aiopg.Pool, ttl: float, max_entries: int = MAX_ENTRIES):
        self.pool = pool
        self.ttl = ttl
        self.max_entries = max_entries
        self.enabled = False  # only while the listener is connected and listening
        self.entries: OrderedDict[str, tuple[float, Value]] = OrderedDict()
        # bumped by every invalidation: a query that raced one must not store what it read
        self.generation = 0
        self.hits = 0
        self.misses = 0  # database queries made through the cache
        self.losses = 0  # listener connections lost (or never made)
        self.listener_pid: int | None = None

    @abc.abstractmethod
    async def load(self, key: str) -> Value | None:
        """The entry's current value from the database; None when the row does not exist."""

    async def get(self, key: str) -> Value | None:
        entry = self.entries.get(key) if self.enabled else None
        if entry is not None and entry[0] > time.monotonic():
            self.entries.move_to_end(key)
            self.hits += 1
            return entry[1]
        self.misses += 1
        generation = self.generation
        value = await self.load(key)
        if value is not None and self.enabled and generation == self.generation:
            self.entries[key] = (time.monotonic() + self.ttl, value)
            self.entries.move_to_end(key)
            if len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)
        return value

    def invalidate(self, key: str) -> None:
        """Drop one entry; writers call this right after their commit, the listener on notification."""
        self.generation += 1
        self.entries.pop(key, None)

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
                        await cur.execute(f"LISTEN {self.channel}")
                        await cur.execute("SELECT pg_backend_pid()")
                        (self.listener_pid,) = await cur.fetchone()
                    self.enable()
                    if failures:
                        log.info("%s listener reconnected; cache enabled again", self.label)
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
                log.warning("%s listener lost (%s); cache disabled, reconnecting in %.1fs",
                            self.label, type(problem).__name__, delay)
                await asyncio.sleep(delay)


Cache = TypeVar("Cache", bound=NotifiedCache)


@contextlib.asynccontextmanager
async def listening(cache: Cache, database_url: str) -> AsyncIterator[Cache]:
    """The cache and its listener task, for an app's cleanup_ctx."""
    task = asyncio.create_task(cache.listen(database_url)) if cache.ttl > 0 else None
    try:
        yield cache
    finally:
        cache.disable()
        await background.stop(task, f"{cache.label} listener")


__all__ = ["NotifiedCache", "listening"]
