"""The OSDU File service (seed 003) under /api/file/v2/: an adapter over buckets, signed URLs and storage.

Each data partition (SAGESTORE_OSDU_PARTITIONS) is one SAGE bucket owned by the service user
`osdu-file-service`, created at start-up; an OSDU file is the object `<FileID>` in it, so it is also
readable through /api/v1/objects by whoever the bucket's ACL allows. Roles come from the caller's
groups: service.file.viewers < editors < admin, bare (every partition) or `<role>@<partition>[.<domain>]`.
Checks follow the seed: no or bad token 401; Data-Partition-Id missing, unknown or without a file role
400; a role too low 403. Errors are the usual `{"error"}` plus OSDU's `code` and `message`.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Awaitable, Callable

import psycopg2
from aiohttp import web

from .. import context
from ..auth.signing import MAX_EXPIRY
from ..db import buckets as bucket_queries
from ..db import cursor, transaction
from ..db import signed_urls as url_queries
from ..errors import ApiError, BadRequest, Forbidden, NotFound, Unauthorized
from ..openapi import documented
from ..storage import validate_key
from .common import identity
from .schemas import error, json_content
from .signed import issue

routes = web.RouteTableDef()
BASE = "/api/file/v2"
SERVICE_USER = "osdu-file-service"
DRIVER = "S3"
ROLES = {"service.file.viewers": 1, "service.file.editors": 2, "service.file.admin": 3}
VIEWER, EDITOR, ADMIN = 1, 2, 3
FILE_ID = re.compile(r"[\w,\s-]+(\.\w+)?", re.ASCII)
EXPIRY = re.compile(r"([0-9]{1,9})([MHD])")
DEFAULT_EXPIRY = 3600
MAX_ITEMS = 32767
MAX_PAGE = 2**31 - 1
KIND = "dataset--File.Generic"
# a stable bucket id per partition: every instance creates (or finds) the same one
PARTITION_NAMESPACE = uuid.UUID("5a6e5703-0000-4000-8000-05d0f11e5e00")


def fail(kind: type[ApiError], message: str, **extra: Any) -> ApiError:
    """A typed error whose body also carries OSDU's code and message fields."""
    problem = kind(message, **extra)
    problem.extra.update(code=problem.status, message=message)
    return problem


def partition_bucket_id(partition: str) -> str:
    return str(uuid.uuid5(PARTITION_NAMESPACE, partition))


async def partitions_ctx(app: web.Application) -> AsyncIterator[None]:
    """Create each partition's bucket if it is missing (concurrent instances are safe)."""
    buckets: dict[str, str] = {}
    for partition in app[context.SETTINGS].osdu_partitions:
        bucket_id = partition_bucket_id(partition)
        async with cursor(app[context.DB]) as cur:
            exists = await bucket_queries.get(cur, bucket_id)
        if exists is None:
            try:
                async with transaction(app[context.DB]) as cur:
                    await bucket_queries.create(cur, bucket_id, f"osdu-{partition}", "none", SERVICE_USER, False)
            except psycopg2.errors.UniqueViolation:
                pass  # another instance created it first
        buckets[partition] = bucket_id
    app[context.OSDU_BUCKETS] = buckets
    yield


def role_level(groups: frozenset[str], partition: str) -> int:
    best = 0
    for group in groups:
        name, at, scope = group.partition("@")
        level = ROLES.get(name.lower())
        if level and (not at or scope == partition or scope.startswith(partition + ".")):
            best = max(best, level)
    return best


def caller_in_partition(request: web.Request, needed: int) -> tuple[str, str, str]:
    """(user, partition, bucket id) after the seed's checks, in its order."""
    caller = identity(request)
    if caller.anonymous:
        raise fail(Unauthorized, "Missing authorization token")
    partition = request.headers.get("Data-Partition-Id", "").strip()
    if not partition:
        raise fail(BadRequest, "Missing Data-Partition-Id header")
    buckets = request.app[context.OSDU_BUCKETS]
    if partition not in buckets:
        raise fail(BadRequest, f"Unknown data partition {partition[:80]!r}")
    level = role_level(caller.groups, partition)
    if not level:
        raise fail(BadRequest, f"The caller has no service.file role in data partition {partition!r}")
    if level < needed:
        role = next(name for name, value in ROLES.items() if value == needed)
        raise fail(Forbidden, f"This operation needs the {role} role in data partition {partition!r}")
    return caller.user, partition, buckets[partition]


