"""AWS Signature Version 4 as a server checks it: the Authorization header, presigned query
strings, and the signatures of aws-chunked bodies (each chunk, and the trailer).

Written from the AWS S3 API reference ("Authenticating Requests (AWS Signature Version 4)"):
no maintained Python library verifies SigV4 on the server side with its streaming variants.
Every comparison of a signature is constant-time; secrets and signatures are never put in
messages or logs.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Iterable, Mapping
from urllib.parse import quote, unquote

from .errors import error

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
MAX_SKEW_SECONDS = 15 * 60  # S3's RequestTimeTooSkewed bound
MAX_PRESIGN_SECONDS = 7 * 86400  # X-Amz-Expires may not exceed a week
_HEX64 = re.compile(r"[0-9a-f]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_ACCESS_KEY = re.compile(r"[A-Za-z0-9]{1,128}")
PRESIGN_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
                  "X-Amz-Signature")


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    date: str  # YYYYMMDD
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


@dataclass(frozen=True)
class SignedRequest:
    """What a request's SigV4 authentication claims, before its signature is checked."""
    credential: Credential
    amz_date: str  # YYYYMMDDTHHMMSSZ
    signed_headers: tuple[str, ...]
    signature: str
    payload_hash: str  # hex sha256, UNSIGNED-PAYLOAD or one of STREAMING_MODES
    presigned: bool

    @property
    def access_key_id(self) -> str:
        return self.credential.access_key_id


def _parse_credential(text: str, *, query: bool) -> Credential:
    code = "AuthorizationQueryParametersError" if query else "AuthorizationHeaderMalformed"
    pieces = text.split("/")
    if len(pieces) != 5 or pieces[4] != "aws4_request":
        raise error(code, "the Credential must be <access key>/<date>/<region>/s3/aws4_request")
    access_key_id, date, region, service, _ = pieces
    if not _ACCESS_KEY.fullmatch(access_key_id):
        raise error("InvalidAccessKeyId")
    if not re.fullmatch(r"\d{8}", date) or not region or not re.fullmatch(r"[A-Za-z0-9-]{1,64}", region):
        raise error(code, "the Credential's date or region is malformed")
    if service != "s3":
        raise error(code, f"the Credential is scoped to the service {service[:20]!r}, not s3")
    return Credential(access_key_id, date, region, service)


def _parse_signed_headers(text: str, code: str) -> tuple[str, ...]:
    names = tuple(text.split(";")) if text else ()
    if not names or any(not re.fullmatch(r"[a-z0-9!#$%&'*+.^_`|~-]+", name) for name in names):
        raise error(code, "SignedHeaders must be lower-case header names separated by ';'")
    if "host" not in names:
        raise error(code, "SignedHeaders must include host")
    return names


def _request_time(amz_date: str) -> datetime:
    return datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def parse(headers: Mapping[str, str], query: Mapping[str, str], now: datetime) -> SignedRequest | None:
    """The SigV4 claims of a request (header or presigned query), or None for an anonymous one.
    Malformed or stale authentication raises the S3 error S3 gives for it."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        return _parse_header(authorization, headers, now)
    if "X-Amz-Algorithm" in query or "X-Amz-Signature" in query or "X-Amz-Credential" in query:
        return _parse_query(query, headers, now)
    return None


def _parse_header(authorization: str, headers: Mapping[str, str], now: datetime) -> SignedRequest:
    code = "AuthorizationHeaderMalformed"
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme == "AWS":
        raise error("InvalidRequest", "Signature Version 2 is not supported; please use AWS4-HMAC-SHA256")
    if scheme != ALGORITHM:
        raise error(code, f"the authorization scheme must be {ALGORITHM}")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or name in fields:
            raise error(code, "the Authorization header must hold Credential=, SignedHeaders= and Signature=")
        fields[name] = value.strip()
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise error(code, "the Authorization header must hold Credential=, SignedHeaders= and Signature=")
    credential = _parse_credential(fields["Credential"], query=False)
    signed_headers = _parse_signed_headers(fields["SignedHeaders"], code)
    signature = fields["Signature"]
    if not _HEX64.fullmatch(signature):
        raise error(code, "the Signature must be 64 lower-case hexadecimal digits")
    amz_date = headers.get("x-amz-date")
    if amz_date is None:
        if headers.get("Date") is None:
            raise error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
        try:
            amz_date = parsedate_to_datetime(headers["Date"]).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        except (TypeError, ValueError):
            raise error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header") from None
    if not _AMZ_DATE.fullmatch(amz_date):
        raise error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    try:
        when = _request_time(amz_date)
    except ValueError:
        raise error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header") from None
    if abs((now - when).total_seconds()) > MAX_SKEW_SECONDS:
        raise error("RequestTimeTooSkewed")
    if credential.date != amz_date[:8]:
        raise error(code, "the Credential's date differs from the request's x-amz-date")
    payload_hash = headers.get("x-amz-content-sha256")
    if payload_hash is None:
        raise error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    if not (_HEX64.fullmatch(payload_hash) or payload_hash == UNSIGNED_PAYLOAD or payload_hash in STREAMING_MODES):
        if payload_hash.startswith("STREAMING-"):
            raise error("NotImplemented", f"the payload mode {payload_hash[:60]!r} is not supported")
        raise error("InvalidArgument", "x-amz-content-sha256 must be the payload's hex sha256, UNSIGNED-PAYLOAD "
                                       "or a STREAMING-* mode")
    return SignedRequest(credential, amz_date, signed_headers, signature, payload_hash, presigned=False)


def _parse_query(query: Mapping[str, str], headers: Mapping[str, str], now: datetime) -> SignedRequest:
    code = "AuthorizationQueryParametersError"
    missing = [name for name in PRESIGN_PARAMS if not query.get(name)]
    if missing:
        raise error(code, f"the presigned URL lacks {', '.join(missing)}")
    if query["X-Amz-Algorithm"] != ALGORITHM:
        raise error(code, f"X-Amz-Algorithm must be {ALGORITHM}")
    credential = _parse_credential(query["X-Amz-Credential"], query=True)
    signed_headers = _parse_signed_headers(query["X-Amz-SignedHeaders"], code)
    signature = query["X-Amz-Signature"]
    if not _HEX64.fullmatch(signature):
        raise error(code, "X-Amz-Signature must be 64 lower-case hexadecimal digits")
    amz_date = query["X-Amz-Date"]
    expires = query["X-Amz-Expires"]
    if not _AMZ_DATE.fullmatch(amz_date) or not (expires.isascii() and expires.isdigit()) or len(expires) > 7:
        raise error(code, "X-Amz-Date must look like 20250101T000000Z and X-Amz-Expires be a number of seconds")
    if int(expires) > MAX_PRESIGN_SECONDS:
        raise error(code, "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires "
                          "must be less than 604800 seconds")
    try:
        when = _request_time(amz_date)
    except ValueError:
        raise error(code, "X-Amz-Date is not a valid time") from None
    if credential.date != amz_date[:8]:
        raise error(code, "the Credential's date differs from X-Amz-Date")
    elapsed = (now - when).total_seconds()
    if elapsed < -MAX_SKEW_SECONDS:
        raise error("AccessDenied", "Request is not valid yet")
    if elapsed > int(expires):
        raise error("AccessDenied", "Request has expired")
    payload_hash = query.get("X-Amz-Content-Sha256") or headers.get("x-amz-content-sha256") or UNSIGNED_PAYLOAD
    if not (_HEX64.fullmatch(payload_hash) or payload_hash == UNSIGNED_PAYLOAD):
        raise error(code, "a presigned request's payload hash must be UNSIGNED-PAYLOAD or a hex sha256")
    return SignedRequest(credential, amz_date, signed_headers, signature, payload_hash, presigned=True)


# ------------------------------------------------------------------ canonical request
def _encode(text: str) -> str:
    """S3's UriEncode: every byte but A-Z a-z 0-9 - _ . ~ percent-encoded, upper-case hex."""
    return quote(text, safe="-_.~")


