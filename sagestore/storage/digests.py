"""The digests object stores exchange: base64 MD5 (Content-MD5) and CRC32C (x-amz-checksum-crc32c)."""
from __future__ import annotations

import base64
import hashlib
import io
from typing import Any

from awscrt import checksums as _awscrt_checksums

from .part_body import PartBody


def crc32c(data: Any, previous: int = 0) -> int:
    return _awscrt_checksums.crc32c(data, previous)


def crc_b64(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode()


def crc32c_b64(data: bytes | bytearray | memoryview | io.BytesIO | PartBody) -> str:
    """base64 of the big-endian CRC32C, as x-amz-checksum-crc32c carries it (~10 GB/s)."""
    if isinstance(data, PartBody):
        value = 0
        for view in data.views():
            value = crc32c(view, value)
        return crc_b64(value)
    if isinstance(data, io.BytesIO):
        with data.getbuffer() as view:
            return crc_b64(crc32c(view[data.tell():]))
    return crc_b64(crc32c(data))


def md5_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()