async def body_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise fail(BadRequest, "Invalid Json Input: the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise fail(BadRequest, "Invalid Json Input: the body must be a JSON object")
    return body


def expiry_seconds(request: web.Request) -> int:
    raw = request.query.get("expiryTime")
    if raw is None:
        return DEFAULT_EXPIRY
    match = EXPIRY.fullmatch(raw)
    if not match or int(match.group(1)) == 0:
        raise fail(BadRequest, "expiryTime pattern isn't supported. Value should be one of these regex patterns "
                               "^[0-9]+M$ , ^[0-9]+H$ , ^[0-9]+D$ (and more than 0)")
    seconds = int(match.group(1)) * {"M": 60, "H": 3600, "D": 86400}[match.group(2)]
    return min(seconds, MAX_EXPIRY)


def checked_file_id(value: Any) -> str:
    if not isinstance(value, str):
        raise fail(BadRequest, "FileID: must be a string")
    if not value.strip():
        raise fail(BadRequest, "FileID: must not be blank")
    if not FILE_ID.fullmatch(value):
        raise fail(BadRequest, "FileID: Invalid FileID (it must match ^[\\w,\\s-]+(\\.\\w+)?$)")
    try:
        validate_key(value)
    except BadRequest as problem:
        raise fail(BadRequest, f"FileID: {problem.message}") from None
    return value


def location_of(request: web.Request, bucket_id: str, file_id: str) -> str:
    where = request.app[context.MAPPING].object(bucket_id, file_id)
    return f"s3://{where.bucket}/{where.key}"


async def create_location(request: web.Request, file_id: str | None) -> web.Response:
    user, partition, bucket_id = caller_in_partition(request, EDITOR)
    expires_in = expiry_seconds(request)
    file_id = str(uuid.uuid4()) if file_id is None else file_id
    location = location_of(request, bucket_id, file_id)
    async with transaction(request.app[context.DB]) as cur:
        await cur.execute("""INSERT INTO osdu_files (partition_id, file_id, bucket_id, key, driver, location, created_by)
                             VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                          (partition, file_id, bucket_id, file_id, DRIVER, location, user))
        if cur.rowcount != 1:
            raise fail(BadRequest, f"Location for fileID {file_id} already exists")
        _, url = await issue(request, cur, method="PUT", bucket_id=bucket_id, key=file_id, expires_in=expires_in,
                             purpose="osdu", created_by=user, file_id=file_id, partition_id=partition)
    return web.json_response({"FileID": file_id, "Location": {"SignedURL": url, "FileSource": location}})


# ---------------------------------------------------------------- OpenAPI
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OSDU_ERROR = error("OSDU error: {error, code, message}")
HEADERS = [{"name": "Data-Partition-Id", "in": "header", "required": True, "schema": {"type": "string"},
            "description": "an OSDU data partition (SAGESTORE_OSDU_PARTITIONS)"}]
EXPIRY_PARAM = {"name": "expiryTime", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]+[MHD]$"},
                "description": "URL lifetime: <n>M, <n>H or <n>D; default 1H, at most 7D"}
STATUSES = {"400": error("Bad input, or Data-Partition-Id missing, unknown or without a file role for the caller"),
            "401": error("Authorization missing or invalid"), "403": error("The caller's file role is too low")}
LOCATION = {"type": "object", "properties": {"FileID": {"type": "string"}, "Location": {
    "type": "object", "properties": {"SignedURL": {"type": "string"}, "FileSource": {"type": "string"}}}}}
FILE_ID_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"FileID": {"type": "string", "pattern": "^[\\w,\\s-]+(\\.\\w+)?$"}}}}}}
ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "the metadata record id (<partition>:dataset--File.Generic:<uuid>), or a FileID"}


def osdu_op(summary: str, responses: dict[str, Any], **extra: Any) -> Callable[[Handler], Handler]:
    """@documented with what every File service operation shares: its header, statuses and tag."""
    return documented(summary, {**responses, **STATUSES},
                      parameters=HEADERS + extra.pop("parameters", []), tags=["OSDU File service"], **extra)


@routes.post(BASE + "/getLocation")
@osdu_op(
    "A new file location and a signed PUT URL for it (service.file.editors)",
    {"200": json_content("FileID and signed URL", LOCATION)}, parameters=[EXPIRY_PARAM],
    requestBody=FILE_ID_BODY)
async def get_location(request: web.Request) -> web.Response:
    caller_in_partition(request, EDITOR)
    body = await body_object(request)
    file_id = body.get("FileID")
    return await create_location(request, None if file_id is None else checked_file_id(file_id))


@routes.get(BASE + "/files/uploadURL")
@osdu_op(
    "getLocation with a generated FileID (service.file.editors)",
    {"200": json_content("FileID and signed URL", LOCATION)}, parameters=[EXPIRY_PARAM])
async def upload_url(request: web.Request) -> web.Response:
    return await create_location(request, None)


async def file_record(request: web.Request, partition: str, file_id: str) -> dict[str, Any] | None:
    async with cursor(request.app[context.DB]) as cur:
        await cur.execute("SELECT * FROM osdu_files WHERE partition_id = %s AND file_id = %s", (partition, file_id))
        return await cur.fetchone()


@routes.post(BASE + "/getFileLocation")
@osdu_op(
    "Driver and Location of a file (service.file.editors); an unknown FileID is 400",
    {"200": json_content("Where the file is", {"type": "object", "properties": {
        "Driver": {"type": "string", "enum": [DRIVER]}, "Location": {"type": "string"}}})},
    requestBody=FILE_ID_BODY)
async def get_file_location(request: web.Request) -> web.Response:
    _, partition, _ = caller_in_partition(request, EDITOR)
    body = await body_object(request)
    if body.get("FileID") is None:
        raise fail(BadRequest, "FileID: must not be blank")
    file_id = checked_file_id(body["FileID"])
    record = await file_record(request, partition, file_id)
    if record is None:
        raise fail(BadRequest, f"Not found location for fileID : {file_id}")
    return web.json_response({"Driver": record["driver"], "Location": record["location"]})


def parse_time(body: dict[str, Any], name: str) -> datetime:
    value = body.get(name)
    if value is None:
        raise fail(BadRequest, f"{name}: must not be null")
    if not isinstance(value, str) or not value.strip():
        raise fail(BadRequest, f"{name}: must be a date-time string such as 2020-01-01T16:21:00.552Z")
    text = value[:-1] if value.endswith("Z") else value
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?", text):
        raise fail(BadRequest, f"{name}: {value[:40]!r} is not an ISO date-time (UTC, e.g. 2020-01-01T16:21:00.552Z)")
    try:
        parsed = datetime.fromisoformat(text[:26] if "." in text else text)
    except ValueError:
        raise fail(BadRequest, f"{name}: {value[:40]!r} is not a valid date-time") from None
    return parsed.replace(tzinfo=timezone.utc)


def parse_int(body: dict[str, Any], name: str, default: int | None, minimum: int, maximum: int) -> int:
    value = body.get(name, default)
    if value is None:
        raise fail(BadRequest, f"{name}: must not be null")
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(BadRequest, f"{name}: must be an integer")
    if not minimum <= value <= maximum:
        raise fail(BadRequest, f"{name}: must be between {minimum} and {maximum}")
    return value


def osdu_time(value: datetime) -> str:
    """yyyy-MM-dd'T'HH:mm:ss.SSSZ in UTC, as the seed's example shows."""
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


@routes.post(BASE + "/getFileList")
@osdu_op(
    "Files created in [TimeFrom, TimeTo], by CreatedAt, paged (service.file.editors)",
    {"200": json_content("One page", {"type": "object", "properties": {
        "Content": {"type": "array", "items": {"type": "object", "properties": {
            name: {"type": kind} for name, kind in (
                ("FileID", "string"), ("Driver", "string"), ("Location", "string"), ("CreatedAt", "string"),
                ("CreatedBy", "string"), ("Uploaded", "boolean"), ("Size", "integer"), ("Sha256", "string"))}}},
        "Number": {"type": "integer"}, "NumberOfElements": {"type": "integer"}, "Size": {"type": "integer"}}})},
    requestBody={"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["TimeFrom", "TimeTo", "Items"], "properties": {
            "TimeFrom": {"type": "string"}, "TimeTo": {"type": "string"},
            "PageNum": {"type": "integer", "minimum": 0}, "Items": {"type": "integer", "minimum": 1},
            "UserID": {"type": "string"}}}}}})
