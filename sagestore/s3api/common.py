"""What the S3 door's operations share: the caller, bucket names, the permission check, object
keys, user metadata, ETags, request bodies and small parsers."""
from __future__ import annotations

import contextlib
import re
import uuid
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, AsyncIterator, Iterator
from urllib.parse import quote, unquote

from aiohttp import web

from .. import context, gate
from ..auth.identity import ANONYMOUS, Identity
from ..errors import BadRequest, Forbidden, NotFound, Unauthorized
from ..storage import ObjectInfo, validate_key
from . import chunked, sigv4
from .errors import error

SIGNED: web.RequestKey[tuple] = web.RequestKey("s3_signed", tuple)  # (SignedRequest, signing key)
OPERATION: web.RequestKey[str] = web.RequestKey("s3_operation", str)
USER_METADATA_PREFIX = "user-"  # x-amz-meta-<name> is kept as storage metadata user-<name>
ETAG_METADATA = "s3-etag"  # the S3 ETag, where storage's own ETag differs from it
MAX_USER_METADATA = 2048  # bytes of names and values, as S3
MAX_SMALL_BODY = 2 * 2**20  # XML request bodies (DeleteObjects of 1000 long keys fits)
_S3_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def caller(request: web.Request) -> Identity:
    """Whose permissions count: the access key's user, or anonymous."""
    return request.get(context.IDENTITY, ANONYMOUS)


def operation(request: web.Request, name: str) -> None:
    """Name the S3 operation (metrics label, access log)."""
    request[OPERATION] = name


def is_uuid(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False


def valid_bucket_name(name: str) -> bool:
    """S3's bucket naming rules: 3-63 of a-z 0-9 . -, letters or digits at both ends, no '..',
    not an IP address."""
    return bool(_S3_BUCKET_NAME.fullmatch(name)) and ".." not in name and ".-" not in name \
        and "-." not in name and not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name)


async def bucket_id_of(request: web.Request, name: str) -> str:
    """The SAGE bucket a name in an S3 path means: its UUID, or the S3 name CreateBucket gave it.
    NoSuchBucket for names nobody has (existence is checked by the ACL check)."""
    if is_uuid(name):
        return name
    if valid_bucket_name(name):
        found = await request.app[context.S3_CACHE].bucket_id(name)
        if found is not None:
            return found
    raise error("NoSuchBucket")


async def allowed(request: web.Request, name: str, needed: str, *, writing: bool = False) -> tuple[str, dict[str, Any]]:
    """(bucket id, bucket row) when the gate admits the caller for `needed` on the bucket, else the
    S3 answer for the SAGE API's: 404 NoSuchBucket (missing, or invisible to the caller), 403
    AccessDenied (visible but not allowed; anonymous callers where a user is needed)."""
    bucket_id = await bucket_id_of(request, name)
    with as_s3_refusal():
        admission = await gate.admit(request, bucket_id, needed, writing=writing)
    return bucket_id, admission.bucket


@contextlib.contextmanager
def as_s3_refusal() -> Iterator[None]:
    """The SAGE API's refusals of a bucket as S3's: 404 NoSuchBucket, 401 and 403 AccessDenied."""
    try:
        yield
    except NotFound:
        raise error("NoSuchBucket") from None
    except (Forbidden, Unauthorized):
        raise error("AccessDenied") from None


def object_key(request: web.Request) -> str:
    """The key of the path (percent-decoded by aiohttp), checked like every SAGE key."""
    key = request.match_info.get("key", "")
    return checked_key(key)


def checked_key(key: str) -> str:
    if len(key.encode("utf-8", "surrogatepass")) > 1024:
        raise error("KeyTooLongError")
    try:
        return validate_key(key)
    except BadRequest as problem:
        raise error("InvalidArgument", f"this server does not accept the key: {problem.message}") from None


# ---------------------------------------------------------------- metadata and ETags
def user_metadata(request: web.Request) -> dict[str, str]:
    """x-amz-meta-* headers as storage metadata (ASCII; S3's 2 KB bound)."""
    found: dict[str, str] = {}
    size = 0
    for name, value in request.headers.items():
        lower = name.lower()
        if not lower.startswith("x-amz-meta-"):
            continue
        short = lower[len("x-amz-meta-"):]
        if not short or not re.fullmatch(r"[a-z0-9!#$%&'*+.^_`|~-]+", short):
            raise error("InvalidArgument", f"metadata name {short[:40]!r} is not a valid header name")
        if not value.isascii() or any(ord(char) < 0x20 and char != "\t" for char in value):
            raise error("InvalidArgument", "metadata values must be printable ASCII")
        size += len(short) + len(value)
        found[USER_METADATA_PREFIX + short] = found[USER_METADATA_PREFIX + short] + "," + value \
            if USER_METADATA_PREFIX + short in found else value
    if size > MAX_USER_METADATA:
        raise error("MetadataTooLarge")
    return found


# headers an object keeps from its upload and sends back with it (kept as storage metadata s3-h-<name>)
STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")
STORED_HEADER_PREFIX = "s3-h-"


