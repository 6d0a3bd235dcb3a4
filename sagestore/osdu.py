"""The OSDU File service's domain, apart from its HTTP adapter: data partitions, each one SAGE
bucket owned by the service user, and the file roles a caller's groups give in a partition.

A role counts in a partition when the caller holds a group named exactly
- `<role>`: a bare role, in every partition;
- `<role>@<partition>`;
- `<role>@<partition>.<osdu_domain>`: OSDU Entitlements' group e-mail form, when SAGESTORE_OSDU_DOMAIN
  names the deployment's domain.
Nothing else: `<role>@<partition>.<anything>` is not that partition's role.
"""
from __future__ import annotations

import uuid
from typing import AsyncIterator, Iterable

import psycopg2
from aiohttp import web

from . import context
from .auth.identity import OSDU_SERVICE_USER
from .db import buckets as bucket_queries
from .db import cursor, transaction

SERVICE_USER = OSDU_SERVICE_USER
ROLES = {"service.file.viewers": 1, "service.file.editors": 2, "service.file.admin": 3}
VIEWER, EDITOR, ADMIN = 1, 2, 3
# a stable bucket id per partition: every instance creates (or finds) the same one
PARTITION_NAMESPACE = uuid.UUID("5a6e5703-0000-4000-8000-05d0f11e5e00")


def partition_bucket_id(partition: str) -> str:
    return str(uuid.uuid5(PARTITION_NAMESPACE, partition))


def role_level(groups: Iterable[str], partition: str, domain: str = "") -> int:
    """The highest file role (VIEWER, EDITOR, ADMIN; 0 for none) the groups give in the partition."""
    scopes = {partition.lower()} | ({f"{partition}.{domain}".lower()} if domain else set())
    best = 0
    for group in groups:
        name, at, scope = group.partition("@")
        level = ROLES.get(name.lower())
        if level and (not at or scope.lower() in scopes):
            best = max(best, level)
    return best


def role_name(level: int) -> str:
    return next(name for name, value in ROLES.items() if value == level)


async def partitions_ctx(app: web.Application) -> AsyncIterator[None]:
    """Create each partition's bucket if it is missing (concurrent instances are safe)."""
    buckets: dict[str, str] = {}
    for partition in app[context.SETTINGS].osdu_partitions:
        bucket_id = partition_bucket_id(partition)
        async with cursor(app[context.DB]) as cur:
            exists = await bucket_queries.get(cur, bucket_id)
        if exists is None:
            try:
                async with transaction(app[context.DB]) as cur:
                    await bucket_queries.create(cur, bucket_id, f"osdu-{partition}", "none", SERVICE_USER, False)
            except psycopg2.errors.UniqueViolation:
                pass  # another instance created it first
        buckets[partition] = bucket_id
    app[context.OSDU_BUCKETS] = buckets
    yield