async def get_file_list(request: web.Request) -> web.Response:
    _, partition, _ = caller_in_partition(request, EDITOR)
    body = await body_object(request)
    time_from, time_to = parse_time(body, "TimeFrom"), parse_time(body, "TimeTo")
    if time_from >= time_to:
        raise fail(BadRequest, "TimeFrom: should be before TimeTo")
    page = parse_int(body, "PageNum", 0, 0, MAX_PAGE)
    items = parse_int(body, "Items", None, 1, MAX_ITEMS)
    user = body.get("UserID")
    if user is not None and (not isinstance(user, str) or not user.strip()):
        raise fail(BadRequest, "UserID: must be a non-blank string")
    async with cursor(request.app[context.DB]) as cur:
        await cur.execute(
            """SELECT * FROM osdu_files WHERE partition_id = %s AND created_at >= %s AND created_at <= %s
                 AND (%s::text IS NULL OR created_by = %s) ORDER BY created_at, file_id LIMIT %s OFFSET %s""",
            (partition, time_from, time_to, user, user, items, page * items))
        rows = await cur.fetchall()
    content = []
    for row in rows:
        record = {"FileID": row["file_id"], "Driver": row["driver"], "Location": row["location"],
                  "CreatedAt": osdu_time(row["created_at"]), "CreatedBy": row["created_by"],
                  "Uploaded": row["uploaded_at"] is not None}
        if row["uploaded_at"] is not None:
            record.update(Size=row["size"], Sha256=row["sha256"])
        content.append(record)
    return web.json_response({"Content": content, "Number": page, "NumberOfElements": len(content), "Size": items})


