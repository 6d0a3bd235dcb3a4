"""Shared by the tus and IETF tests: buckets, tus metadata, reading what S3 holds."""
from __future__ import annotations

import base64
import uuid

from conftest import auth

from sagestore import context
from sagestore.acl import Grant
from sagestore.db import buckets as bucket_queries
from sagestore.db import grants as grant_queries
from sagestore.db import transaction

MiB = 2**20
TUS = {"Tus-Resumable": "1.0.0"}


async def make_bucket(app, owner: str = "alice", grants=(), bucket_type: str = "model") -> str:
    bucket_id = str(uuid.uuid4())
    async with transaction(app[context.DB]) as cur:
        await bucket_queries.create(cur, bucket_id, "tus", bucket_type, owner, False)
        for grant in grants:
            await grant_queries.add(cur, bucket_id, Grant(*grant))
    return bucket_id


def metadata(**values: str | None) -> str:
    return ",".join(key if value is None else f"{key} {base64.b64encode(value.encode()).decode()}"
                    for key, value in values.items())


def tus_headers(user: str | None = "alice", **extra: str) -> dict[str, str]:
    return {**TUS, **auth(user), **extra}


async def stored(app, bucket_id: str, key: str) -> bytes | None:
    return await app[context.STORE].read_all(app[context.MAPPING].object(bucket_id, key))


async def stored_info(app, bucket_id: str, key: str):
    return await app[context.STORE].head(app[context.MAPPING].object(bucket_id, key))
