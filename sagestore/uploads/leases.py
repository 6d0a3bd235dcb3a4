"""One writer per upload (and per part) across instances, through lease rows in PostgreSQL.

A lease is (writer token, writer instance, writer_until). It is free when nobody holds it,
when writer_until has passed, or when the holding instance is dead. Liveness comes from a
session advisory lock that every engine instance holds on a dedicated connection for its
whole life: PostgreSQL drops it the moment the process dies (kill -9 included), so a
restarted server can resume an upload at once instead of waiting out the TTL. The TTL still
frees leases of instances that are alive but stuck.

Every state-changing commit is conditional on still holding the lease, so of two writers
exactly one commits. The lease rows are UploadTable's; Leases takes, renews and gives them
back for this instance's requests, and tells a writer of this instance at once when its
lease is taken.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import AsyncIterator

import aiopg

from .. import background

from ..errors import Locked
from .model import Upload
from .table import INSTANCE_LOCK_NAMESPACE, UploadTable, lease_held

log = logging.getLogger("sagestore.uploads.leases")

# lease_held is the rule in SQL (its home is table.py); the signed-URL claim (db/signed_urls.py) uses it too
__all__ = ["InstanceLiveness", "Lease", "Leases", "lease_held", "new_token"]


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
        await background.stop(self._task, "liveness connection")
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
        self.parts: set[int] = set()  # part numbers leased with the upload lease, not yet given back


class Leases:
    """The leases of this instance's requests."""

    def __init__(self, table: UploadTable, liveness: InstanceLiveness, seconds: float) -> None:
        self.table = table
        self.liveness = liveness
        self.seconds = seconds
        self.local: dict[str, Lease] = {}  # token -> lease, for the requests of this instance

    @contextlib.asynccontextmanager
    async def writing(self, upload_id: str, *, steal: bool = False, completing: bool = False,
                      next_part: bool = False) -> AsyncIterator[tuple[Lease, Upload]]:
        """The upload lease (for completion, in state `completing`) and the upload as it is now,
        with its parts; 404/410/409/423 when it cannot be had. next_part: take the next part's
        lease in the same statement when it is free (a body that will fill it)."""
        token = new_token()
        upload, previous, leased_part = await self.table.take_lease(
            upload_id, token, self.liveness.instance_id, steal=steal, completing=completing, next_part=next_part)
        if previous:
            self.lose(previous)  # a steal within this instance stops the old writer now
        lease = Lease(upload_id, token, self.liveness.instance_id, holds_upload=True)
        if leased_part is not None:
            lease.parts.add(leased_part)
        async with self._held(lease):
            yield lease, upload

    @contextlib.asynccontextmanager
    async def part_writer(self, upload_id: str) -> AsyncIterator[Lease]:
        """A lease for writing parts without holding the upload (indexed and multipart parts)."""
        async with self._held(Lease(upload_id, new_token(), self.liveness.instance_id, holds_upload=False)) as lease:
            yield lease

    async def acquire_part(self, lease: Lease, part_number: int, *, wait: bool) -> None:
        """Lease one part number. Writers under an upload lease wait for a previous holder (a stolen
        request finishing its UploadPart), so S3 receives same-numbered parts in lease order; others
        get 423."""
        if part_number in lease.parts:
            return  # taken with the upload lease, and renewed with it since
        deadline = asyncio.get_running_loop().time() + self.seconds + 5
        while not await self.table.take_part_lease(lease.upload_id, part_number, lease.token, lease.instance_id,
                                                   holds_upload=lease.holds_upload):
            if not wait or asyncio.get_running_loop().time() > deadline:
                raise Locked(f"part {part_number} is being written by another request; retry later",
                             headers={"Retry-After": "1"})
            await asyncio.sleep(0.1)

    async def release_part(self, lease: Lease, part_number: int) -> None:
        lease.parts.discard(part_number)
        await self.table.release_part_lease(lease.upload_id, part_number, lease.token)

    async def fence(self, upload_id: str) -> None:
        """Whoever writes this open upload loses the lease now (take over): its commit will fail."""
        previous = await self.table.clear_writer(upload_id)
        if previous:
            self.lose(previous)

    def lose(self, token: str) -> None:
        """A writer of this instance whose lease was taken stops at its next check."""
        if token in self.local:
            self.local[token].lost.set()

    def lose_all(self, upload_id: str) -> None:
        for lease in list(self.local.values()):
            if lease.upload_id == upload_id:
                lease.lost.set()

    @contextlib.asynccontextmanager
    async def _held(self, lease: Lease) -> AsyncIterator[Lease]:
        """Renewed while the block runs, given back when it ends (unless a commit gave it back)."""
        self.local[lease.token] = lease
        renewer = asyncio.create_task(self._renew_forever(lease))
        try:
            yield lease
        finally:
            renewer.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(lease))

    async def _release(self, lease: Lease) -> None:
        self.local.pop(lease.token, None)
        if not lease.released:
            await self.table.release(lease.upload_id, lease.token, holds_upload=lease.holds_upload)

    async def _renew_forever(self, lease: Lease) -> None:
        """Extend the lease every seconds/3 while the request runs; flag it lost when it was taken."""
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                if not await self.table.renew(lease.upload_id, lease.token, holds_upload=lease.holds_upload):
                    lease.lost.set()
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a missed renewal is retried; the TTL has slack
                log.warning("lease renewal failed for upload %s", lease.upload_id)
