"""Queries on the buckets table."""
from __future__ import annotations

from typing import Any

BUCKET_COLUMNS = "id::text AS id, name, type, owner, archived, time_created, time_last_updated"


async def create(cur: Any, bucket_id: str, name: str, bucket_type: str, owner: str, public: bool) -> dict[str, Any]:
    """Insert a bucket with the owner's FULL_CONTROL grant (and AllUsers READ if public). Call in a transaction."""
    await cur.execute(f"INSERT INTO buckets (id, name, type, owner) VALUES (%s, %s, %s, %s) RETURNING {BUCKET_COLUMNS}",
                      (bucket_id, name, bucket_type, owner))
    row = await cur.fetchone()
    await cur.execute("INSERT INTO grants VALUES (%s, 'USER', %s, 'FULL_CONTROL')", (bucket_id, owner))
    if public:
        await cur.execute("INSERT INTO grants VALUES (%s, 'GROUP', 'AllUsers', 'READ')", (bucket_id,))
    return row


async def get(cur: Any, bucket_id: str) -> dict[str, Any] | None:
    await cur.execute(f"SELECT {BUCKET_COLUMNS} FROM buckets WHERE id = %s", (bucket_id,))
    return await cur.fetchone()


async def list_visible(cur: Any, user: str | None, groups: list[str], owner: str | None = None,
                       name: str | None = None, after: tuple[Any, str] | None = None,
                       limit: int | None = None) -> list[dict[str, Any]]:
    """Buckets the caller may read: own USER grants, GROUP grants, and public ones; oldest first.
    `after` (time_created, id) and `limit` page through them."""
    await cur.execute(
        f"""SELECT {BUCKET_COLUMNS} FROM buckets b
            WHERE EXISTS (SELECT 1 FROM grants g WHERE g.bucket_id = b.id
                          AND g.permission IN ('READ', 'FULL_CONTROL')
                          AND ((g.grantee_type = 'USER' AND g.grantee = %(user)s)
                               OR (g.grantee_type = 'GROUP' AND (g.grantee = 'AllUsers' OR g.grantee = ANY(%(groups)s)))))
              AND (%(owner)s::text IS NULL OR b.owner = %(owner)s)
              AND (%(name)s::text IS NULL OR b.name = %(name)s)
              AND (%(after_time)s::timestamptz IS NULL OR (b.time_created, b.id) > (%(after_time)s, %(after_id)s::uuid))
            ORDER BY b.time_created, b.id
            LIMIT %(limit)s""",
        {"user": user, "groups": groups, "owner": owner, "name": name, "limit": limit,
         "after_time": after[0] if after else None, "after_id": after[1] if after else None})
    return await cur.fetchall()


async def update(cur: Any, bucket_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
    allowed = {"name", "type", "archived"}
    assert set(changes) <= allowed
    assignments = ", ".join(f"{column} = %({column})s" for column in changes)
    await cur.execute(
        f"UPDATE buckets SET {assignments}, time_last_updated = now() WHERE id = %(id)s RETURNING {BUCKET_COLUMNS}",
        {**changes, "id": bucket_id})
    return await cur.fetchone()


async def delete(cur: Any, bucket_id: str) -> bool:
    """Delete the bucket; its grants go with it (ON DELETE CASCADE)."""
    await cur.execute("DELETE FROM buckets WHERE id = %s", (bucket_id,))
    return cur.rowcount == 1
