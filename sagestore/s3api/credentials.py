"""S3 access keys: who a SigV4-signed request comes from.

A key is a row (id, owner, expiry, revocation) and a secret that is never stored: it is derived
from the server's URL-signing key (HMAC-SHA256 of the key id), so every instance computes it and
a database dump reveals none. A key acts as its owner with the groups of the owner's most recent
SAGE token (recorded by GroupsRecorder whenever a token authenticates), not the groups it had when
the key was made. A key expires no later than the SAGE token it was made with, so a user whose
token source is disabled loses their keys when their last token ends; a revocation reaches every
instance within the ACL cache's bound (NOTIFY, like the ACL cache).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from datetime import datetime, timezone

import aiopg

from ..auth.identity import Identity
from ..auth.signing import UrlSigner
from ..db import cursor
from ..db import access_keys as key_queries
from ..db.s3_cache import S3DoorCache
from .errors import error
from .sigv4 import Credential, signing_key

log = logging.getLogger("sagestore.s3")
KEY_ID_PREFIX = "SAGE"
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
SIGNING_KEYS_KEPT = 4096  # derived per-day signing keys, cached per instance
GROUPS_REFRESH_SECONDS = 600.0  # rewrite an unchanged group list at most this often (seen_at)


def new_key_id() -> str:
    """SAGE + 16 base32 characters: 20 characters like AWS's, 80 random bits."""
    return KEY_ID_PREFIX + "".join(secrets.choice(_BASE32) for _ in range(16))


class S3Credentials:
    def __init__(self, signer: UrlSigner, cache: S3DoorCache) -> None:
        self.signer = signer
        self.cache = cache
        self._signing_keys: OrderedDict[tuple, bytes] = OrderedDict()

    def secret_for(self, key_id: str, signing_key_id: str) -> str:
        """The key's secret: 40 characters of base64, like an AWS secret access key."""
        master = self.signer.keys.get(signing_key_id)
        if master is None:
            raise KeyError(signing_key_id)
        mac = hmac.new(master, b"sagestore-s3-secret-v1\x00" + key_id.encode(), hashlib.sha256).digest()
        return base64.b64encode(mac).decode()[:40]

    @property
    def current_signing_key_id(self) -> str:
        return self.signer.current

    async def _usable(self, access_key_id: str) -> dict:
        row = await self.cache.access_key(access_key_id)
        if row is None or row["revoked_at"] is not None or row["expires_at"] <= datetime.now(timezone.utc):
            raise error("InvalidAccessKeyId")
        return row

    async def _identity(self, row: dict) -> Identity:
        groups = await self.cache.groups(row["owner"]) or ()
        return Identity(row["owner"], frozenset(groups), row["expires_at"].timestamp())

    async def caller_v2(self, access_key_id: str) -> tuple[Identity, str]:
        """The identity a key acts as and its secret (for SigV2 presigned URLs)."""
        row = await self._usable(access_key_id)
        try:
            secret = self.secret_for(row["id"], row["signing_key_id"])
        except KeyError:
            raise error("InvalidAccessKeyId") from None
        return await self._identity(row), secret

    async def caller(self, credential: Credential) -> tuple[Identity, bytes]:
        """The identity a key acts as and the SigV4 signing key of the request's day and region;
        InvalidAccessKeyId for a key that does not exist, was revoked or expired."""
        row = await self._usable(credential.access_key_id)
        cache_key = (row["id"], row["signing_key_id"], credential.date, credential.region)
        key = self._signing_keys.get(cache_key)
        if key is None:
            try:
                secret = self.secret_for(row["id"], row["signing_key_id"])
            except KeyError:  # the signing key it was derived from was retired
                raise error("InvalidAccessKeyId") from None
            key = signing_key(secret, credential)
            self._signing_keys[cache_key] = key
            if len(self._signing_keys) > SIGNING_KEYS_KEPT:
                self._signing_keys.popitem(last=False)
        return await self._identity(row), key


class GroupsRecorder:
    """Writes the groups of each authenticated token's user to s3_user_groups, only when they
    differ from what this instance wrote last (or every GROUPS_REFRESH_SECONDS), so a request
    costs no database write in the common case."""

    def __init__(self, pool: aiopg.Pool) -> None:
        self.pool = pool
        self.written: OrderedDict[str, tuple[frozenset[str], float]] = OrderedDict()

    async def seen(self, identity: Identity) -> None:
        if identity.user is None:
            return
        last = self.written.get(identity.user)
        now = time.monotonic()
        if last is not None and last[0] == identity.groups and now - last[1] < GROUPS_REFRESH_SECONDS:
            return
        try:
            async with cursor(self.pool) as cur:
                await key_queries.record_groups(cur, identity.user, sorted(identity.groups))
        except Exception as problem:  # noqa: BLE001 - the request goes on; keys keep the groups seen before
            log.warning("could not record the groups of a token's user: %s", type(problem).__name__)
            return
        self.written[identity.user] = (identity.groups, now)
        self.written.move_to_end(identity.user)
        if len(self.written) > 100_000:
            self.written.popitem(last=False)
