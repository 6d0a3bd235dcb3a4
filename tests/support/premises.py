"""Waits on observable state, for tests whose premise is a race: before the second actor
moves, the first one must visibly hold the lease (a row in PostgreSQL), have a part in S3
(listed by S3 itself) or have passed a check (a metric). A premise that does not come true
within a generous deadline fails the test loudly instead of letting it pass without its race.
The machine running the suite is shared and loaded: deadlines are long, and nothing here
measures how long anything took."""
from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Awaitable, Callable

import psycopg2
import psycopg2.extras

from sagestore import context
from sagestore.db import cursor
from sagestore.storage import Location
from sagestore.uploads.table import lease_held

DEADLINE = 120.0  # seconds; a premise that takes longer than this is broken, not slow

LEASE_SQL = (f"SELECT *, {lease_held()} AS lease_held FROM uploads WHERE id = %s")


async def eventually(check: Callable[[], Any | Awaitable[Any]], what: str, *, timeout: float = DEADLINE,
                     interval: float = 0.05) -> Any:
    """Poll check() (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"premise not reached within {timeout:.0f} s: {what}")
        await asyncio.sleep(interval)


def eventually_sync(check: Callable[[], Any], what: str, *, timeout: float = DEADLINE, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"premise not reached within {timeout:.0f} s: {what}")
        time.sleep(interval)


async def upload_row(app, upload_id: str) -> dict[str, Any]:
    """The upload's row, with lease_held: a live writer holds its lease right now."""
    async with cursor(app[context.DB]) as cur:
        await cur.execute(LEASE_SQL, (upload_id,))
        return dict(await cur.fetchone())


async def lease_taken(app, upload_id: str) -> dict[str, Any]:
    """Wait until a request holds the upload's writer lease; its row."""
    async def held() -> dict[str, Any] | None:
        row = await upload_row(app, upload_id)
        return row if row["lease_held"] else None
    return await eventually(held, f"a request holds the lease of upload {upload_id}")


async def part_lease_taken(app, upload_id: str, part_number: int) -> None:
    """Wait until a live request holds the lease of one part (indexed sessions, multipart parts)."""
    async def held() -> bool:
        async with cursor(app[context.DB]) as cur:
            await cur.execute(f"SELECT {lease_held('p.')} AS held FROM upload_part_leases p"
                              " WHERE p.upload_id = %s AND p.part_number = %s", (upload_id, part_number))
            row = await cur.fetchone()
            return bool(row and row["held"])
    await eventually(held, f"a request holds the lease of part {part_number} of upload {upload_id}")


async def s3_parts(app, row: dict[str, Any]) -> dict[int, int]:
    """{part number: size} of the upload's S3 multipart upload, as S3 lists them."""
    parts = await app[context.STORE].list_parts(Location(row["s3_bucket"], row["s3_key"]), row["s3_upload_id"])
    return {int(part["PartNumber"]): int(part["Size"]) for part in parts}


async def part_in_s3(app, row: dict[str, Any], number: int, size: int) -> None:
    """Wait until S3 lists part `number` of the upload with `size` bytes."""
    async def listed() -> bool:
        return (await s3_parts(app, row)).get(number) == size
    await eventually(listed, f"S3 lists part {number} ({size} bytes) of upload {row['id']}")


def upload_row_sync(database_url: str, upload_id: str) -> dict[str, Any]:
    """upload_row for tests that drive server subprocesses."""
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(LEASE_SQL, (upload_id,))
            return dict(cur.fetchone())
    finally:
        connection.close()


def s3_parts_sync(s3: Any, row: dict[str, Any]) -> dict[int, int]:
    """s3_parts through a boto3 client."""
    answer = s3.list_parts(Bucket=row["s3_bucket"], Key=row["s3_key"], UploadId=row["s3_upload_id"])
    return {int(part["PartNumber"]): int(part["Size"]) for part in answer.get("Parts", [])}


def part_lease_held_sync(database_url: str, upload_id: str, part_number: int) -> bool:
    """A live writer holds the lease of one part (indexed sessions, multipart parts)."""
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cur:
            cur.execute(f"SELECT {lease_held('p.')} FROM upload_part_leases p WHERE p.upload_id = %s"
                        " AND p.part_number = %s", (upload_id, part_number))
            row = cur.fetchone()
            return bool(row and row[0])
    finally:
        connection.close()
