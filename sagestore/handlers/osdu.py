"""The OSDU File service under /api/file/v2/: an adapter over buckets, signed URLs and storage.

Each data partition (SAGESTORE_OSDU_PARTITIONS) is one SAGE bucket owned by the service user
`osdu-file-service` (sagestore/osdu.py creates them at start-up); an OSDU file is the object `<FileID>`
in it, so it is also readable through /api/v1/objects by whoever the bucket's ACL allows. Roles come
from the caller's groups (sagestore/osdu.py says which forms count): viewers < editors < admin.
Checks follow the OSDU File service: no or bad token 401; Data-Partition-Id missing, unknown or without a file role
400; a role too low 403. Errors are the usual `{"error"}` plus OSDU's `code` and `message`.
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Awaitable, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from aiohttp import web
from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from .. import __version__, context, gate
from ..auth.signing import MAX_EXPIRY
from ..db import cursor, transaction
from ..db import osdu_files as file_queries
from ..db import signed_urls as url_queries
from ..errors import ApiError, BadRequest, Forbidden, NotFound, Unauthorized
from ..openapi import documented
from ..osdu import ADMIN, EDITOR, VIEWER, role_level, role_name
from ..storage import validate_key
from .bodies import JsonBody, Says, checked, refusal
from .common import identity, json_object
from .links import issue
from .schemas import error, json_content

routes = gate.Routes()
BASE = "/api/file/v2"
DRIVER = "S3"
FILE_ID = re.compile(r"[\w,\s-]+(\.\w+)?", re.ASCII)
EXPIRY = re.compile(r"([0-9]{1,9})([MHD])")
DEFAULT_EXPIRY = 3600
MAX_ITEMS = 32767
MAX_PAGE = 2**31 - 1
KIND = "dataset--File.Generic"


def fail(kind: type[ApiError], message: str, **extra: Any) -> ApiError:
    """A typed error whose body also carries OSDU's code and message fields."""
    problem = kind(message, **extra)
    problem.extra.update(code=problem.status, message=message)
    return problem


def caller_in_partition(request: web.Request, needed: int) -> tuple[str, str, str]:
    """(user, partition, bucket id) after the File service's checks, in its order."""
    caller = identity(request)
    if caller.anonymous:
        raise fail(Unauthorized, "Missing authorization token")
    partition = request.headers.get("Data-Partition-Id", "").strip()
    if not partition:
        raise fail(BadRequest, "Missing Data-Partition-Id header")
    buckets = request.app[context.OSDU_BUCKETS]
    if partition not in buckets:
        raise fail(BadRequest, f"Unknown data partition {partition[:80]!r}")
    level = role_level(caller.groups, partition, request.app[context.SETTINGS].osdu_domain)
    if not level:
        raise fail(BadRequest, f"The caller has no service.file role in data partition {partition!r}")
    if level < needed:
        raise fail(Forbidden, f"This operation needs the {role_name(needed)} role in data partition {partition!r}")
    return caller.user, partition, buckets[partition]


async def body_object(request: web.Request) -> dict[str, Any]:
    """The JSON object every File service POST takes, checked as every JSON body is (nesting, NUL)."""
    try:
        return json_object(await request.read() or b"null")
    except BadRequest as problem:
        raise fail(BadRequest, f"Invalid Json Input: {problem.message.replace('request body', 'the body')}") from None


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


# ---------------------------------------------------------------- the JSON bodies
class OsduBody(JsonBody):
    """A File service body: its 400s carry OSDU's code and message too."""

    @classmethod
    def problem(cls, message: str) -> ApiError:
        return fail(BadRequest, message)