def stored_headers(request: web.Request) -> dict[str, str]:
    """The request's Cache-Control, Content-Disposition ... as storage metadata (printable ASCII);
    Content-Encoding without aws-chunked, which only framed the request."""
    found = {}
    for name in STORED_HEADERS:
        value = request.headers.get(name)
        if value is None:
            continue
        if name == "Content-Encoding":
            value = ",".join(token.strip() for token in value.split(",") if token.strip().lower() != "aws-chunked")
        if value and value.isascii() and all(0x20 <= ord(char) < 0x7F for char in value) and len(value) <= 1024:
            found[STORED_HEADER_PREFIX + name.lower()] = value
    return found


def stored_headers_of(info: ObjectInfo) -> dict[str, str]:
    return {name: (info.metadata or {})[STORED_HEADER_PREFIX + name.lower()] for name in STORED_HEADERS
            if STORED_HEADER_PREFIX + name.lower() in (info.metadata or {})}


def user_metadata_of(info: ObjectInfo) -> dict[str, str]:
    return {name: value for name, value in (info.metadata or {}).items() if name.startswith(USER_METADATA_PREFIX)}


def user_metadata_headers(info: ObjectInfo) -> dict[str, str]:
    return {"x-amz-meta-" + name[len(USER_METADATA_PREFIX):]: value
            for name, value in user_metadata_of(info).items()}


def bare_etag(etag: str) -> str:
    return str(etag).strip().strip('"')


def s3_etag(info: ObjectInfo) -> str:
    """The object's ETag as S3 clients expect it, quoted: the MD5 of a single PUT, md5-of-md5s-N of
    a multipart upload (storage's own when it is that, else the one recorded in the metadata)."""
    recorded = (info.metadata or {}).get(ETAG_METADATA)
    return f'"{recorded}"' if recorded else f'"{bare_etag(info.etag)}"'


def owner_name(info: ObjectInfo) -> str:
    """The SAGE user who uploaded the object (storage metadata `owner`, percent-encoded if not ASCII)."""
    return unquote((info.metadata or {}).get("owner", "")) or "-"


# ---------------------------------------------------------------- request bodies
def _length(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise error("InvalidArgument", f"{name} must be a number of bytes")
    return int(text)


def body_checks(request: web.Request, *, want_md5: bool, sha256_checked_downstream: bool,
                checksums_downstream: dict[str, bytes] | None = None,
                checksums_describe_object: bool = False) -> tuple[AsyncIterator, chunked.BodyChecks]:
    """The object bytes of the request body, decoded and checked as they stream, with the checks.

    Covers every payload mode: a signed payload's sha256 (left to the consumer when it verifies
    it anyway: `sha256_checked_downstream`), UNSIGNED-PAYLOAD, and the aws-chunked modes with chunk
    signatures and x-amz-checksum-* trailers; plus Content-MD5 and x-amz-checksum-* headers."""
    signed = request.get(SIGNED)
    mode = signed[0].payload_hash if signed else sigv4.UNSIGNED_PAYLOAD
    headers = request.headers
    if checksums_describe_object:
        # CompleteMultipartUpload's describe the assembled object, not the XML body (each part's were
        # checked as the part came)
        checksums = {}
    else:
        checksums = {name: chunked.decode_checksum(name, headers[name]) for name in chunked.CHECKSUM_HEADERS
                     if name in headers}
    if len(checksums) > 1:
        raise error("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are "
                                      "not allowed.")
    if checksums_downstream is not None:  # the consumer verifies them (the engine's parts): hashed once
        checksums_downstream.update(checksums)
        checksums = {}
    pieces = raw_body(request)
    trailer_names: tuple[str, ...] = ()
    if mode in sigv4.STREAMING_MODES:
        declared = [name.strip().lower() for name in headers.get("x-amz-trailer", "").split(",") if name.strip()]
        if any(name not in chunked.CHECKSUM_HEADERS for name in declared) or len(declared) > 1:
            raise error("InvalidRequest", "x-amz-trailer may name one x-amz-checksum-* header")
        if mode != sigv4.STREAMING_SIGNED and not declared:
            raise error("InvalidRequest", "a STREAMING-*-TRAILER payload needs x-amz-trailer")
        trailer_names = tuple(declared)
        length = _length(headers.get("x-amz-decoded-content-length"), "x-amz-decoded-content-length")
        signatures = sigv4.ChunkSignatures(signed[1], signed[0]) if mode != sigv4.STREAMING_UNSIGNED_TRAILER \
            else None
        checks = chunked.BodyChecks(length=length, content_md5=headers.get("Content-MD5"), checksums=checksums,
                                    payload_sha256=None, want_md5=want_md5, trailer_names=trailer_names)
        decoded = chunked.aws_chunked(pieces, signatures, trailer_names=trailer_names,
                                      signed_trailer=mode == sigv4.STREAMING_SIGNED_TRAILER,
                                      on_trailers=checks.take_trailers)
        return checks.stream(decoded), checks
    payload_sha256 = None if mode == sigv4.UNSIGNED_PAYLOAD or sha256_checked_downstream else mode
    checks = chunked.BodyChecks(length=request.content_length, content_md5=headers.get("Content-MD5"),
                                checksums=checksums, payload_sha256=payload_sha256, want_md5=want_md5)
    return checks.stream(pieces), checks


def raw_body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it came: through the gate on the object route (the caller was admitted),
    read whole on the bucket route, whose bodies are small XML documents (capped by client_max_size)."""
    if getattr(request.match_info.handler, gate.MARK, None) == gate.STREAM:
        return gate.body(request)
    return _whole(request)


async def _whole(request: web.Request) -> AsyncIterator[bytes]:
    data = await request.read()
    if data:
        yield data


def signed_payload_sha256(request: web.Request) -> str | None:
    """The hex sha256 a signed (non-streaming) payload declares, or None."""
    signed = request.get(SIGNED)
    mode = signed[0].payload_hash if signed else sigv4.UNSIGNED_PAYLOAD
    return mode if len(mode) == 64 and mode not in sigv4.STREAMING_MODES else None


async def small_body(request: web.Request, *, checksums_describe_object: bool = False) -> bytes:
    """A whole XML request body (at most MAX_SMALL_BODY), checked like an object body.
    `checksums_describe_object`: the x-amz-checksum-* headers are the object's (CompleteMultipartUpload's
    full-object checksum), not this body's."""
    if request.content_length is not None and request.content_length > MAX_SMALL_BODY:
        raise error("InvalidRequest", "the request body is too large")
    stream, _ = body_checks(request, want_md5=False, sha256_checked_downstream=False,
                            checksums_describe_object=checksums_describe_object)
    pieces, size = [], 0
    async for piece in stream:
        size += len(piece)
        if size > MAX_SMALL_BODY:
            raise error("InvalidRequest", "the request body is too large")
        pieces.append(bytes(piece))
    return b"".join(pieces)


