"""Queries on osdu_files: the OSDU File service's records, one per (partition, FileID)."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any


async def create(cur: Any, *, partition_id: str, file_id: str, bucket_id: str, key: str, driver: str, location: str,
                 created_by: str) -> bool:
    """A new record; False when the partition already has this FileID."""
    await cur.execute("""INSERT INTO osdu_files (partition_id, file_id, bucket_id, key, driver, location, created_by)
                         VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                      (partition_id, file_id, bucket_id, key, driver, location, created_by))
    return cur.rowcount == 1


async def get(cur: Any, partition_id: str, file_id: str) -> dict[str, Any] | None:
    await cur.execute("SELECT * FROM osdu_files WHERE partition_id = %s AND file_id = %s", (partition_id, file_id))
    return await cur.fetchone()


async def by_record_id(cur: Any, partition_id: str, record_id: str) -> dict[str, Any] | None:
    """A file by its metadata record id or, for convenience, its FileID (the record id first)."""
    await cur.execute("""SELECT * FROM osdu_files WHERE partition_id = %s AND (metadata_id = %s OR file_id = %s)
                         ORDER BY metadata_id = %s DESC LIMIT 1""", (partition_id, record_id, record_id, record_id))
    return await cur.fetchone()


async def page(cur: Any, partition_id: str, time_from: datetime, time_to: datetime, created_by: str | None,
               items: int, page_number: int) -> list[dict[str, Any]]:
    """Records created in [time_from, time_to] (of one creator, when given), by creation time."""
    await cur.execute(
        """SELECT * FROM osdu_files WHERE partition_id = %s AND created_at >= %s AND created_at <= %s
             AND (%s::text IS NULL OR created_by = %s) ORDER BY created_at, file_id LIMIT %s OFFSET %s""",
        (partition_id, time_from, time_to, created_by, created_by, items, page_number * items))
    return await cur.fetchall()


async def record_upload(cur: Any, partition_id: str, file_id: str, size: int, sha256: str | None) -> None:
    await cur.execute("""UPDATE osdu_files SET uploaded_at = now(), size = %s, sha256 = %s
                         WHERE partition_id = %s AND file_id = %s""", (size, sha256, partition_id, file_id))


async def uploaded_at_location(cur: Any, partition_id: str, location: str) -> dict[str, Any] | None:
    """The uploaded file at a FileSource, locked for the metadata that will name it (in a transaction)."""
    await cur.execute("""SELECT * FROM osdu_files WHERE partition_id = %s AND location = %s
                         AND uploaded_at IS NOT NULL FOR UPDATE""", (partition_id, location))
    return await cur.fetchone()


async def set_metadata(cur: Any, partition_id: str, file_id: str, record_id: str, record: dict[str, Any]) -> None:
    await cur.execute("UPDATE osdu_files SET metadata_id = %s, metadata = %s WHERE partition_id = %s AND file_id = %s",
                      (record_id, json.dumps(record), partition_id, file_id))


async def delete_by_record_id(cur: Any, partition_id: str, record_id: str) -> dict[str, Any] | None:
    """Delete the file whose metadata record this is; returns its file_id and key, or None."""
    await cur.execute("DELETE FROM osdu_files WHERE partition_id = %s AND metadata_id = %s RETURNING file_id, key",
                      (partition_id, record_id))
    return await cur.fetchone()
