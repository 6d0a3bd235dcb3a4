"""The whole-file sha256 of a staged parts upload (the multipart proxy; an indexed session only
where the resumable sha256 is missing, see ordered.py), computed from the parts' bytes as this
instance receives them, so that completion need not read the assembled object back from S3 to
verify the declared sha256.

sha256 can only be fed in order. A part that arrives ahead of the frontier (parallel chunks)
keeps its bytes until the parts before it are hashed, within a byte budget and a time limit;
when either runs out, or a part comes from another instance, or a hashed part is replaced by
different bytes, the frontier gives up and completion reads the object back as before. The
result counts only when the hashed parts are exactly the assembled ones: same numbers, in
order, with the ETags S3 returned for the bytes that were hashed.
"""
from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

from ..storage import PartBody
from .limits import ByteBudget


@dataclass
class _Waiting:
    etag: str
    body: PartBody
    held: int  # budget bytes


@dataclass
class _Frontier:
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    next_part: int = 1
    hashed: dict[int, str] = field(default_factory=dict)  # part number -> ETag of the bytes hashed
    waiting: dict[int, _Waiting] = field(default_factory=dict)
    broken: bool = False
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)


class Sha256Frontiers:
    """One frontier per staged parts upload of this instance."""

    MAX_UPLOADS = 10_000  # the oldest frontier is dropped beyond this (its upload reads back)

    def __init__(self, budget: ByteBudget, *, max_waiting_bytes: int, max_wait_seconds: float = 60.0) -> None:
        self.budget = budget
        self.max_waiting_bytes = max_waiting_bytes
        self.max_wait_seconds = max_wait_seconds
        self._frontiers: OrderedDict[str, _Frontier] = OrderedDict()

    def start(self, upload_id: str) -> None:
        """Follow an upload created here: its parts, if they come to this instance, are hashed."""
        self._frontiers[upload_id] = _Frontier()
        while len(self._frontiers) > self.MAX_UPLOADS:
            self._drop(self._frontiers.popitem(last=False)[1])

    async def offer(self, upload_id: str, part_number: int, etag: str, body: PartBody) -> bool:
        """Feed a stored part's bytes. Returns True when the frontier keeps `body` (the caller must
        then not close it; the frontier closes it once hashed or given up)."""
        frontier = self._frontiers.get(upload_id)
        if frontier is None or frontier.broken:
            return False
        async with frontier.busy:
            if part_number < frontier.next_part:
                if frontier.hashed.get(part_number) != etag:  # the same part again with other bytes
                    self._break(frontier)
                return False
            if part_number > frontier.next_part:
                return self._wait(frontier, part_number, etag, body)
            await self._hash(frontier, part_number, etag, body)
            while frontier.next_part in frontier.waiting and not frontier.broken:
                waiting = frontier.waiting.pop(frontier.next_part)
                await self._hash(frontier, frontier.next_part, waiting.etag, waiting.body)
                self._release(waiting)
            return False

    def sha256(self, upload_id: str, parts: list[tuple[int, str]]) -> str | None:
        """The sha256 of exactly these (part number, ETag) in order, if the frontier hashed them."""
        frontier = self._frontiers.get(upload_id)
        if frontier is None or frontier.broken or frontier.waiting or frontier.busy.locked():
            return None
        if [number for number, _ in parts] != list(range(1, frontier.next_part)):
            return None
        if any(frontier.hashed.get(number) != etag for number, etag in parts):
            return None
        return frontier.digest.hexdigest()

    def forget(self, upload_id: str) -> None:
        frontier = self._frontiers.pop(upload_id, None)
        if frontier is not None:
            self._drop(frontier)

    # ---------------------------------------------------------------- inside
    async def _hash(self, frontier: _Frontier, number: int, etag: str, body: PartBody) -> None:
        views = list(body.views())  # taken here, on the loop, where the body may be closed

        def feed() -> None:
            for view in views:
                frontier.digest.update(view)
        # hashlib lets go of the GIL for large updates: a 16 MiB part does not hold the event loop
        await asyncio.to_thread(feed)
        frontier.hashed[number] = etag
        frontier.next_part = number + 1

    def _wait(self, frontier: _Frontier, number: int, etag: str, body: PartBody) -> bool:
        if number in frontier.waiting:
            self._release(frontier.waiting.pop(number))
        held = body.allocated
        # waiting parts may use at most half of the budget, so that they never starve requests
        if sum(w.held for w in frontier.waiting.values()) + held > self.max_waiting_bytes \
                or not self.budget.try_take(held, leave_free=self.budget.total // 2):
            self._break(frontier)
            return False
        frontier.waiting[number] = waiting = _Waiting(etag, body, held)
        asyncio.get_running_loop().call_later(self.max_wait_seconds, self._expire, frontier, number, waiting)
        return True

    def _expire(self, frontier: _Frontier, number: int, waiting: _Waiting) -> None:
        """A part still waiting after max_wait_seconds: a part before it never came here."""
        if frontier.waiting.get(number) is waiting:
            self._break(frontier)

    def _break(self, frontier: _Frontier) -> None:
        frontier.broken = True
        self._drop(frontier)

    def _drop(self, frontier: _Frontier) -> None:
        for waiting in frontier.waiting.values():
            self._release(waiting)
        frontier.waiting.clear()

    def _release(self, waiting: _Waiting) -> None:
        waiting.body.close()
        self.budget.give_back(waiting.held)
        waiting.held = 0