def url_encoded(text: str | None, encode: bool) -> str | None:
    """encoding-type=url: keys and prefixes percent-encoded in listings."""
    if text is None or not encode:
        return text
    return quote(text, safe="/")


def max_keys(request: web.Request, name: str = "max-keys", default: int = 1000) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.lstrip("-").isdigit()) or len(raw) > 10 or int(raw) < 0:
        raise error("InvalidArgument", f"{name} must be a non-negative integer")
    return min(int(raw), default)


# ---------------------------------------------------------------- headers shared by object and part operations
DEFAULT_CONTENT_TYPE = "binary/octet-stream"  # what S3 gives an object stored without a Content-Type
_MEDIA_TYPE = re.compile(r"^[\x20-\x7e]{1,256}$")


def content_type_of(request: web.Request) -> str:
    value = request.headers.get("Content-Type", "").strip()
    if not value:
        return DEFAULT_CONTENT_TYPE
    if not _MEDIA_TYPE.match(value):
        raise error("InvalidArgument", "Content-Type must be printable ASCII")
    return value


def _http_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(timezone.utc)
    except (TypeError, ValueError, IndexError):
        return None


def _etag_in(header: str, etag: str) -> bool:
    wanted = bare_etag(etag)
    return any(item.strip() == "*" or bare_etag(item.strip().removeprefix("W/")) == wanted
               for item in header.split(","))


def check_conditions(request: web.Request, info: ObjectInfo, headers: dict[str, str], *,
                     prefix: str = "") -> web.Response | None:
    """RFC 7232 as S3 applies it: 412 PreconditionFailed, or a 304 response to send, or None."""
    get = lambda name: request.headers.get(prefix + name)  # noqa: E731
    etag = s3_etag(info)
    modified = info.last_modified.astimezone(timezone.utc).replace(microsecond=0) if info.last_modified else None
    if_match, if_none_match = get("If-Match"), get("If-None-Match")
    if if_match is not None and not _etag_in(if_match, etag):
        raise error("PreconditionFailed")
    if if_match is None:
        since = _http_time(get("If-Unmodified-Since"))
        if since is not None and modified is not None and modified > since:
            raise error("PreconditionFailed")
    not_modified = False
    if if_none_match is not None:
        not_modified = _etag_in(if_none_match, etag)
    else:
        since = _http_time(get("If-Modified-Since"))
        not_modified = since is not None and modified is not None and modified <= since
    if not_modified:
        if prefix:  # a copy's source: S3 answers 412 where a GET would be 304
            raise error("PreconditionFailed")
        return web.Response(status=304, headers={k: v for k, v in headers.items()
                                                 if k in ("ETag", "Last-Modified")})
    return None


def copy_source(request: web.Request, header: str = "x-amz-copy-source") -> tuple[str, str]:
    """(bucket name, key) of x-amz-copy-source: '[/]bucket/key[?versionId=null]', URL-encoded."""
    value = request.headers[header].strip()
    path, _, query = value.partition("?")
    if query and query not in ("versionId=null",):
        raise error("NotImplemented", "copying a version other than null is not supported")
    path = unquote(path).lstrip("/")
    bucket, sep, key = path.partition("/")
    if not sep or not bucket or not key:
        raise error("InvalidArgument", "x-amz-copy-source must be bucket/key")
    return bucket, checked_key(key)
