"""Listings of the S3 door: ListObjectsV2, ListObjects (V1) and ListObjectVersions (an unversioned
bucket: every object as its `null` version), over storage's listing of the bucket's prefix.

Continuation tokens wrap storage's own with the listing they belong to, so a client never sees
the storage layout and a token from another listing is refused. An object's Owner is its
uploader's SAGE user, from its metadata: one HEAD per object, made only when a listing shows
owners (V1, versions, V2 with fetch-owner=true), a few at a time, cached per instance by ETag.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections import OrderedDict
from typing import Any

from aiohttp import web

from .. import context
from ..storage import Location, StorageError
from .common import allowed, max_keys, operation, owner_name, s3_etag, url_encoded
from .errors import error
from .xml import CONTENT_TYPE, owner, render

OWNER_LOOKUPS = 16  # HEADs in flight for one listing page
OWNERS_KEPT = 100_000
# after every key that starts with a prefix: above any UTF-8 character a key may hold
PAST_PREFIX = "\U0010ffff"


class OwnerCache:
    """(storage key, ETag) -> uploader: an object rewritten gets a new entry."""

    def __init__(self) -> None:
        self.entries: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    async def owners(self, store, bucket: str, items) -> list[str]:
        semaphore = asyncio.Semaphore(OWNER_LOOKUPS)

        async def one(item) -> str:
            cache_key = (bucket, item.key, item.etag)
            found = self.entries.get(cache_key)
            if found is not None:
                return found
            async with semaphore:
                try:
                    info = await store.head(Location(bucket, item.key))
                except StorageError:
                    return "-"
            name = owner_name(info) if info is not None else "-"
            self.entries[cache_key] = name
            if len(self.entries) > OWNERS_KEPT:
                self.entries.popitem(last=False)
            return name
        return await asyncio.gather(*(one(item) for item in items))


OWNERS: web.AppKey[OwnerCache] = web.AppKey("s3_owners", OwnerCache)


def owner_cache(app: web.Application) -> OwnerCache:
    if OWNERS not in app:
        app[OWNERS] = OwnerCache()
    return app[OWNERS]


def _token(scope: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(scope, separators=(",", ":")).encode()).decode().rstrip("=")


def _untoken(token: str, bucket_id: str, prefix: str, delimiter: str | None) -> str:
    try:
        scope = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        backend = scope["t"]
        same = (scope["b"], scope["p"], scope["d"]) == (bucket_id, prefix, delimiter)
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise error("InvalidArgument", "The continuation token provided is incorrect") from None
    if not same or not isinstance(backend, str):
        raise error("InvalidArgument", "The continuation token belongs to another listing")
    return backend


def _start_after(prefix: str, delimiter: str | None, marker: str | None) -> str | None:
    """Where a listing resumes after `marker`; past the whole group when the marker is a common prefix
    (a page that ended on CommonPrefix 'dir/' must not show it again)."""
    if not marker:
        return None
    if delimiter and marker.startswith(prefix):
        rest = marker[len(prefix):]
        index = rest.find(delimiter)
        if index >= 0 and rest.endswith(delimiter) and index + len(delimiter) == len(rest):
            return marker + PAST_PREFIX
    return marker


class Query:
    """The listing parameters all three listings share."""

    def __init__(self, request: web.Request, marker_name: str | None) -> None:
        query = request.query
        self.prefix = query.get("prefix", "")
        self.delimiter = query.get("delimiter") or None
        self.encoding = query.get("encoding-type")
        if self.encoding not in (None, "url"):
            raise error("InvalidArgument", "Invalid Encoding Method specified in Request")
        self.max_keys = max_keys(request)
        self.marker = query.get(marker_name) if marker_name else None
        for value in (self.prefix, self.delimiter or "", self.marker or ""):
            if "\x00" in value or len(value.encode("utf-8", "surrogatepass")) > 1024:
                raise error("InvalidArgument", "prefix, delimiter and marker must be at most 1024 bytes, no NUL")

    def encode(self, text: str | None) -> str | None:
        return url_encoded(text, self.encoding == "url")


async def _page(request: web.Request, bucket_id: str, q: Query, *, token: str | None, start_after: str | None):
    store = request.app[context.STORE]
    folder = request.app[context.MAPPING].folder(bucket_id)
    base = folder.key  # "<uuid>/"
    try:
        page = await store.list(Location(folder.bucket, base + q.prefix), delimiter=q.delimiter,
                                max_keys=q.max_keys, continuation_token=token,
                                start_after=base + start_after if start_after else None)
    except StorageError as problem:
        if problem.code in ("InvalidArgument", "InvalidToken", "InvalidContinuationToken"):
            raise error("InvalidArgument", "The continuation token is no longer valid") from None
        raise
    entries = [item.key for item in page.contents] + list(page.common_prefixes)
    last = max(entries)[len(base):] if entries else None  # where the next page starts, phantoms included
    # a folder as a key ('dir/'): storage's, never an object (SAGE keys have no empty segment)
    page.contents = [item for item in page.contents if not item.key.endswith("/")]
    await drop_empty_prefixes(store, folder.bucket, page)
    return page, base, folder.bucket, last


async def _contents(request: web.Request, q: Query, page, base: str, s3_bucket: str, *, with_owner: bool,
                    version: bool = False) -> list:
    owners = await owner_cache(request.app).owners(request.app[context.STORE], s3_bucket, page.contents) \
        if with_owner and page.contents else [None] * len(page.contents)
    tag = "Version" if version else "Contents"
    entries = []
    for item, name in zip(page.contents, owners):
        fields = [("Key", q.encode(item.key[len(base):]))]
        if version:
            fields += [("VersionId", "null"), ("IsLatest", True)]
        fields += [("LastModified", item.last_modified), ("ETag", s3_etag(item)), ("Size", item.size)]
        if name is not None:
            fields.append(("Owner", owner(name)))
        fields.append(("StorageClass", "STANDARD"))
        entries.append((tag, fields))
    return entries


async def drop_empty_prefixes(store, s3_bucket: str, page) -> None:
    """Storage (SeaweedFS, a file system underneath) keeps a folder its last object was deleted from
    and lists it as a common prefix; S3 has no such thing. Each prefix is kept only if a key is under
    it (one small listing each, a few at a time)."""
    if not page.common_prefixes:
        return
    semaphore = asyncio.Semaphore(OWNER_LOOKUPS)

    async def has_keys(prefix: str) -> bool:
        async with semaphore:
            return bool((await store.list(Location(s3_bucket, prefix), delimiter=None, max_keys=1)).contents)
    kept = await asyncio.gather(*(has_keys(prefix) for prefix in page.common_prefixes))
    page.common_prefixes = [prefix for prefix, keep in zip(page.common_prefixes, kept) if keep]


def _prefixes(q: Query, page, base: str) -> list:
    return [("CommonPrefixes", [("Prefix", q.encode(prefix[len(base):]))]) for prefix in page.common_prefixes]


def xml(tag: str, children) -> web.Response:
    return web.Response(body=render(tag, children), content_type=CONTENT_TYPE)


async def list_v2(request: web.Request, name: str) -> web.Response:
    operation(request, "ListObjectsV2")
    bucket_id, _ = await allowed(request, name, "READ")
    q = Query(request, None)
    token = request.query.get("continuation-token")
    start_after = request.query.get("start-after") or None
    fetch_owner = request.query.get("fetch-owner", "false").lower() == "true"
    backend_token = _untoken(token, bucket_id, q.prefix, q.delimiter) if token else None
    if q.max_keys == 0:
        page = None
    else:
        page, base, s3_bucket, last = await _page(request, bucket_id, q, token=backend_token,
                                            start_after=None if token else _start_after(q.prefix, q.delimiter,
                                                                                       start_after))
    children = [("Name", name), ("Prefix", q.encode(q.prefix)), ("Delimiter", q.encode(q.delimiter)),
                ("MaxKeys", q.max_keys), ("EncodingType", q.encoding)]
    if page is None:
        children += [("KeyCount", 0), ("IsTruncated", False), ("ContinuationToken", token),
                     ("StartAfter", q.encode(start_after))]
        return xml("ListBucketResult", children)
    next_token = _token({"t": page.next_token, "b": bucket_id, "p": q.prefix, "d": q.delimiter}) \
        if page.is_truncated and page.next_token else None
    contents = await _contents(request, q, page, base, s3_bucket, with_owner=fetch_owner)
    children += [("KeyCount", len(page.contents) + len(page.common_prefixes)), ("IsTruncated", page.is_truncated),
                 ("ContinuationToken", token), ("NextContinuationToken", next_token),
                 ("StartAfter", q.encode(start_after))]
    return xml("ListBucketResult", children + contents + _prefixes(q, page, base))


async def list_v1(request: web.Request, name: str) -> web.Response:
    operation(request, "ListObjects")
    bucket_id, _ = await allowed(request, name, "READ")
    q = Query(request, "marker")
    # V1 encodes keys, prefixes, the delimiter and markers, not the Prefix asked for (as S3: botocore decodes those)
    children = [("Name", name), ("Prefix", q.prefix), ("Marker", q.encode(q.marker or "")),
                ("MaxKeys", q.max_keys), ("Delimiter", q.encode(q.delimiter)), ("EncodingType", q.encoding)]
    if q.max_keys == 0:
        return xml("ListBucketResult", children + [("IsTruncated", False)])
    page, base, s3_bucket, last = await _page(request, bucket_id, q, token=None,
                                        start_after=_start_after(q.prefix, q.delimiter, q.marker))
    contents = await _contents(request, q, page, base, s3_bucket, with_owner=True)
    children.append(("IsTruncated", page.is_truncated))
    if page.is_truncated:
        children.append(("NextMarker", q.encode(last)))
    return xml("ListBucketResult", children + contents + _prefixes(q, page, base))


async def list_versions(request: web.Request, name: str) -> web.Response:
    operation(request, "ListObjectVersions")
    bucket_id, _ = await allowed(request, name, "READ")
    q = Query(request, "key-marker")
    version_marker = request.query.get("version-id-marker")
    children = [("Name", name), ("Prefix", q.encode(q.prefix)), ("KeyMarker", q.encode(q.marker or "")),
                ("VersionIdMarker", version_marker or ""), ("MaxKeys", q.max_keys),
                ("Delimiter", q.encode(q.delimiter)), ("EncodingType", q.encoding)]
    if q.max_keys == 0:
        return xml("ListVersionsResult", children + [("IsTruncated", False)])
    page, base, s3_bucket, last = await _page(request, bucket_id, q, token=None,
                                        start_after=_start_after(q.prefix, q.delimiter, q.marker))
    versions = await _contents(request, q, page, base, s3_bucket, with_owner=True, version=True)
    children.append(("IsTruncated", page.is_truncated))
    if page.is_truncated:
        children += [("NextKeyMarker", q.encode(last)), ("NextVersionIdMarker", "null")]
    return xml("ListVersionsResult", children + versions + _prefixes(q, page, base))