@routes.post(BASE + "/files/revokeURL")
@osdu_op(
    "Revoke signed URLs of this partition: every URL of a FileID, every URL issued to CreatedBy, or one "
    "SignedURL (service.file.admin)", {"204": {"description": "Revoked (on every instance)"}},
    requestBody={"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": {name: {"type": "string"} for name in ("FileID", "CreatedBy", "SignedURL")},
        "additionalProperties": False}}}})
async def revoke_url(request: web.Request) -> web.Response:
    _, partition, bucket_id = caller_in_partition(request, ADMIN)
    body = await body_object(request)
    allowed = ("FileID", "CreatedBy", "SignedURL")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise fail(BadRequest, f"Unknown property {unknown[0]!r}: revokeURL takes FileID, CreatedBy or SignedURL")
    if not body:
        raise fail(BadRequest, "The body names nothing to revoke: send FileID, CreatedBy or SignedURL")
    for name, value in body.items():
        if not isinstance(value, str) or not value.strip():
            raise fail(BadRequest, f"{name}: must be a non-blank string")
    url_id = None
    if "SignedURL" in body:
        url_id = signed_url_id(request, body["SignedURL"], bucket_id)
    async with transaction(request.app[context.DB]) as cur:
        revoked = await url_queries.revoke(cur, url_id=url_id, created_by=body.get("CreatedBy"),
                                           file_id=body.get("FileID"), partition_id=partition)
    cache = request.app[context.SIGNED_URLS]
    for revoked_id in revoked:
        cache.invalidate(revoked_id)
    return web.Response(status=204)