def _non_blank(name: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not value.strip():
            raise BadRequest(f"{name}: must be a non-blank string")
        return value
    return check


FileId = Annotated[str, checked(checked_file_id), Says("FileID: must be a string"),
                   Field(json_schema_extra={"pattern": f"^{FILE_ID.pattern}$"})]


class LocationRequest(OsduBody):
    FileID: FileId | None = Field(None, description="default: a generated UUID")


class FileLocationRequest(OsduBody):
    FileID: Annotated[FileId, Says("FileID: must be a string", missing="FileID: must not be blank")]


def _date_time(name: str) -> Callable[[Any], Any]:
    """TimeFrom/TimeTo: an ISO date-time in UTC, e.g. 2020-01-01T16:21:00.552Z."""
    def parse(value: Any) -> Any:
        if value is None:
            return None  # the field's Says: "must not be null"
        if not isinstance(value, str) or not value.strip():
            raise refusal(f"{name}: must be a date-time string such as 2020-01-01T16:21:00.552Z")
        text = value[:-1] if value.endswith("Z") else value
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?", text):
            raise refusal(f"{name}: {value[:40]!r} is not an ISO date-time (UTC, e.g. 2020-01-01T16:21:00.552Z)")
        try:
            parsed = datetime.fromisoformat(text[:26] if "." in text else text)
        except ValueError:
            raise refusal(f"{name}: {value[:40]!r} is not a valid date-time") from None
        return parsed.replace(tzinfo=timezone.utc)
    return parse


class FileListRequest(OsduBody):
    TimeFrom: Annotated[datetime, BeforeValidator(_date_time("TimeFrom")), Says(missing="TimeFrom: must not be null")]
    TimeTo: Annotated[datetime, BeforeValidator(_date_time("TimeTo")), Says(missing="TimeTo: must not be null")]
    PageNum: Annotated[int, Field(ge=0, le=MAX_PAGE), Says(f"PageNum: must be an integer between 0 and {MAX_PAGE}",
                                                          missing="PageNum: must not be null")] = 0
    Items: Annotated[int, Field(ge=1, le=MAX_ITEMS), Says(f"Items: must be an integer between 1 and {MAX_ITEMS}",
                                                         missing="Items: must not be null")]
    UserID: Annotated[str, checked(_non_blank("UserID")), Says("UserID: must be a non-blank string")] | None = None

    @model_validator(mode="after")
    def _in_order(self) -> FileListRequest:
        if self.TimeFrom >= self.TimeTo:
            raise refusal("TimeFrom: should be before TimeTo")
        return self


def _revoke_field(name: str) -> Any:
    return Annotated[str, checked(_non_blank(name)), Says(f"{name}: must be a non-blank string")]


class RevokeUrlRequest(OsduBody):
    """Every URL of a FileID, every URL issued to CreatedBy, or one SignedURL (at least one of them)."""
    model_config = ConfigDict(extra="forbid")
    unknown_fields = "Unknown property {first!r}: revokeURL takes FileID, CreatedBy or SignedURL"

    FileID: _revoke_field("FileID") = None
    CreatedBy: _revoke_field("CreatedBy") = None
    SignedURL: _revoke_field("SignedURL") = None

    @model_validator(mode="after")
    def _something(self) -> RevokeUrlRequest:
        if not self.model_fields_set:
            raise refusal("The body names nothing to revoke: send FileID, CreatedBy or SignedURL")
        return self


# A dataset--File.Generic record, validated as the community service does; every other field is kept.
class MetadataBody(OsduBody):
    model_config = ConfigDict(extra="allow")

    @classmethod
    def problem(cls, message: str) -> ApiError:
        return validation_error(message)


def _kind(kind: str) -> str:
    parts = kind.split(":")
    if len(parts) != 4:
        raise BadRequest("Invalid kind")
    if parts[1].lower() != "wks":
        raise BadRequest("Invalid source in kind")
    if parts[2].lower() != KIND.lower():
        raise BadRequest("Invalid entity in kind")
    return kind


def _endian(value: Any) -> Any:
    if value not in ("BIG", "LITTLE"):
        raise refusal(f"Invalid value of {str(value)[:40]} for Endian")
    return value


def _not_empty(message: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, dict) and not value:
            raise refusal(message)
        return value
    return check


_NO_SOURCE = "FileSource can not be empty"


class MetadataAcl(MetadataBody):
    viewers: Annotated[list[str], Field(min_length=1), Says("Record acl.viewers cannot be empty")]
    owners: Annotated[list[str], Field(min_length=1), Says("Record acl.owners cannot be empty")]


class MetadataLegal(MetadataBody):
    legaltags: Annotated[list[Any], Field(min_length=1), Says("legal tag cannot be empty")]


def _source(value: str) -> str:
    if not value.strip():
        raise BadRequest(_NO_SOURCE)
    return value


class FileSourceInfo(MetadataBody):
    FileSource: Annotated[str, checked(_source), Says(_NO_SOURCE),
                          Field(description="the file's location, as getLocation answered it")]


class DatasetProperties(MetadataBody):
    FileSourceInfo: Annotated[FileSourceInfo, Says(_NO_SOURCE)]


class MetadataData(MetadataBody):
    DatasetProperties: Annotated[DatasetProperties, Says(_NO_SOURCE)]
    Endian: Annotated[str, BeforeValidator(_endian), Field(json_schema_extra={"enum": ["BIG", "LITTLE"]})] = None


class FileMetadata(MetadataBody):
    kind: Annotated[str, checked(_kind), Says("Invalid kind", missing="kind must not be null"),
                    Field(description="<authority>:wks:dataset--File.Generic:<version>")]
    acl: Annotated[MetadataAcl, Says("acl must be an object", missing="acl must not be null")]
    legal: Annotated[MetadataLegal, Says("legal tag cannot be empty")]
    data: Annotated[MetadataData, BeforeValidator(_not_empty("data cannot be empty")), Says("data cannot be empty")]


def location_of(request: web.Request, bucket_id: str, file_id: str) -> str:
    where = request.app[context.MAPPING].object(bucket_id, file_id)
    return f"s3://{where.bucket}/{where.key}"


async def create_location(request: web.Request, file_id: str | None) -> web.Response:
    user, partition, bucket_id = caller_in_partition(request, EDITOR)
    expires_in = expiry_seconds(request)
    file_id = str(uuid.uuid4()) if file_id is None else file_id
    location = location_of(request, bucket_id, file_id)
    async with transaction(request.app[context.DB]) as cur:
        if not await file_queries.create(cur, partition_id=partition, file_id=file_id, bucket_id=bucket_id,
                                         key=file_id, driver=DRIVER, location=location, created_by=user):
            raise fail(BadRequest, f"Location for fileID {file_id} already exists")
        _, url = await issue(request, cur, method="PUT", bucket_id=bucket_id, key=file_id, expires_in=expires_in,
                             purpose="osdu", creator=identity(request), file_id=file_id, partition_id=partition)
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
ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "the metadata record id (<partition>:dataset--File.Generic:<uuid>), or a FileID"}


