"""Bucket operations of the S3 door: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
GetBucketLocation, GetBucketVersioning, GetBucketAcl."""
from __future__ import annotations

import uuid

from aiohttp import web

from .. import context
from ..db import buckets as bucket_queries
from ..db import cursor, s3_names, transaction
from ..storage import Location
from ..acl import authorize
from .common import allowed, as_s3_refusal, bucket_id_of, caller, is_uuid, operation, small_body, valid_bucket_name
from .errors import error
from .xml import CONTENT_TYPE, owner, parse, render

CANNED_ACLS = {"private": False, "public-read": True}
ANONYMOUS_LIMIT = 1000


def xml_response(tag: str, children, status: int = 200) -> web.Response:
    return web.Response(status=status, body=render(tag, children), content_type=CONTENT_TYPE)


async def list_buckets(request: web.Request) -> web.Response:
    """The buckets the caller may read: also an anonymous caller's, the public ones (as the SAGE API)."""
    operation(request, "ListBuckets")
    user = caller(request)
    async with cursor(request.app[context.DB]) as cur:
        # every public bucket is readable anonymously: such a listing is bounded, as the SAGE API pages it
        rows = await bucket_queries.list_visible(cur, user.user, sorted(user.groups),
                                                 limit=ANONYMOUS_LIMIT if user.anonymous else None)
        names = await s3_names.names_of(cur, [row["id"] for row in rows])
    entries = [("Bucket", [("Name", names.get(row["id"], row["id"])), ("CreationDate", row["time_created"])])
               for row in rows]
    return xml_response("ListAllMyBucketsResult", [("Owner", owner(user.user or "anonymous")), ("Buckets", entries)])


async def create_bucket(request: web.Request, name: str) -> web.Response:
    """A SAGE bucket owned by the caller, addressable by `name` and by its UUID. Canned ACL
    public-read makes it public (GROUP AllUsers READ)."""
    operation(request, "CreateBucket")
    user = caller(request)
    if user.anonymous:
        raise error("AccessDenied", "CreateBucket needs a signed request")
    acl = request.headers.get("x-amz-acl", "private")
    if acl not in CANNED_ACLS:
        raise error("NotImplemented", f"the canned ACL {acl[:40]!r} is not supported (private, public-read are)")
    body = await small_body(request)
    if body.strip():
        parse(body, "CreateBucketConfiguration")  # a LocationConstraint: any region is this server
    pool = request.app[context.DB]
    if is_uuid(name):  # SAGE buckets' own names
        async with cursor(pool) as cur:
            existing = await bucket_queries.get(cur, name)
        if existing is None:
            raise error("InvalidBucketName", "bucket names shaped like a UUID are the SAGE buckets' own")
        raise error("BucketAlreadyOwnedByYou" if existing["owner"] == user.user else "BucketAlreadyExists")
    if not valid_bucket_name(name):
        raise error("InvalidBucketName")
    metrics = request.app[context.METRICS]
    bucket_id = str(uuid.uuid4())
    async with transaction(pool) as cur:  # an error below rolls the bucket back
        await bucket_queries.create(cur, bucket_id, name, "none", user.user, CANNED_ACLS[acl])
        if not await s3_names.insert(cur, name, bucket_id):
            taken_by = await s3_names.bucket_of(cur, name)
            existing = await bucket_queries.get(cur, taken_by) if taken_by else None
            metrics.bucket_creation_errors.labels("exists").inc()
            raise error("BucketAlreadyOwnedByYou" if existing is not None and existing["owner"] == user.user
                        else "BucketAlreadyExists")
    metrics.bucket_creations.inc()
    return web.Response(status=200, headers={"Location": f"/{name}"})


async def head_bucket(request: web.Request, name: str) -> web.Response:
    operation(request, "HeadBucket")
    await allowed(request, name, "READ")
    return web.Response(status=200, headers={"x-amz-bucket-region": request.app[context.SETTINGS].s3_region})


async def location(request: web.Request, name: str) -> web.Response:
    operation(request, "GetBucketLocation")
    await allowed(request, name, "READ")
    return web.Response(body=render("LocationConstraint", []), content_type=CONTENT_TYPE)


async def versioning(request: web.Request, name: str) -> web.Response:
    """Buckets are never versioned: an empty configuration, as S3 answers for such a bucket."""
    operation(request, "GetBucketVersioning")
    await allowed(request, name, "READ")
    return xml_response("VersioningConfiguration", [])


async def bucket_acl(request: web.Request, name: str) -> web.Response:
    """The bucket's owner with FULL_CONTROL (the SAGE grants themselves are managed by the SAGE API)."""
    operation(request, "GetBucketAcl")
    _, bucket = await allowed(request, name, "READ_ACP")
    grant = ("Grant", [("Grantee", owner(bucket["owner"])), ("Permission", "FULL_CONTROL")])
    return xml_response("AccessControlPolicy", [("Owner", owner(bucket["owner"])), ("AccessControlList", [grant])])


async def delete_bucket(request: web.Request, name: str) -> web.Response:
    """An empty bucket only (BucketNotEmpty otherwise); needs FULL_CONTROL, as SAGE's delete does."""
    operation(request, "DeleteBucket")
    pool = request.app[context.DB]
    bucket_id = await bucket_id_of(request, name)
    async with cursor(pool) as cur:  # destructive: decided on fresh data, not the ACL cache (as SAGE's delete)
        with as_s3_refusal():
            bucket, _ = await authorize(cur, bucket_id, caller(request), "FULL_CONTROL")
    if bucket["archived"]:
        raise error("OperationAborted", "the bucket is archived: un-archive it before deleting it")
    store = request.app[context.STORE]
    folder = request.app[context.MAPPING].folder(bucket_id)
    if (await store.list(folder, delimiter=None, max_keys=1)).contents:
        raise error("BucketNotEmpty")
    await request.app[context.ENGINE].abort_bucket(bucket_id)
    async with transaction(pool) as cur:
        if not await bucket_queries.delete(cur, bucket_id):  # grants and S3 name go with it (cascade)
            raise error("NoSuchBucket")
    request.app[context.ACL].invalidate(bucket_id)
    request.app[context.S3_CACHE].forget_name(name)
    # an upload that passed its check before the row went may have landed meanwhile
    await store.delete_prefix(Location(folder.bucket, folder.key))
    return web.Response(status=204)

