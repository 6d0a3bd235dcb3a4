"""Publications that outlive their request: a client asks to publish an upload, waits a while, and
if the copy takes longer it is told to come back (offset chunks' import_upload answers 202 with
a status URL). One job per (upload, target, sha256), joined by every request that asks for the
same; the jobs stop with the engine.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from .. import background
from ..errors import ApiError, Locked
from .completion import Completer
from .model import COMPLETING, Upload, visible
from .table import UploadTable

log = logging.getLogger("sagestore.uploads")

JobKey = tuple[str, str, str, str | None]  # (upload id, bucket id, key, sha256)


class PublishJobs:
    def __init__(self, completer: Completer, table: UploadTable) -> None:
        self.completer = completer
        self.table = table
        self._jobs: dict[JobKey, asyncio.Task] = {}

    async def publish(self, upload: Upload, bucket_id: str, key: str, sha256: str | None, *,
                      wait: float) -> dict[str, Any] | None:
        """Join or start the job publishing `upload` at (bucket_id, key); its file info if it ends
        within `wait` seconds, else None (it goes on). Another instance holding the completion
        also gives None while it runs there."""
        job_key: JobKey = (upload.id, bucket_id, key, sha256)
        task = self._jobs.get(job_key)
        if task is None:
            # no target means "the upload's own": a retry then returns the first publication as is
            target = None if (bucket_id, key) == (upload.bucket_id, upload.key) else (bucket_id, key)
            task = asyncio.create_task(self.completer.complete(upload, target=target, sha256=sha256))
            self._jobs[job_key] = task
            task.add_done_callback(lambda done: self._jobs.pop(job_key, None)
                                   if self._jobs.get(job_key) is done else None)
            task.add_done_callback(_retrieve)
        await asyncio.wait({task}, timeout=wait)
        if not task.done():
            return None
        try:
            return task.result()
        except Locked:
            # another instance holds the completion: still running there, unless it is an append
            if visible(await self.table.find(upload.id, with_parts=False), upload.owner).state != COMPLETING:
                raise
            return None

    def running(self, upload_id: str, bucket_id: str, key: str, sha256: str | None) -> bool:
        return (upload_id, bucket_id, key, sha256) in self._jobs

    async def close(self) -> None:
        await background.stop(list(self._jobs.values()), "publication jobs")


def _retrieve(task: asyncio.Task) -> None:
    """Done callback: nobody may be waiting any more; log what is not a client error."""
    if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), ApiError):
        log.error("publication failed", exc_info=task.exception())
