"""Incremental digests for per-part and per-chunk checksums.

One name space for every protocol: S3's flexible checksums (CRC32, CRC32C, CRC64NVME,
SHA1, SHA256), Content-MD5, and tus Upload-Checksum (sha1, md5, sha256, crc32, crc32c).
Values travel as base64 of the big-endian digest bytes, as S3 and tus both send them.
CRC32C and CRC64NVME come from awscrt (the library botocore itself uses for them).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from typing import Callable

from ..errors import BadRequest

# S3 names of the flexible checksum algorithms, in the spelling the multipart API accepts
S3_CHECKSUM_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
# every algorithm a part or chunk may be verified with (lower case)
ALGORITHMS = ("md5", "sha1", "sha256", "crc32", "crc32c", "crc64nvme")


class _Crc:
    """hashlib-like wrapper for a CRC function f(data, previous) -> int."""

    def __init__(self, function: Callable[[bytes, int], int], width: int) -> None:
        self.function = function
        self.width = width
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = self.function(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self.width, "big")


def _crc32c(data: bytes, previous: int) -> int:
    from awscrt import checksums
    return checksums.crc32c(data, previous)


def _crc64nvme(data: bytes, previous: int) -> int:
    from awscrt import checksums
    return checksums.crc64nvme(data, previous)


def new_digest(algorithm: str):
    """A fresh incremental digest object with update(bytes) and digest() -> bytes."""
    name = algorithm.lower()
    if name in ("md5", "sha1", "sha256"):
        return hashlib.new(name)
    if name == "crc32":
        return _Crc(lambda data, previous: zlib.crc32(data, previous), 4)
    if name == "crc32c":
        return _Crc(_crc32c, 4)
    if name == "crc64nvme":
        return _Crc(_crc64nvme, 8)
    raise BadRequest(f"unsupported checksum algorithm {algorithm!r}; supported: {', '.join(ALGORITHMS)}")


def normalize_algorithm(algorithm: str) -> str:
    name = str(algorithm).strip().lower().replace("-", "")
    if name not in ALGORITHMS:
        raise BadRequest(f"unsupported checksum algorithm {algorithm!r}; supported: {', '.join(ALGORITHMS)}")
    return name


def decode_b64(value: str, algorithm: str) -> bytes:
    """The digest bytes of a base64 checksum value, or 400 when it cannot be one."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{algorithm} checksum {value!r} is not valid base64") from None
    expected = len(new_digest(algorithm).digest())
    if len(raw) != expected:
        raise BadRequest(f"{algorithm} checksum must be {expected} bytes, got {len(raw)}")
    return raw


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class MultiDigest:
    """Several digests fed from one stream."""

    def __init__(self, algorithms) -> None:
        self.digests = {normalize_algorithm(name): new_digest(name) for name in algorithms}

    def update(self, data: bytes) -> None:
        for digest in self.digests.values():
            digest.update(data)

    def b64(self, algorithm: str) -> str:
        return b64(self.digests[algorithm].digest())

    def raw(self, algorithm: str) -> bytes:
        return self.digests[algorithm].digest()
