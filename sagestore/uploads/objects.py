"""Where an upload's bytes are in the object store: its multipart upload (MPU), at its target key or
at a staging key, and its staging objects (`.sagestore-staging/uploads/{id}/`: the assembled
object of a staged upload, staged tails `tail-<token>`, parked chunks `chunk-N`). Sending a part
there, listing what the store holds, and releasing it all.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

from ..errors import NotFound
from ..storage import STAGING_PREFIX, BucketMapping, Location, ObjectNotFound, ObjectStore, PartBody, StorageRefused
from .checksums import MultiDigest, normalize_algorithm
from .common import s3_bad_request
from .model import COMPLETED, Part, Upload


class UploadObjects:
    def __init__(self, store: ObjectStore, mapping: BucketMapping) -> None:
        self.store = store
        self.mapping = mapping

    # ------------------------------------------------------------------ locations
    def mpu(self, upload: Upload) -> Location:
        return Location(upload.s3_bucket, upload.s3_key)

    @staticmethod
    def staging_at(s3_bucket: str, upload_id: str, name: str) -> Location:
        return Location(s3_bucket, f"{STAGING_PREFIX}uploads/{upload_id}/{name}")

    def staging(self, upload: Upload, name: str) -> Location:
        return self.staging_at(upload.s3_bucket, upload.id, name)

    def staging_prefix(self, upload: Upload) -> Location:
        return Location(upload.s3_bucket, f"{STAGING_PREFIX}uploads/{upload.id}/")

    # ------------------------------------------------------------------ parts
    async def send_part(self, upload: Upload, part_number: int, data: bytes | bytearray | io.BytesIO | PartBody, *,
                        content_md5: str | None = None, checksum: str | None = None) -> Part:
        """UploadPart. Give an io.BytesIO that owns its bytes (at position 0) to spare a copy: aiohttp
        streams it as it is, while bytes are copied whole on their way out."""
        if isinstance(data, io.BytesIO):
            with data.getbuffer() as view:
                size = view.nbytes
        else:
            size = len(data)
        checksums = {upload.checksum_algorithm: checksum} if upload.checksum_algorithm and checksum else None
        try:
            response = await self.store.upload_part(self.mpu(upload), upload.s3_upload_id, part_number, data,
                                                    content_md5=content_md5, checksums=checksums)
        except ObjectNotFound:
            raise NotFound("upload not found (its storage was released)") from None
        except StorageRefused as error:
            raise s3_bad_request(error) from None
        return Part(part_number, size, response["ETag"], checksum, content_md5)

    @staticmethod
    def part_checksum(upload: Upload, data: bytes | bytearray | io.BytesIO | PartBody) -> str | None:
        """The part's checksum in the upload's own algorithm (None without one)."""
        if not upload.checksum_algorithm:
            return None
        digest = MultiDigest([upload.checksum_algorithm])
        if isinstance(data, PartBody):
            for view in data.views():
                digest.update(view)
        elif isinstance(data, io.BytesIO):
            with data.getbuffer() as view:
                digest.update(view)
        else:
            digest.update(data)
        return digest.b64(normalize_algorithm(upload.checksum_algorithm))

    async def listed_parts(self, upload: Upload) -> dict[int, list[dict[str, Any]]]:
        """What the store holds for the upload's MPU, by part number (some stores list every version
        of a re-uploaded part)."""
        try:
            listed = await self.store.list_parts(self.mpu(upload), upload.s3_upload_id)
        except ObjectNotFound:
            raise NotFound("upload not found (its storage was released)") from None
        by_number: dict[int, list[dict[str, Any]]] = {}
        for item in listed:
            by_number.setdefault(int(item["PartNumber"]), []).append(item)
        return by_number

    # ------------------------------------------------------------------ releasing
    async def release(self, upload: Upload) -> None:
        """Abort the MPU (unless it was completed) and delete every staging object."""
        if upload.state != COMPLETED:
            await self.store.abort_multipart(self.mpu(upload), upload.s3_upload_id)
        await self.store.delete_prefix(self.staging_prefix(upload))

    async def delete_staging(self, upload: Upload, *, keep_object: bool) -> None:
        """After publishing: staging goes, except the assembled object when it is kept."""
        with contextlib.suppress(Exception):
            if keep_object:
                keys = [key async for page in self.store.iter_keys(self.staging_prefix(upload)) for key in page
                        if key != upload.s3_key]
                if keys:
                    await self.store.delete(upload.s3_bucket, keys)
            else:
                await self.store.delete_prefix(self.staging_prefix(upload))
