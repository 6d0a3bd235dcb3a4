"""Queries on signed_urls, and the per-instance cache of its rows that every signed request checks."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from . import cursor
from .notified import NotifiedCache

CHANNEL = "sagestore_signed_url"
COLUMNS = ("id::text AS id, method, bucket_id::text AS bucket_id, key, purpose, created_by, created_at, "
           "expires_at, key_id, revoked_at, file_id, partition_id, uploaded_at, creator_groups")


async def insert(cur: Any, *, url_id: str, method: str, bucket_id: str, key: str, purpose: str, created_by: str,
                 creator_groups: list[str], expires_at: datetime, key_id: str, file_id: str | None = None,
                 partition_id: str | None = None) -> dict[str, Any]:
    await cur.execute(
        f"""INSERT INTO signed_urls (id, method, bucket_id, key, purpose, created_by, creator_groups, expires_at,
                                     key_id, file_id, partition_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {COLUMNS}""",
        (url_id, method, bucket_id, key, purpose, created_by, sorted(creator_groups), expires_at, key_id, file_id,
         partition_id))
    return await cur.fetchone()


async def get(cur: Any, url_id: str) -> dict[str, Any] | None:
    await cur.execute(f"SELECT {COLUMNS} FROM signed_urls WHERE id = %s", (url_id,))
    return await cur.fetchone()


async def list_shares(cur: Any, created_by: str | None, bucket_id: str | None) -> list[dict[str, Any]]:
    """Share links, oldest first: of one creator (None: every creator), of one bucket (None: all)."""
    await cur.execute(
        f"""SELECT {COLUMNS} FROM signed_urls WHERE purpose = 'share'
              AND (%s::text IS NULL OR created_by = %s) AND (%s::uuid IS NULL OR bucket_id = %s::uuid)
            ORDER BY created_at, id""",
        (created_by, created_by, bucket_id, bucket_id))
    return await cur.fetchall()


async def revoke(cur: Any, *, url_id: str | None = None, created_by: str | None = None,
                 file_id: str | None = None, partition_id: str | None = None) -> list[str]:
    """Revoke the URLs that match every given condition (at least one); returns their ids."""
    conditions, values = ["revoked_at IS NULL"], []
    for column, value in (("id", url_id), ("created_by", created_by), ("file_id", file_id),
                          ("partition_id", partition_id)):
        if value is not None:
            conditions.append(f"{column} = %s")
            values.append(value)
    assert len(values) >= 1
    await cur.execute(f"UPDATE signed_urls SET revoked_at = now() WHERE {' AND '.join(conditions)} RETURNING id::text",
                      values)
    return [row["id"] for row in await cur.fetchall()]


async def claim_upload(cur: Any, url_id: str, token: str, instance_id: int, seconds: float) -> dict[str, Any] | None:
    """Take the URL's writer lease when no upload through it completed and no live writer holds it.
    Returns the row when claimed, else None (the caller reads the row to say why)."""
    from ..uploads.leases import lease_held
    await cur.execute(
        f"""UPDATE signed_urls SET writer = %s, writer_instance = %s,
                                   writer_until = now() + make_interval(secs => %s)
            WHERE id = %s AND revoked_at IS NULL AND uploaded_at IS NULL AND expires_at > now()
              AND NOT {lease_held()}
            RETURNING {COLUMNS}""", (token, instance_id, seconds, url_id))
    return await cur.fetchone()


async def finish_upload(cur: Any, url_id: str, token: str) -> bool:
    """Record the completed upload, if this writer still holds the lease (call in a transaction)."""
    await cur.execute("""UPDATE signed_urls SET uploaded_at = now(), writer = NULL, writer_instance = NULL,
                                                writer_until = NULL
                         WHERE id = %s AND writer = %s AND uploaded_at IS NULL""", (url_id, token))
    return cur.rowcount == 1


async def release_upload(cur: Any, url_id: str, token: str) -> None:
    await cur.execute("""UPDATE signed_urls SET writer = NULL, writer_instance = NULL, writer_until = NULL
                         WHERE id = %s AND writer = %s""", (url_id, token))


class SignedUrlCache(NotifiedCache[dict[str, Any]]):
    """url id -> its row; a revocation (or deletion) on any instance drops the entry everywhere."""
    channel = CHANNEL
    label = "signed-URL cache"

    async def load(self, url_id: str) -> dict[str, Any] | None:
        async with cursor(self.pool) as cur:
            return await get(cur, url_id)
