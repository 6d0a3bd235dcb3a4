"""The S3 door's per-instance cache: access-key rows, users' latest groups and S3 bucket names,
behind one LISTEN connection (channel sagestore_s3; triggers of migrations 0009 and 0010 send
'key:<id>', 'groups:<user>' and 'name:<name>'), so a revoked key or a deleted bucket name is
dropped on every instance at once, as the ACL cache's entries are."""
from __future__ import annotations

from typing import Any

from . import access_keys, cursor, s3_names
from .notified import NotifiedCache

CHANNEL = "sagestore_s3"


class S3DoorCache(NotifiedCache[Any]):
    channel = CHANNEL
    label = "S3 door cache"

    async def load(self, entry: str) -> Any:
        kind, _, name = entry.partition(":")
        async with cursor(self.pool) as cur:
            if kind == "key":
                return await access_keys.get(cur, name)
            if kind == "groups":
                groups = await access_keys.groups_of(cur, name)
                return tuple(groups) if groups is not None else None
            if kind == "name":
                return await s3_names.bucket_of(cur, name)
        raise ValueError(f"unknown S3 cache entry kind {kind!r}")

    async def access_key(self, key_id: str) -> dict[str, Any] | None:
        return await self.get("key:" + key_id)

    async def groups(self, user: str) -> tuple[str, ...] | None:
        return await self.get("groups:" + user)

    async def bucket_id(self, name: str) -> str | None:
        return await self.get("name:" + name)

    def forget_key(self, key_id: str) -> None:
        self.invalidate("key:" + key_id)

    def forget_name(self, name: str) -> None:
        self.invalidate("name:" + name)