def canonical_path(raw_path: str) -> str:
    """The path as the client encoded it for signing: each segment decoded once and encoded the
    one canonical way (S3 neither normalizes dot segments nor encodes twice)."""
    if not raw_path:
        return "/"
    return "/".join(_encode(unquote(segment)) for segment in raw_path.split("/"))


def canonical_query(raw_query: str, *, drop: str | None = None) -> str:
    pairs = []
    for item in raw_query.split("&") if raw_query else ():
        if not item:
            continue
        name, _, value = item.partition("=")
        name, value = unquote(name), unquote(value)
        if name == drop:
            continue
        pairs.append((_encode(name), _encode(value)))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _header_value(values: Iterable[str]) -> str:
    return ",".join(" ".join(value.split()) for value in values)


def canonical_request(method: str, raw_path: str, raw_query: str, headers, signed: SignedRequest) -> str:
    """`headers` is a multidict (getall): a header sent twice is signed as its values joined by ','."""
    lines = []
    for name in signed.signed_headers:
        lines.append(f"{name}:{_header_value(headers.getall(name, []))}\n")
    query = canonical_query(raw_query, drop="X-Amz-Signature" if signed.presigned else None)
    return "\n".join([method, canonical_path(raw_path), query, "".join(lines), ";".join(signed.signed_headers),
                      signed.payload_hash])


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()])


def signing_key(secret: str, credential: Credential) -> bytes:
    key = hmac.new(("AWS4" + secret).encode(), credential.date.encode(), hashlib.sha256).digest()
    for part in (credential.region, credential.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def verify(key: bytes, method: str, raw_path: str, raw_query: str, headers, signed: SignedRequest) -> None:
    """SignatureDoesNotMatch unless the request's signature is the one its secret gives."""
    canonical = canonical_request(method, raw_path, raw_query, headers, signed)
    expected = sign(key, string_to_sign(signed.amz_date, signed.credential.scope, canonical))
    if not matches(expected, signed.signature):
        raise error("SignatureDoesNotMatch")


class ChunkSignatures:
    """The signature chain of an aws-chunked body: each chunk's signature covers the previous
    signature (the request's seed signature first) and the chunk's sha256; the trailer's covers
    the last chunk's signature and the trailing headers."""

    def __init__(self, key: bytes, signed: SignedRequest) -> None:
        self.key = key
        self.amz_date = signed.amz_date
        self.scope = signed.credential.scope
        self.previous = signed.signature

    def check_chunk(self, chunk_sha256: str, given: str) -> None:
        text = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.amz_date, self.scope, self.previous, EMPTY_SHA256,
                          chunk_sha256])
        expected = sign(self.key, text)
        if not matches(expected, given):
            raise error("SignatureDoesNotMatch", "a chunk's signature does not match its bytes")
        self.previous = given

    def check_trailer(self, trailers: list[tuple[str, str]], given: str) -> None:
        canonical = "".join(f"{name}:{value}\n" for name, value in trailers)
        text = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.amz_date, self.scope, self.previous,
                          hashlib.sha256(canonical.encode()).hexdigest()])
        if not matches(sign(self.key, text), given):
            raise error("SignatureDoesNotMatch", "the trailer's signature does not match")