def signed_url_id(request: web.Request, url: str, bucket_id: str) -> str:
    """The id of a URL this server signed for the partition's bucket (its signature checked)."""
    from urllib.parse import parse_qs, unquote, urlsplit
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    prefix = f"/api/v1/signed/{bucket_id}/"
    path = unquote(parts.path)
    if not path.startswith(prefix):
        raise fail(BadRequest, "SignedURL: not a signed URL of this data partition")
    try:
        target = request.app[context.SIGNER].verify(query.get("method", ""), bucket_id, path[len(prefix):], query)
    except ApiError as problem:
        if "expired" in problem.message:  # revoking an expired URL changes nothing, and is no error
            try:
                return str(uuid.UUID(query.get("id", "")))
            except ValueError:
                pass
        raise fail(BadRequest, f"SignedURL: {problem.message}") from None
    return target.url_id


async def metadata_row(request: web.Request, partition: str, record_id: str) -> dict[str, Any] | None:
    """A file by its metadata record id (or, for convenience, its FileID)."""
    async with cursor(request.app[context.DB]) as cur:
        await cur.execute("""SELECT * FROM osdu_files WHERE partition_id = %s AND (metadata_id = %s OR file_id = %s)
                             ORDER BY metadata_id = %s DESC LIMIT 1""", (partition, record_id, record_id, record_id))
        return await cur.fetchone()


@routes.get(BASE + "/files/{id}/downloadURL")
@osdu_op(
    "A signed GET URL for an uploaded file (service.file.viewers)",
    {"200": json_content("The URL", {"type": "object", "properties": {"SignedUrl": {"type": "string"}}}),
     "404": OSDU_ERROR}, parameters=[ID_PARAM, EXPIRY_PARAM])
async def download_url(request: web.Request) -> web.Response:
    user, partition, bucket_id = caller_in_partition(request, VIEWER)
    expires_in = expiry_seconds(request)
    row = await metadata_row(request, partition, request.match_info["id"])
    if row is None or row["uploaded_at"] is None:
        raise fail(NotFound, "File id not found.", reason="Not Found.")
    async with transaction(request.app[context.DB]) as cur:
        _, url = await issue(request, cur, method="GET", bucket_id=bucket_id, key=row["key"], expires_in=expires_in,
                             purpose="osdu", created_by=user, file_id=row["file_id"], partition_id=partition)
    return web.json_response({"SignedUrl": url})


def validation_error(message: str) -> ApiError:
    return fail(BadRequest, message, errors=[{"domain": "global", "reason": "badRequest", "message": message}])


