"""Shared by the tus and IETF tests: buckets, tus metadata, reading what S3 holds."""
from __future__ import annotations

import base64

from sagestore import context
from support.data import auth

MiB = 2**20
TUS = {"Tus-Resumable": "1.0.0"}


def metadata(**values: str | None) -> str:
    return ",".join(key if value is None else f"{key} {base64.b64encode(value.encode()).decode()}"
                    for key, value in values.items())


def tus_headers(user: str | None = "alice", **extra: str) -> dict[str, str]:
    return {**TUS, **auth(user), **extra}


async def stored(app, bucket_id: str, key: str) -> bytes | None:
    return await app[context.STORE].read_all(app[context.MAPPING].object(bucket_id, key))


async def stored_info(app, bucket_id: str, key: str):
    return await app[context.STORE].head(app[context.MAPPING].object(bucket_id, key))
