"""Callers, digests and buckets for the tests."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid

from sagestore import context
from sagestore.acl import Grant
from sagestore.db import buckets as bucket_queries
from sagestore.db import create_pool, transaction
from sagestore.db import grants as grant_queries

MiB = 2**20


def auth(user: str | None, groups: tuple[str, ...] = ()) -> dict[str, str]:
    """Headers for a noauth caller; None means anonymous."""
    if user is None:
        return {}
    token = f"user:{user}" + (f";groups={','.join(groups)}" if groups else "")
    return {"Authorization": f"sage {token}"}


def sha256(data: bytes | None) -> str | None:
    """Hex digest; None for None (an object that is not stored), so a comparison still reads well."""
    return None if data is None else hashlib.sha256(data).hexdigest()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def insert_bucket(pool, owner: str = "alice", bucket_type: str = "model", grants=(), *,
                        name: str = "test", archived: bool = False) -> str:
    """A bucket row written straight to the database (no API call); grants are (type, grantee,
    permission) tuples."""
    bucket_id = str(uuid.uuid4())
    async with transaction(pool) as cur:
        await bucket_queries.create(cur, bucket_id, name, bucket_type, owner, False)
        for grant in grants:
            await grant_queries.add(cur, bucket_id, Grant(*grant))
        if archived:
            await bucket_queries.update(cur, bucket_id, {"archived": True})
    return bucket_id


async def make_bucket(app_or_client, owner: str = "alice", grants=(), bucket_type: str = "model", **extra) -> str:
    """insert_bucket on the database of an in-process app (or of a test client's app)."""
    app = getattr(getattr(app_or_client, "server", None), "app", None) or app_or_client
    return await insert_bucket(app[context.DB], owner, bucket_type, grants, **extra)


def create_bucket_row(database_url: str, owner: str = "alice", grants=(), bucket_type: str = "model") -> str:
    """insert_bucket for tests that drive server subprocesses (no event loop of their own)."""
    async def run() -> str:
        pool = await create_pool(database_url, 1)
        try:
            return await insert_bucket(pool, owner, bucket_type, grants)
        finally:
            pool.close()
            await pool.wait_closed()
    return asyncio.run(run())
