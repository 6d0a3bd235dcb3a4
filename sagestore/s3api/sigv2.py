"""Presigned URLs of AWS Signature Version 2 (`?AWSAccessKeyId=&Expires=&Signature=`): what
`aws s3 presign` and boto3's generate_presigned_url still make for a custom endpoint unless told
to use SigV4. Only this query form is accepted (the same 7-day bound as SigV4's presigned URLs);
V2 Authorization headers are refused with S3's InvalidRequest."""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import unquote

from .errors import error
from .sigv4 import MAX_PRESIGN_SECONDS

# the query parameters that are part of the signed resource (the rest are not signed)
SIGNED_SUBRESOURCES = frozenset({
    "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy",
    "requestPayment", "torrent", "versioning", "versionId", "versions", "website", "uploads", "uploadId",
    "response-content-type", "response-content-language", "response-expires", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "delete", "lifecycle", "tagging", "restore",
    "storageClass", "notification", "replication", "analytics", "metrics", "inventory", "select", "select-type",
    "object-lock"})


@dataclass(frozen=True)
class PresignedV2:
    access_key_id: str
    expires: int
    signature: str


def parse(query: Mapping[str, str]) -> PresignedV2 | None:
    if "Signature" not in query or "AWSAccessKeyId" not in query:
        return None
    expires = query.get("Expires", "")
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        raise error("AccessDenied", "Query-string authentication requires the Signature, Expires and "
                                    "AWSAccessKeyId parameters")
    now = time.time()
    if int(expires) < now:
        raise error("AccessDenied", "Request has expired")
    if int(expires) > now + MAX_PRESIGN_SECONDS:
        raise error("AuthorizationQueryParametersError", "a presigned URL may be valid for a week at most")
    if not query["AWSAccessKeyId"].isalnum():
        raise error("InvalidAccessKeyId")
    return PresignedV2(query["AWSAccessKeyId"], int(expires), query["Signature"])


def string_to_sign(method: str, raw_path: str, raw_query: str, headers, expires: int) -> str:
    amz = {}
    for name in {name.lower() for name in headers if name.lower().startswith("x-amz-")}:
        amz[name] = ",".join(value.strip() for value in headers.getall(name))
    resource = raw_path
    pairs = []
    for item in raw_query.split("&") if raw_query else ():
        name, sep, value = item.partition("=")
        if name in SIGNED_SUBRESOURCES:
            pairs.append(f"{name}={unquote(value)}" if sep else name)
    if pairs:
        resource += "?" + "&".join(sorted(pairs, key=lambda pair: pair.split("=", 1)[0]))
    lines = [method, headers.get("Content-MD5", "").strip(), headers.get("Content-Type", "").strip(), str(expires)]
    lines += [f"{name}:{amz[name]}" for name in sorted(amz)]
    return "\n".join(lines) + "\n" + resource if amz else "\n".join(lines) + "\n" + resource


def verify(secret: str, method: str, raw_path: str, raw_query: str, headers, presigned: PresignedV2) -> None:
    text = string_to_sign(method, raw_path, raw_query, headers, presigned.expires)
    expected = base64.b64encode(hmac.new(secret.encode(), text.encode("utf-8"), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected.encode(), presigned.signature.encode()):
        raise error("SignatureDoesNotMatch")
