from __future__ import annotations

from typing import Any

from ..auth.identity import Identity
from ..db import grants as grant_queries
from ..errors import Forbidden, NotFound, Unauthorized
from .cache import AclCache
from .model import held_permissions, satisfies


async def authorize(source: AclCache | Any, bucket_id: str, identity: Identity, needed: str, *,
                    writing: bool = False) -> tuple[dict[str, Any], frozenset[str]]:
    """Load the bucket and check `needed`; returns (bucket row, held permissions).

    `source` is the app's AclCache (no database connection taken on a hit), or a cursor for
    checks inside a transaction that then changes the bucket or its grants (always fresh).

    401: anonymous where a user is needed; 404: missing or unreadable for this caller;
    403: readable but lacking `needed`. `writing` also hides archived buckets (404).
    """
    if isinstance(source, AclCache):
        bucket, grants = await source.bucket_with_grants(bucket_id)
    else:
        bucket, grants = await grant_queries.bucket_with_grants(source, bucket_id)
    held = held_permissions(identity, grants) if bucket else frozenset()
    if bucket is not None and satisfies(held, needed) and not (writing and bucket["archived"]):
        return bucket, held
    if identity.anonymous:
        raise Unauthorized("authentication required")
    if bucket is None or not satisfies(held, "READ") or (writing and bucket["archived"]):
        raise NotFound("bucket not found")
    raise Forbidden(f"{needed} permission required")
