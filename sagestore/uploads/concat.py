"""Concatenation (tus Upload-Concat): which S3 parts a final upload is assembled from.

Each finished partial upload is one staged object. Wherever S3's part rules allow, a range of
a partial becomes a part of the final multipart upload through UploadPartCopy, so its bytes
never pass through us again. Only pieces that cannot stand alone as a part (a partial shorter
than the 5 MiB minimum, or the bytes needed to top up such a piece to the minimum) are read
and uploaded, and those buffers are at most MIN_PART_SIZE each.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadRequest
from ..storage import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE


@dataclass(frozen=True)
class Segment:
    """Bytes [start, end) of source number `source`."""
    source: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class PlannedPart:
    """One part of the final upload: a server-side copy of one segment, or segments read and re-sent."""
    segments: tuple[Segment, ...]
    copy: bool

    @property
    def size(self) -> int:
        return sum(segment.size for segment in self.segments)


def _even_ranges(source: int, start: int, end: int) -> list[Segment]:
    """[start, end) split into the fewest ranges of at most MAX_PART_SIZE, all of about equal size."""
    size = end - start
    count = max(1, -(-size // MAX_PART_SIZE))
    step = -(-size // count)
    return [Segment(source, offset, min(end, offset + step)) for offset in range(start, end, step)]


def plan_concatenation(sizes: list[int], *, min_part: int = MIN_PART_SIZE) -> list[PlannedPart]:
    """The parts of the concatenation of sources with these sizes, in order.

    Every part but the last is >= min_part and <= MAX_PART_SIZE; a part is a copy whenever it is
    one contiguous range of one source. Greedy: a short piece is topped up from the next source.
    """
    parts: list[PlannedPart] = []
    pending: list[Segment] = []
    pending_size = 0
    last_source = max((index for index, size in enumerate(sizes) if size > 0), default=-1)
    for index, size in enumerate(sizes):
        position = 0
        if pending and size:
            take = min(size, min_part - pending_size)
            pending.append(Segment(index, 0, take))
            pending_size += take
            position = take
            if pending_size >= min_part:
                parts.append(PlannedPart(tuple(pending), copy=False))
                pending, pending_size = [], 0
        rest = size - position
        if rest <= 0:
            continue
        if rest >= min_part or (index == last_source and not pending):
            parts.extend(PlannedPart((segment,), copy=True) for segment in _even_ranges(index, position, size))
        else:
            pending.append(Segment(index, position, size))
            pending_size += rest
    if pending:
        parts.append(PlannedPart(tuple(pending), copy=False))
    if len(parts) > MAX_PARTS:
        raise BadRequest(f"these partial uploads would need {len(parts)} parts; S3 allows {MAX_PARTS}")
    return parts