def osdu_op(summary: str, responses: dict[str, Any], **extra: Any) -> Callable[[Handler], Handler]:
    """@documented with what every File service operation shares: its header, statuses and tag."""
    return documented(summary, {**responses, **STATUSES},
                      parameters=HEADERS + extra.pop("parameters", []), tags=["OSDU File service"], **extra)


@routes.post(BASE + "/getLocation", body=gate.SMALL)
@osdu_op(
    "A new file location and a signed PUT URL for it (service.file.editors)",
    {"200": json_content("FileID and signed URL", LOCATION)}, parameters=[EXPIRY_PARAM], body=LocationRequest,
    body_required=False)
async def get_location(request: web.Request) -> web.Response:
    caller_in_partition(request, EDITOR)
    if not (await request.read()).strip():  # the FileID is optional, and so is the whole body
        return await create_location(request, None)
    body = LocationRequest.parse(await body_object(request))
    return await create_location(request, body.FileID)


@routes.get(BASE + "/files/uploadURL")
@osdu_op(
    "getLocation with a generated FileID (service.file.editors)",
    {"200": json_content("FileID and signed URL", LOCATION)}, parameters=[EXPIRY_PARAM])
async def upload_url(request: web.Request) -> web.Response:
    return await create_location(request, None)


async def file_record(request: web.Request, partition: str, file_id: str) -> dict[str, Any] | None:
    async with cursor(request.app[context.DB]) as cur:
        return await file_queries.get(cur, partition, file_id)


@routes.post(BASE + "/getFileLocation", body=gate.SMALL)
@osdu_op(
    "Driver and Location of a file (service.file.editors); an unknown FileID is 400",
    {"200": json_content("Where the file is", {"type": "object", "properties": {
        "Driver": {"type": "string", "enum": [DRIVER]}, "Location": {"type": "string"}}})},
    body=FileLocationRequest)
async def get_file_location(request: web.Request) -> web.Response:
    _, partition, _ = caller_in_partition(request, EDITOR)
    file_id = FileLocationRequest.parse(await body_object(request)).FileID
    record = await file_record(request, partition, file_id)
    if record is None:
        raise fail(BadRequest, f"Not found location for fileID : {file_id}")
    return web.json_response({"Driver": record["driver"], "Location": record["location"]})


def osdu_time(value: datetime) -> str:
    """yyyy-MM-dd'T'HH:mm:ss.SSSZ in UTC, as the File service's examples show."""
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


