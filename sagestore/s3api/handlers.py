"""Routing of the S3 door: the method and the sub-resource in the query string name the operation,
as in S3. Path-style (/<bucket>/<key>) always; virtual-hosted-style (Host <bucket>.<s3_domain>,
path /<key>) when s3_domain is set: the same operations behind a second route table, which the app
mounts for that domain."""
from __future__ import annotations

from aiohttp import web

from .. import context, gate

from . import buckets, listing, multipart, objects
from .common import operation
from .errors import error

routes = gate.Routes()
hosted_routes = gate.Routes()  # virtual-hosted-style: the bucket is in the Host header

# sub-resources S3 has and this door does not implement: 501 NotImplemented, never a wrong answer
UNSUPPORTED = ("policy", "cors", "lifecycle", "tagging", "website", "logging", "notification", "replication",
               "encryption", "object-lock", "ownershipControls", "publicAccessBlock", "accelerate",
               "requestPayment", "analytics", "metrics", "inventory", "intelligent-tiering", "retention",
               "legal-hold", "torrent", "restore", "select", "attributes", "policyStatus", "versionId")


def unsupported(request: web.Request) -> None:
    for name in UNSUPPORTED:
        if name in request.query:
            operation(request, "NotImplemented")
            raise error("NotImplemented", f"the {name} sub-resource is not supported by this server")


def not_allowed(request: web.Request) -> web.Response:
    operation(request, "MethodNotAllowed")
    raise error("MethodNotAllowed")


@routes.route("*", "/", body=gate.SMALL)
async def service(request: web.Request) -> web.StreamResponse:
    if request.method == "GET":
        return await buckets.list_buckets(request)
    return not_allowed(request)


def hosted_bucket(request: web.Request) -> str | None:
    """The bucket of a virtual-hosted-style request, the Host's name before `.<s3_domain>`; None for
    a path-style one (no s3_domain, or a Host outside it)."""
    domain = request.app[context.SETTINGS].s3_domain.lower()
    host = request.host.partition(":")[0].lower()
    if not domain or not host.endswith("." + domain) or len(host) == len(domain) + 1:
        return None
    return host[:-len(domain) - 1]


@routes.route("*", "/{bucket}", body=gate.SMALL)  # small XML bodies: CreateBucket, DeleteObjects
@routes.route("*", "/{bucket}/", body=gate.SMALL)
async def bucket(request: web.Request) -> web.StreamResponse:
    return await bucket_operation(request, request.match_info["bucket"])


@hosted_routes.route("*", "/", body=gate.SMALL)
async def hosted_bucket_operation(request: web.Request) -> web.StreamResponse:
    return await bucket_operation(request, hosted_bucket(request) or "")


async def bucket_operation(request: web.Request, name: str) -> web.StreamResponse:
    query, method = request.query, request.method
    unsupported(request)
    plain = not (set(query) - {"x-id"})  # botocore names some operations in x-id
    if method == "GET":
        if "location" in query:
            return await buckets.location(request, name)
        if "versioning" in query:
            return await buckets.versioning(request, name)
        if "acl" in query:
            return await buckets.bucket_acl(request, name)
        if "versions" in query:
            return await listing.list_versions(request, name)
        if "uploads" in query:
            return await multipart.list_uploads(request, name)
        if query.get("list-type") == "2":
            return await listing.list_v2(request, name)
        return await listing.list_v1(request, name)
    if method == "HEAD":
        return await buckets.head_bucket(request, name)
    if method == "PUT" and plain:
        return await buckets.create_bucket(request, name)
    if method == "DELETE" and plain:
        return await buckets.delete_bucket(request, name)
    if method == "POST" and "delete" in query:
        return await objects.delete_objects(request, name)
    if method in ("PUT", "DELETE") and ("acl" in query or "versioning" in query):
        operation(request, "NotImplemented")
        raise error("NotImplemented", "bucket ACLs and versioning are managed through the SAGE API")
    return not_allowed(request)


@routes.route("*", "/{bucket}/{key:.+}", body=gate.STREAM)  # objects and parts stream through the gate
async def object_(request: web.Request) -> web.StreamResponse:
    return await object_operation(request, request.match_info["bucket"])


@hosted_routes.route("*", "/{key:.+}", body=gate.STREAM)
async def hosted_object_operation(request: web.Request) -> web.StreamResponse:
    return await object_operation(request, hosted_bucket(request) or "")


async def object_operation(request: web.Request, name: str) -> web.StreamResponse:
    query, method = request.query, request.method
    unsupported(request)
    copying = "x-amz-copy-source" in request.headers
    if method == "GET":
        if "uploadId" in query:
            return await multipart.list_parts(request, name)
        if "acl" in query:
            return await objects.object_acl(request, name)
        return await objects.get_object(request, name)
    if method == "HEAD":
        return await objects.head_object(request, name)
    if method == "PUT":
        if "acl" in query:
            operation(request, "NotImplemented")
            raise error("NotImplemented", "object ACLs follow their bucket's SAGE grants")
        if "uploadId" in query or "partNumber" in query:
            if copying:
                return await multipart.upload_part_copy(request, name)
            return await multipart.upload_part(request, name)
        if copying:
            return await objects.copy_object(request, name)
        return await objects.put_object(request, name)
    if method == "DELETE":
        if "uploadId" in query:
            return await multipart.abort(request, name)
        return await objects.delete_object(request, name)
    if method == "POST":
        if "uploads" in query:
            return await multipart.create(request, name)
        if "uploadId" in query:
            return await multipart.complete(request, name)
    return not_allowed(request)