def checked_metadata(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The record and its FileSource, validated as the community service does."""
    kind = body.get("kind")
    if kind is None:
        raise validation_error("kind must not be null")
    if not isinstance(kind, str) or len(kind.split(":")) != 4:
        raise validation_error("Invalid kind")
    if kind.split(":")[1].lower() != "wks":
        raise validation_error("Invalid source in kind")
    if kind.split(":")[2].lower() != KIND.lower():
        raise validation_error("Invalid entity in kind")
    acl = body.get("acl")
    if acl is None:
        raise validation_error("acl must not be null")
    if not isinstance(acl, dict):
        raise validation_error("acl must be an object")
    for field in ("viewers", "owners"):
        if not isinstance(acl.get(field), list) or not acl[field] or \
                not all(isinstance(item, str) for item in acl[field]):
            raise validation_error(f"Record acl.{field} cannot be empty")
    legal = body.get("legal")
    if not isinstance(legal, dict) or not isinstance(legal.get("legaltags"), list) or not legal["legaltags"]:
        raise validation_error("legal tag cannot be empty")
    data = body.get("data")
    if not isinstance(data, dict) or not data:
        raise validation_error("data cannot be empty")
    properties = data.get("DatasetProperties")
    info = properties.get("FileSourceInfo") if isinstance(properties, dict) else None
    source = info.get("FileSource") if isinstance(info, dict) else None
    if not isinstance(source, str) or not source.strip():
        raise validation_error("FileSource can not be empty")
    if "Endian" in data and data["Endian"] not in ("BIG", "LITTLE"):
        raise validation_error(f"Invalid value of {str(data['Endian'])[:40]} for Endian")
    return body, source


@routes.post(BASE + "/files/metadata")
@osdu_op(
    "Register a dataset--File.Generic record for an uploaded file (service.file.editors)",
    {"201": json_content("The record id", {"type": "object", "properties": {"id": {"type": "string"}}})},
    requestBody={"required": True, "content": {"application/json": {"schema": {"type": "object"}}}})
async def post_metadata(request: web.Request) -> web.Response:
    _, partition, _ = caller_in_partition(request, EDITOR)
    body, source = checked_metadata(await body_object(request))
    record_id = f"{partition}:{KIND}:{uuid.uuid4()}"
    async with transaction(request.app[context.DB]) as cur:
        await cur.execute("""SELECT * FROM osdu_files WHERE partition_id = %s AND location = %s
                             AND uploaded_at IS NOT NULL FOR UPDATE""", (partition, source))
        row = await cur.fetchone()
        if row is None:
            raise validation_error(f"Invalid source file path to copy from {source}")
        info = body["data"]["DatasetProperties"]["FileSourceInfo"]
        info.update(Checksum=row["sha256"], ChecksumAlgorithm="SHA-256")
        info.setdefault("FileSize", str(row["size"]))
        record = {**{k: v for k, v in body.items() if k != "id"}, "id": record_id,
                  "version": int(datetime.now(timezone.utc).timestamp() * 1000)}
        await cur.execute("UPDATE osdu_files SET metadata_id = %s, metadata = %s WHERE partition_id = %s AND file_id = %s",
                          (record_id, json.dumps(record), partition, row["file_id"]))
    return web.json_response({"id": record_id}, status=201)


@routes.get(BASE + "/files/{id}/metadata")
@osdu_op("A file's metadata record (service.file.viewers)",
         {"200": json_content("The record", {"type": "object"}), "404": OSDU_ERROR},
         parameters=[ID_PARAM])
async def get_metadata(request: web.Request) -> web.Response:
    _, partition, _ = caller_in_partition(request, VIEWER)
    row = await metadata_row(request, partition, request.match_info["id"])
    if row is None or row["metadata"] is None or row["metadata_id"] != request.match_info["id"]:
        raise fail(NotFound, "Record Not Found")
    return web.json_response(row["metadata"])


@routes.delete(BASE + "/files/{id}/metadata")
@osdu_op("Delete the record and the file; its URLs are revoked (service.file.editors)",
         {"204": {"description": "Deleted"}, "404": OSDU_ERROR}, parameters=[ID_PARAM])
async def delete_metadata(request: web.Request) -> web.Response:
    _, partition, bucket_id = caller_in_partition(request, EDITOR)
    record_id = request.match_info["id"]
    async with transaction(request.app[context.DB]) as cur:
        await cur.execute("DELETE FROM osdu_files WHERE partition_id = %s AND metadata_id = %s RETURNING file_id, key",
                          (partition, record_id))
        row = await cur.fetchone()
        if row is None:
            raise fail(NotFound, "Record Not Found")
        revoked = await url_queries.revoke(cur, file_id=row["file_id"], partition_id=partition)
    for revoked_id in revoked:
        request.app[context.SIGNED_URLS].invalidate(revoked_id)
    location = request.app[context.MAPPING].object(bucket_id, row["key"])
    await request.app[context.STORE].delete(location.bucket, [location.key])
    return web.Response(status=204)


@routes.get(BASE + "/info")
@documented("Build information", tags=["OSDU File service"])
async def info(request: web.Request) -> web.Response:
    from .. import __version__
    return web.json_response({"groupId": "sagestore", "artifactId": "sagestore-file", "version": __version__,
                              "buildTime": None, "branch": None, "commitId": None, "commitMessage": None,
                              "connectedOuterServices": []})


@routes.get(BASE + "/liveness_check")
@documented("Liveness (text)", tags=["OSDU File service"])
async def liveness(request: web.Request) -> web.Response:
    return web.Response(text="File service is alive")


@routes.get(BASE + "/readiness_check")
@documented("Readiness (text)", tags=["OSDU File service"])
async def readiness(request: web.Request) -> web.Response:
    return web.Response(text="File service is ready")
