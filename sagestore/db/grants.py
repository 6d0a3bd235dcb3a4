"""Queries on the grants table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .buckets import BUCKET_COLUMNS


@dataclass(frozen=True)
class Grant:
    """One row of grants: a permission on a bucket for a user or a group."""
    grantee_type: str
    grantee: str
    permission: str

    def as_json(self) -> dict[str, str]:
        return {"granteeType": self.grantee_type, "grantee": self.grantee, "permission": self.permission}


async def bucket_with_grants(cur: Any, bucket_id: str) -> tuple[dict[str, Any] | None, list[Grant]]:
    """The bucket row and all its grants, in one round trip."""
    await cur.execute(
        f"""SELECT {BUCKET_COLUMNS},
                   coalesce((SELECT json_agg(json_build_array(g.grantee_type, g.grantee, g.permission))
                             FROM grants g WHERE g.bucket_id = b.id), '[]') AS grants
            FROM buckets b WHERE b.id = %s""", (bucket_id,))
    row = await cur.fetchone()
    if row is None:
        return None, []
    grants = [Grant(*item) for item in row.pop("grants")]
    return row, grants


async def list_for_bucket(cur: Any, bucket_id: str) -> list[Grant]:
    await cur.execute("""SELECT grantee_type, grantee, permission FROM grants WHERE bucket_id = %s
                         ORDER BY grantee_type DESC, grantee, permission""", (bucket_id,))
    return [Grant(r["grantee_type"], r["grantee"], r["permission"]) for r in await cur.fetchall()]


async def add(cur: Any, bucket_id: str, grant: Grant) -> None:
    await cur.execute("INSERT INTO grants VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                      (bucket_id, grant.grantee_type, grant.grantee, grant.permission))


async def remove(cur: Any, bucket_id: str, grantee_type: str, grantee: str, permission: str | None) -> int:
    """Remove one permission, or all of a grantee's when permission is None; returns rows removed."""
    await cur.execute("""DELETE FROM grants WHERE bucket_id = %s AND grantee_type = %s AND grantee = %s
                         AND (%s::text IS NULL OR permission = %s)""",
                      (bucket_id, grantee_type, grantee, permission, permission))
    return cur.rowcount


async def list_for_grantee(cur: Any, bucket_id: str, grantee_type: str, grantee: str) -> list[Grant]:
    """One grantee's grants on a bucket, locked until the transaction ends."""
    await cur.execute("""SELECT grantee_type, grantee, permission FROM grants
                         WHERE bucket_id = %s AND grantee_type = %s AND grantee = %s
                         ORDER BY permission FOR UPDATE""", (bucket_id, grantee_type, grantee))
    return [Grant(r["grantee_type"], r["grantee"], r["permission"]) for r in await cur.fetchall()]
