"""Queries on s3_bucket_names, the S3 names of SAGE buckets (cached per instance by db/s3_cache.py)."""
from __future__ import annotations

from typing import Any



async def insert(cur: Any, name: str, bucket_id: str) -> bool:
    """Give the bucket its S3 name; False when the name is taken (call in a transaction)."""
    await cur.execute("INSERT INTO s3_bucket_names (name, bucket_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                      (name, bucket_id))
    return cur.rowcount == 1


async def bucket_of(cur: Any, name: str) -> str | None:
    await cur.execute("SELECT bucket_id::text AS bucket_id FROM s3_bucket_names WHERE name = %s", (name,))
    row = await cur.fetchone()
    return row["bucket_id"] if row is not None else None


async def names_of(cur: Any, bucket_ids: list[str]) -> dict[str, str]:
    """bucket id -> S3 name, for those of the ids that have one."""
    await cur.execute("SELECT bucket_id::text AS bucket_id, name FROM s3_bucket_names WHERE bucket_id = ANY(%s::uuid[])",
                      (bucket_ids,))
    return {row["bucket_id"]: row["name"] for row in await cur.fetchall()}
