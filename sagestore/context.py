"""Typed keys for the resources an app holds; opened and closed in app.py's cleanup_ctx."""
from __future__ import annotations

from typing import TYPE_CHECKING

import aiopg
from aiohttp import web

from .auth.identity import Identity

if TYPE_CHECKING:
    from .acl.cache import AclCache
    from .auth.signing import UrlSigner
    from .auth.tokens import Authenticator
    from .config import Settings
    from .db.signed_urls import SignedUrlCache
    from .db.s3_cache import S3DoorCache
    from .metrics import Metrics
    from .s3api.credentials import GroupsRecorder, S3Credentials
    from .storage import BucketMapping, ObjectStore
    from .uploads import UploadEngine

SETTINGS: web.AppKey["Settings"] = web.AppKey("settings")
DB: web.AppKey[aiopg.Pool] = web.AppKey("db")
STORE: web.AppKey["ObjectStore"] = web.AppKey("store")
MAPPING: web.AppKey["BucketMapping"] = web.AppKey("mapping")
AUTH: web.AppKey["Authenticator"] = web.AppKey("auth")
METRICS: web.AppKey["Metrics"] = web.AppKey("metrics")
ACL: web.AppKey["AclCache"] = web.AppKey("acl")
ENGINE: web.AppKey["UploadEngine"] = web.AppKey("engine")
SIGNER: web.AppKey["UrlSigner"] = web.AppKey("signer")
SIGNED_URLS: web.AppKey["SignedUrlCache"] = web.AppKey("signed_urls")
S3_CACHE: web.AppKey["S3DoorCache"] = web.AppKey("s3_cache")
S3_CREDENTIALS: web.AppKey["S3Credentials"] = web.AppKey("s3_credentials")
S3_GROUPS: web.AppKey["GroupsRecorder"] = web.AppKey("s3_groups")
OSDU_BUCKETS: web.AppKey[dict[str, str]] = web.AppKey("osdu_buckets")  # partition id -> SAGE bucket id

# the caller a token names, set by the auth middleware (absent: anonymous)
IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)
