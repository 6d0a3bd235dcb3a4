"""Completion, first step: the plan, i.e. the parts CompleteMultipartUpload will be given, from the
recorded parts or the multipart client's list, checked as S3 would check them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest, NotFound
from ..storage import MAX_PARTS, MIN_PART_SIZE
from .common import SEQUENTIAL_PROTOCOLS, S3_INVALID_PART, S3_INVALID_PART_ORDER, S3_ENTITY_TOO_SMALL, normal_etag
from .model import MissingParts, Part, Upload
from .objects import UploadObjects


@dataclass
class Plan:
    """What CompleteMultipartUpload will be given."""
    parts: list[dict[str, Any]]
    size: int
    recorded: list[Part]


async def plan_parts(objects: UploadObjects, upload: Upload, client_parts: list[dict[str, Any]] | None) -> Plan:
    if client_parts is not None:
        return await plan_client_parts(objects, upload, client_parts)
    recorded = list(upload.parts)
    size = sum(part.size for part in recorded)
    if upload.protocol in SEQUENTIAL_PROTOCOLS:
        total = size + upload.tail_size
        if upload.length is not None and total != upload.length:
            raise BadRequest(f"the upload has {total} of its {upload.length} bytes", offset=total)
    else:
        if upload.total_parts is not None:
            present = {part.part_number for part in recorded}
            missing = [n for n in range(1, upload.total_parts + 1) if n not in present]
            if missing:
                raise MissingParts(f"{len(missing)} parts are missing: {missing[:20]}", missing)
            recorded = [part for part in recorded if part.part_number <= upload.total_parts]
            size = sum(part.size for part in recorded)
            if size != upload.length:
                raise BadRequest(f"the parts add up to {size} bytes, not {upload.length}")
        for part in recorded[:-1]:
            if part.size < MIN_PART_SIZE:
                raise BadRequest(S3_ENTITY_TOO_SMALL, code="EntityTooSmall")
    parts = [s3_part_entry(upload, part.part_number, part.etag, part.checksum) for part in recorded]
    return Plan(parts, size, recorded)


def s3_part_entry(upload: Upload, number: int, etag: str, checksum: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"PartNumber": number, "ETag": etag}
    if upload.checksum_algorithm and checksum:
        entry["Checksum" + upload.checksum_algorithm] = checksum
    return entry


async def plan_client_parts(objects: UploadObjects, upload: Upload, client_parts: list[dict[str, Any]]) -> Plan:
    if not isinstance(client_parts, list) or not client_parts:
        raise BadRequest("parts must be a non-empty list of {part_number, etag}")
    try:
        listed = await objects.listed_parts(upload)
    except NotFound:
        # S3 no longer knows the multipart upload: an earlier completion may have reached
        # CompleteMultipartUpload and died before its commit. Check the list against the parts
        # recorded here instead; finish_mpu then accepts only the assembled object it left.
        listed = {part.part_number: [{"PartNumber": part.part_number, "ETag": part.etag, "Size": part.size}]
                  for part in upload.parts}
        if not listed:
            raise
    recorded_checksums = {part.part_number: part.checksum for part in upload.parts}
    previous = 0
    chosen: list[Part] = []
    for item in client_parts:
        if not isinstance(item, dict) or not isinstance(item.get("part_number"), int) \
                or isinstance(item.get("part_number"), bool) or not isinstance(item.get("etag"), str):
            raise BadRequest("each part needs an integer part_number and a string etag")
        number = item["part_number"]
        if not 1 <= number <= MAX_PARTS:
            raise BadRequest(f"part number must be between 1 and {MAX_PARTS}")
        if number <= previous:
            raise BadRequest(S3_INVALID_PART_ORDER, code="InvalidPartOrder")
        previous = number
        match = next((entry for entry in listed.get(number, [])
                      if normal_etag(entry["ETag"]) == normal_etag(item["etag"])), None)
        if match is None:
            raise BadRequest(S3_INVALID_PART, code="InvalidPart")
        checksum = item.get("checksum") or recorded_checksums.get(number) or match.get(
            "Checksum" + (upload.checksum_algorithm or ""))
        chosen.append(Part(number, int(match["Size"]), match["ETag"], checksum, item.get("md5_hash")))
    for part in chosen[:-1]:
        if part.size < MIN_PART_SIZE:
            raise BadRequest(S3_ENTITY_TOO_SMALL, code="EntityTooSmall")
    parts = [s3_part_entry(upload, part.part_number, part.etag, part.checksum) for part in chosen]
    return Plan(parts, sum(part.size for part in chosen), chosen)