@routes.post(BASE + "/getFileList", body=gate.SMALL)
@osdu_op(
    "Files created in [TimeFrom, TimeTo], by CreatedAt, paged (service.file.editors)",
    {"200": json_content("One page", {"type": "object", "properties": {
        "Content": {"type": "array", "items": {"type": "object", "properties": {
            name: {"type": kind} for name, kind in (
                ("FileID", "string"), ("Driver", "string"), ("Location", "string"), ("CreatedAt", "string"),
                ("CreatedBy", "string"), ("Uploaded", "boolean"), ("Size", "integer"), ("Sha256", "string"))}}},
        "Number": {"type": "integer"}, "NumberOfElements": {"type": "integer"}, "Size": {"type": "integer"}}})},
    body=FileListRequest)
async def get_file_list(request: web.Request) -> web.Response:
    _, partition, _ = caller_in_partition(request, EDITOR)
    body = FileListRequest.parse(await body_object(request))
    time_from, time_to, page, items, user = body.TimeFrom, body.TimeTo, body.PageNum, body.Items, body.UserID
    async with cursor(request.app[context.DB]) as cur:
        rows = await file_queries.page(cur, partition, time_from, time_to, user, items, page)
    content = []
    for row in rows:
        record = {"FileID": row["file_id"], "Driver": row["driver"], "Location": row["location"],
                  "CreatedAt": osdu_time(row["created_at"]), "CreatedBy": row["created_by"],
                  "Uploaded": row["uploaded_at"] is not None}
        if row["uploaded_at"] is not None:
            record.update(Size=row["size"], Sha256=row["sha256"])
        content.append(record)
    return web.json_response({"Content": content, "Number": page, "NumberOfElements": len(content), "Size": items})


@routes.post(BASE + "/files/revokeURL", body=gate.SMALL)
@osdu_op(
    "Revoke signed URLs of this partition: every URL of a FileID, every URL issued to CreatedBy, or one "
    "SignedURL (service.file.admin)", {"204": {"description": "Revoked (on every instance)"}},
    body=RevokeUrlRequest)
async def revoke_url(request: web.Request) -> web.Response:
    _, partition, bucket_id = caller_in_partition(request, ADMIN)
    body = RevokeUrlRequest.parse(await body_object(request))
    url_id = None if body.SignedURL is None else signed_url_id(request, body.SignedURL, bucket_id)
    async with transaction(request.app[context.DB]) as cur:
        revoked = await url_queries.revoke(cur, url_id=url_id, created_by=body.CreatedBy, file_id=body.FileID,
                                           partition_id=partition)
    cache = request.app[context.SIGNED_URLS]
    for revoked_id in revoked:
        cache.invalidate(revoked_id)
    return web.Response(status=204)


def signed_url_id(request: web.Request, url: str, bucket_id: str) -> str:
    """The id of a URL this server signed for the partition's bucket (its signature checked)."""
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
        return await file_queries.by_record_id(cur, partition, record_id)


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
                             purpose="osdu", creator=identity(request), file_id=row["file_id"],
                             partition_id=partition)
    return web.json_response({"SignedUrl": url})


def validation_error(message: str) -> ApiError:
    return fail(BadRequest, message, errors=[{"domain": "global", "reason": "badRequest", "message": message}])


@routes.post(BASE + "/files/metadata", body=gate.SMALL)
@osdu_op(
    "Register a dataset--File.Generic record for an uploaded file (service.file.editors)",
    {"201": json_content("The record id", {"type": "object", "properties": {"id": {"type": "string"}}})},
    body=FileMetadata)
async def post_metadata(request: web.Request) -> web.Response:
    _, partition, _ = caller_in_partition(request, EDITOR)
    body = await body_object(request)  # the record is kept as sent, with every field it has
    source = FileMetadata.parse(body).data.DatasetProperties.FileSourceInfo.FileSource
    record_id = f"{partition}:{KIND}:{uuid.uuid4()}"
    async with transaction(request.app[context.DB]) as cur:
        row = await file_queries.uploaded_at_location(cur, partition, source)
        if row is None:
            raise validation_error(f"Invalid source file path to copy from {source}")
        info = body["data"]["DatasetProperties"]["FileSourceInfo"]
        info.update(Checksum=row["sha256"], ChecksumAlgorithm="SHA-256")
        info.setdefault("FileSize", str(row["size"]))
        record = {**{k: v for k, v in body.items() if k != "id"}, "id": record_id,
                  "version": int(datetime.now(timezone.utc).timestamp() * 1000)}
        await file_queries.set_metadata(cur, partition, row["file_id"], record_id, record)
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
        row = await file_queries.delete_by_record_id(cur, partition, record_id)
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
