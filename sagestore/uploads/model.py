"""The engine's records and errors: what an upload is, independent of any protocol."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import ApiError, BadRequest, Conflict, Gone, NotFound
from ..storage import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, part_size_for

PROTOCOLS = ("multipart", "offset", "session", "tus", "ietf", "s3")
OPEN, COMPLETING, COMPLETED, ABORTED, EXPIRED = "open", "completing", "completed", "aborted", "expired"


class ChecksumMismatch(ApiError):
    """A chunk's declared checksum (tus Upload-Checksum) does not match its bytes; nothing was kept."""
    status = 460


class OffsetMismatch(Conflict):
    """The request's offset is not the acknowledged offset; carries the current one (body field `offset`)."""

    def __init__(self, message: str, offset: int, **extra: Any) -> None:
        super().__init__(message, offset=offset, **extra)
        self.offset = offset


class MissingParts(BadRequest):
    """Completion of an indexed upload with parts missing; `part_numbers` lists them (1-based)."""

    def __init__(self, message: str, part_numbers: list[int]) -> None:
        super().__init__(message, missing_parts=part_numbers)
        self.part_numbers = part_numbers


class DigestMismatch(BadRequest):
    """A part's Content-MD5 or x-amz-checksum-* does not match its bytes; nothing was stored."""


@dataclass
class Part:
    part_number: int
    size: int
    etag: str
    checksum: str | None = None
    md5: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"part_number": self.part_number, "size": self.size, "etag": self.etag}
        if self.checksum:
            body["checksum"] = self.checksum
        return body


@dataclass
class Upload:
    """One row of `uploads` (and, when read with them, its parts). Offsets and lengths are in bytes."""
    id: str
    protocol: str
    bucket_id: str | None
    key: str | None
    owner: str
    content_type: str
    metadata: dict[str, Any]
    length: int | None
    part_size: int
    part_size_grows: bool
    s3_bucket: str
    s3_key: str
    s3_upload_id: str
    staged: bool
    retain: bool
    offset: int
    tail_key: str | None
    tail_size: int
    checksum_algorithm: str | None
    sha256: str | None
    state: str
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    result: dict[str, Any] | None = None
    parts: list[Part] = field(default_factory=list)
    # sequential uploads hashed as their bytes arrive (see resumable_sha256): the state after the
    # committed full parts, and the digest of every committed byte
    sha256_state: bytes | None = None
    sha256_so_far: str | None = None
    expired: bool = False  # its expiry has passed (PostgreSQL's clock), when it was read
    # a request's lease token was on the row when it was read (maybe a dead one's); not in repr: logs
    writer: str | None = field(default=None, repr=False)

    @property
    def gone(self) -> bool:
        """Aborted or expired (reaped): to a client such an upload does not exist."""
        return self.state in (ABORTED, EXPIRED)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Upload":
        metadata = row["metadata"]
        result = row.get("result")
        parts = row.get("part_list")
        return cls(
            id=str(row["id"]), protocol=row["protocol"],
            bucket_id=str(row["bucket_id"]) if row["bucket_id"] is not None else None, key=row["key"],
            owner=row["owner"], content_type=row["content_type"],
            metadata=json.loads(metadata) if isinstance(metadata, str) else dict(metadata or {}),
            length=row["length"], part_size=row["part_size"], part_size_grows=row["part_size_grows"],
            s3_bucket=row["s3_bucket"], s3_key=row["s3_key"], s3_upload_id=row["s3_upload_id"],
            staged=row["staged"], retain=row["retain"], offset=row["acknowledged_offset"],
            tail_key=row["tail_key"], tail_size=row["tail_size"], checksum_algorithm=row["checksum_algorithm"],
            sha256=row["sha256"], state=row["state"], expires_at=row["expires_at"], created_at=row["created_at"],
            updated_at=row["updated_at"], result=json.loads(result) if isinstance(result, str) else result,
            sha256_state=bytes(row["sha256_state"]) if row.get("sha256_state") is not None else None,
            sha256_so_far=row.get("sha256_so_far"), expired=bool(row.get("is_expired")), writer=row.get("writer"),
            parts=[Part(**part) for part in parts] if parts else [])

    # --- part arithmetic (the only place it lives) ---------------------------
    def part_size_of(self, part_number: int) -> int:
        """Size of part `part_number` in sequential and indexed uploads (the last one may be shorter)."""
        if self.part_size_grows:
            return part_size_for(part_number, self.part_size)
        return self.part_size

    @property
    def total_parts(self) -> int | None:
        """How many parts a declared-length upload with fixed parts has (indexed sessions' totalChunks)."""
        if self.length is None or self.part_size_grows:
            return None
        return max(1, -(-self.length // self.part_size))

    def expected_part_size(self, part_number: int) -> int | None:
        """The exact size part `part_number` must have in a fixed-part upload; None when any size goes."""
        total = self.total_parts
        if total is None:
            return None
        if not 1 <= part_number <= total:
            raise BadRequest(f"part {part_number} is out of range: this upload has parts 1 to {total}")
        if part_number < total:
            return self.part_size
        return self.length - (total - 1) * self.part_size

    @property
    def received(self) -> int:
        """Bytes stored so far: the acknowledged offset of sequential uploads (parts + staged tail),
        or the sum of the parts of indexed and multipart uploads (whose offset stays 0)."""
        return max(self.offset, sum(part.size for part in self.parts))


def visible(upload: Upload | None, owner: str | None = None, *, bucket_id: str | None = None,
            key: str | None = None) -> Upload:
    """The upload, as its owner may see it (owner None: internal use). 404 when missing, another
    owner's, another bucket's or key's, aborted, or reaped; 410 when expired but not yet reaped."""
    if (upload is None or upload.gone or (owner is not None and upload.owner != owner)
            or (bucket_id is not None and str(upload.bucket_id) != str(bucket_id))
            or (key is not None and upload.key != key)):
        raise NotFound("upload not found")
    if upload.expired:
        raise Gone("upload expired")
    return upload


def choose_part_size(length: int | None, base: int, requested: int | None = None) -> tuple[int, bool]:
    """(part size, grows) for a new upload.

    Declared length: the smallest MiB-aligned size >= base (>= 5 MiB) that keeps the parts <= 10 000.
    Deferred length: base, doubling every 1000 parts (storage.part_size_for).
    An explicit request (indexed sessions) is honoured when S3 can take it.
    """
    if requested is not None:
        if not MIN_PART_SIZE <= requested <= MAX_PART_SIZE:
            raise BadRequest(f"part size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes")
        if length is not None and -(-length // requested) > MAX_PARTS:
            raise BadRequest(f"part size {requested} would need more than {MAX_PARTS} parts")
        return requested, False
    base = max(MIN_PART_SIZE, base)
    if length is None:
        return base, True
    needed = -(-length // MAX_PARTS)
    size = -(-max(base, needed) // 2**20) * 2**20
    return size, False
