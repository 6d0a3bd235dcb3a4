"""Where a SAGE bucket's files live in S3, and which keys are acceptable.

A SAGE bucket UUID u maps to S3 bucket {prefix}{u[0:2]} and S3 key {u}/{key}.
Every key is validated before any S3 call, so no key can leave its prefix.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from ..errors import BadRequest

# S3 keys are at most 1024 bytes; the "<uuid>/" prefix takes 37 of them.
MAX_KEY_BYTES = 1024 - 37
# C0, DEL and C1 controls; U+FFFE/U+FFFF cannot appear in the XML of an S3 listing
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ufffe\uffff]")
# bidirectional controls (embeddings, overrides, isolates, marks): 'invoice\u202efdp.exe'
# displays as 'invoiceexe.pdf' in every browser and file manager that shows the name
_BIDI_CONTROLS = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
STAGING_PREFIX = ".sagestore-staging/"  # outside every bucket's "<uuid>/" prefix, never listed


@dataclass(frozen=True)
class Location:
    """One S3 object (or prefix): the physical S3 bucket and key."""
    bucket: str
    key: str


def parse_bucket_id(text: str) -> str:
    """The canonical lower-case UUID string, or 400."""
    try:
        return str(uuid.UUID(str(text)))
    except ValueError:
        raise BadRequest(f"bucket id {text!r} is not a valid UUID") from None


def metadata_value(text: str) -> str:
    """S3 user metadata travels in HTTP headers, so it must be ASCII: anything else is
    percent-encoded (a user name such as 'J\u00fcrgen')."""
    from urllib.parse import quote
    return text if text.isascii() else quote(text, safe="")


def validate_key(key: str, *, folder: bool = False) -> str:
    """Return key unchanged if it is a safe file key (or, with folder=True, a folder
    prefix that is empty or ends in '/'); raise 400 otherwise."""
    if not isinstance(key, str):
        raise BadRequest("key must be a string")
    if folder and key == "":
        return key
    if key == "":
        raise BadRequest("key must not be empty")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from a badly percent-decoded path
        raise BadRequest("key is not valid UTF-8") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise BadRequest(f"key is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise BadRequest("key must not start with '/'")
    if "\\" in key:
        raise BadRequest("key must not contain a backslash")
    if _CONTROL_CHARS.search(key):
        raise BadRequest("key must not contain control characters")
    if _BIDI_CONTROLS.search(key):
        raise BadRequest("key must not contain bidirectional control characters (U+202E and the like)")
    segments = key.split("/")
    if folder:
        if segments[-1] != "":
            raise BadRequest("folder must end with '/'")
        segments = segments[:-1]
    for segment in segments:
        if segment == "":
            raise BadRequest("key must not contain empty path segments ('//')")
        if segment in (".", ".."):
            raise BadRequest("key must not contain '.' or '..' path segments")
    return key


def sanitize_filename(name: str) -> str:
    """The last path component of a client-supplied file name, made safe to append to a folder key."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = _CONTROL_CHARS.sub("", base).strip()
    if base in ("", ".", ".."):
        raise BadRequest("the uploaded file has no usable file name; put the file name in the key")
    return base


@dataclass(frozen=True)
class BucketMapping:
    """Maps SAGE bucket UUIDs onto the physical S3 buckets."""
    prefix: str = "sagedata-"
    count: int = 256
    single_bucket: str = ""

    def __post_init__(self) -> None:
        # two hex digits name the shard, so 256 buckets at most
        if not 1 <= self.count <= 256:
            raise ValueError(f"bucket count must be between 1 and 256, not {self.count}")

    def s3_bucket(self, bucket_id: str) -> str:
        if self.single_bucket:
            return self.single_bucket
        shard = int(bucket_id[0:2], 16) % self.count
        return f"{self.prefix}{shard:02x}"

    def all_s3_buckets(self) -> list[str]:
        if self.single_bucket:
            return [self.single_bucket]
        return [f"{self.prefix}{shard:02x}" for shard in range(self.count)]

    def object(self, bucket_id: str, key: str) -> Location:
        return Location(self.s3_bucket(bucket_id), f"{bucket_id}/{validate_key(key)}")

    def folder(self, bucket_id: str, folder: str = "") -> Location:
        return Location(self.s3_bucket(bucket_id), f"{bucket_id}/{validate_key(folder, folder=True)}")

    def staging(self, bucket_id: str, name: str) -> Location:
        """A scratch object for an unfinished upload, in the same S3 bucket as its target."""
        if not re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", name) or ".." in name:
            raise ValueError(f"bad staging name {name!r}")
        return Location(self.s3_bucket(bucket_id), f"{STAGING_PREFIX}{name}")
