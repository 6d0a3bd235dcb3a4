"""Queries on s3_access_keys and s3_user_groups (cached per instance by db/s3_cache.py)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

COLUMNS = "id, owner, description, signing_key_id, created_at, expires_at, revoked_at"
# expired keys stay listed (and refused) this long, then the next key creation of their owner drops them
KEEP_EXPIRED = "1 day"


async def insert(cur: Any, *, key_id: str, owner: str, description: str, signing_key_id: str,
                 expires_at: datetime) -> dict[str, Any]:
    await cur.execute(
        f"""INSERT INTO s3_access_keys (id, owner, description, signing_key_id, expires_at)
            VALUES (%s, %s, %s, %s, %s) RETURNING {COLUMNS}""",
        (key_id, owner, description, signing_key_id, expires_at))
    return await cur.fetchone()


async def drop_expired(cur: Any, owner: str) -> None:
    await cur.execute(f"DELETE FROM s3_access_keys WHERE owner = %s AND expires_at < now() - interval '{KEEP_EXPIRED}'",
                      (owner,))


async def get(cur: Any, key_id: str) -> dict[str, Any] | None:
    await cur.execute(f"SELECT {COLUMNS} FROM s3_access_keys WHERE id = %s", (key_id,))
    return await cur.fetchone()


async def list_for(cur: Any, owner: str) -> list[dict[str, Any]]:
    await cur.execute(f"SELECT {COLUMNS} FROM s3_access_keys WHERE owner = %s ORDER BY created_at, id", (owner,))
    return await cur.fetchall()


async def revoke(cur: Any, key_id: str, owner: str) -> dict[str, Any] | None:
    """Revoke one of the owner's keys; None when the owner has no such key."""
    await cur.execute(
        f"""UPDATE s3_access_keys SET revoked_at = coalesce(revoked_at, now())
            WHERE id = %s AND owner = %s RETURNING {COLUMNS}""", (key_id, owner))
    return await cur.fetchone()


async def record_groups(cur: Any, user: str, groups: list[str]) -> None:
    """Remember the groups the user's latest token carried (written only when they changed)."""
    await cur.execute(
        """INSERT INTO s3_user_groups (username, groups) VALUES (%s, %s)
           ON CONFLICT (username) DO UPDATE SET groups = EXCLUDED.groups, seen_at = now()
           WHERE s3_user_groups.groups IS DISTINCT FROM EXCLUDED.groups""", (user, groups))


async def groups_of(cur: Any, user: str) -> list[str] | None:
    await cur.execute("SELECT groups FROM s3_user_groups WHERE username = %s", (user,))
    row = await cur.fetchone()
    return list(row["groups"]) if row is not None else None
