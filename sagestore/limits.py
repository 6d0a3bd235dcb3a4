"""The largest upload: one rule for every door and for the engine."""
from __future__ import annotations

from typing import Protocol

from .storage import MAX_PART_SIZE, MAX_PARTS

# S3 cannot assemble more: 10 000 parts of at most 5 GiB each
LARGEST_OBJECT = MAX_PARTS * MAX_PART_SIZE


class HasMaxUploadSize(Protocol):
    max_upload_size: int


def max_upload_size(settings: HasMaxUploadSize) -> int:
    """The configured max_upload_size, within what one S3 object can hold."""
    return min(settings.max_upload_size, LARGEST_OBJECT)
