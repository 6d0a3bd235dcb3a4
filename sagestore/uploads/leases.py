"""One writer per upload (and per part) across instances, through lease rows in PostgreSQL.

A lease is (writer token, writer instance, writer_until). It is free when nobody holds it,
when writer_until has passed, or when the holding instance is dead. Liveness comes from a
session advisory lock that every engine instance holds on a dedicated connection for its
whole life: PostgreSQL drops it the moment the process dies (kill -9 included), so a
restarted server can resume an upload at once instead of waiting out the TTL. The TTL still
frees leases of instances that are alive but stuck.

Every state-changing commit is conditional on still holding the lease, so of two writers
exactly one commits.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import aiopg

from ..db import cursor

log = logging.getLogger("sagestore.uploads.leases")

# first key of the two-int advisory lock that marks a live engine instance
INSTANCE_LOCK_NAMESPACE = 0x5A6E5702


def writer_alive(column: str) -> str:
    """SQL: the instance in `column` still holds its liveness lock."""
    return (f"EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
            f" AND l.classid = {INSTANCE_LOCK_NAMESPACE}::oid AND l.objid = {column}::oid AND l.objsubid = 2)")


def lease_held(prefix: str = "") -> str:
    """SQL: the lease in columns {prefix}writer* is held by a live writer."""
    return (f"({prefix}writer IS NOT NULL AND {prefix}writer_until > now()"
            f" AND {writer_alive(prefix + 'writer_instance')})")


def new_token() -> str:
    return secrets.token_hex(16)


class InstanceLiveness:
    """Holds this instance's advisory lock on its own connection, reconnecting if it drops."""

    def __init__(self, database_url: str, check_every: float = 5.0) -> None:
        self.database_url = database_url
        self.check_every = check_every
        self.instance_id = 0
        self._conn: aiopg.Connection | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._keep())

    async def _connect(self) -> None:
        conn = await aiopg.connect(self.database_url, timeout=30)
        try:
            async with conn.cursor() as cur:
                while True:
                    candidate = self.instance_id or secrets.randbelow(2**31 - 2) + 1
                    await cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (INSTANCE_LOCK_NAMESPACE, candidate))
                    if (await cur.fetchone())[0]:
                        self.instance_id = candidate
                        break
                    self.instance_id = 0  # taken by another live instance: draw again
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.check_every)
            try:
                async with self._conn.cursor() as cur:
                    await cur.execute("SELECT 1")
            except Exception:  # noqa: BLE001 - the connection died; our leases look dead to others
                log.warning("liveness connection to PostgreSQL lost; reconnecting")
                with contextlib.suppress(Exception):
                    self._conn.close()
                try:
                    await self._connect()
                except Exception:  # noqa: BLE001 - try again at the next tick
                    log.warning("cannot reconnect the liveness connection yet")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Lease:
    """A request's hold on an upload and/or some of its parts; `lost` is set when it is taken away."""

    def __init__(self, upload_id: str, token: str, instance_id: int, holds_upload: bool) -> None:
        self.upload_id = upload_id
        self.token = token
        self.instance_id = instance_id
        self.holds_upload = holds_upload
        self.lost = asyncio.Event()
        self.released = False  # set when a commit already gave up the upload and its part leases


async def renew_forever(pool: Any, lease: Lease, seconds: float) -> None:
    """Extend the lease every seconds/3 while the request runs; flag it lost when it was taken."""
    while True:
        await asyncio.sleep(seconds / 3)
        try:
            async with cursor(pool) as cur:
                if lease.holds_upload:
                    await cur.execute(
                        "UPDATE uploads SET writer_until = now() + %s * interval '1 second'"
                        " WHERE id = %s AND writer = %s", (seconds, lease.upload_id, lease.token))
                    if cur.rowcount == 0:
                        lease.lost.set()
                        return
                await cur.execute(
                    "UPDATE upload_part_leases SET writer_until = now() + %s * interval '1 second'"
                    " WHERE upload_id = %s AND writer = %s", (seconds, lease.upload_id, lease.token))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a missed renewal is retried; the TTL has slack
            log.warning("lease renewal failed for upload %s", lease.upload_id)
