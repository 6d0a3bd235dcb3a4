"""PartBody: the engine's streaming part buffer, the bytes of one part that can be sent while they
are still arriving. Both object stores take it (the S3 store streams it to UploadPart, the
in-memory store reads it the same way), so it belongs to neither.
"""
from __future__ import annotations

import asyncio
import io
import sys
from typing import Any, AsyncIterator, Iterator


# blocks of closed bodies, for the next ones (at most SPARE_BLOCKS_KEPT MiB idle per process)
SPARE_BLOCKS_KEPT = 64
_SPARE_BLOCKS: list[bytearray] = []


class PartStalled(ConnectionAbortedError):
    """A PartBody sent while filling waited too long for its next bytes."""


class PartBody:
    """A part's bytes, which can go to S3 while they are still arriving: UploadPart starts as soon
    as the part's first bytes arrive and sends each piece as it is written, so receiving a request
    body and storing it overlap instead of alternating.

    Memory follows the bytes written, never the size declared: the bytes live in blocks of BLOCK
    bytes, each allocated when the first byte for it arrives and never moved or resized (a piece
    being sent may still be referenced by the transport), so `allocated` is at most one block more
    than `filled`. `size` is what an UploadPart sent now declares (the part's full size, or the
    bytes filled after truncate()).

    A request sends it through sending(): to botocore a file-like Body of len() bytes (seek/tell
    for its signer, which never reads an unsigned payload); to aiohttp an async iterable. A body
    that will not be filled to its size
    must be abandoned, so the request in flight (and any retry of it) fails instead of waiting for
    bytes that never come; truncate() then makes it a whole body of the bytes it has. Each
    abandon() starts a new `generation`: a send begun before it never completes with the
    truncated bytes, which by then belong to whoever truncated them (a staged tail).
    """

    BLOCK = 2**20
    SEND_PIECE = 256 * 2**10
    # a send that waits longer than this for the next bytes gives up (PartStalled): S3 servers drop
    # idle requests anyway, and a stalled sender must not keep its part from a writer taking over
    STALL_SECONDS = 2.0

    def __init__(self, size: int) -> None:
        self._blocks: list[bytearray] = []
        self.filled = 0
        self.size = size
        self._grew = asyncio.Event()
        self._abandoned: BaseException | None = None
        self.generation = 0
        self._stalled = False  # once a send stalled, sends before the body is full fail at once (no retries)

    @property
    def allocated(self) -> int:
        return len(self._blocks) * self.BLOCK

    def allocated_after(self, more: int) -> int:
        """What `allocated` will be once `more` bytes are written."""
        return -(-(self.filled + more) // self.BLOCK) * self.BLOCK

    def write(self, data: bytes | memoryview) -> int:
        """Append data (the one copy of the request's bytes)."""
        with memoryview(data) as view:
            position = 0
            while position < len(view):
                index, offset = divmod(self.filled, self.BLOCK)
                if index == len(self._blocks):
                    self._blocks.append(_SPARE_BLOCKS.pop() if _SPARE_BLOCKS else bytearray(self.BLOCK))
                take = min(self.BLOCK - offset, len(view) - position)
                self._blocks[index][offset:offset + take] = view[position:position + take]
                position += take
                self.filled += take
        self._grew.set()
        return len(data)

    def truncate(self) -> None:
        self.size = self.filled

    def close(self) -> None:
        """Free the bytes (the part is stored); the body is empty afterwards. Blocks nothing else
        references any more (no view of them left in a transport or a store) are kept for the
        next part: a new 1 MiB block costs a zero fill and a page fault per 4 KiB, which was
        more than copying the bytes into it."""
        blocks, self._blocks = self._blocks, []
        self.filled = self.size = 0
        while blocks and len(_SPARE_BLOCKS) < SPARE_BLOCKS_KEPT:
            block = blocks.pop()
            if sys.getrefcount(block) == 2:  # `block` and getrefcount's argument: no view, no list
                _SPARE_BLOCKS.append(block)

    @property
    def full(self) -> bool:
        return self.filled >= self.size

    def views(self, start: int = 0, end: int | None = None) -> Iterator[memoryview]:
        """The filled bytes [start, end) as views of the blocks, in order."""
        end = self.filled if end is None else min(end, self.filled)
        while start < end:
            index, offset = divmod(start, self.BLOCK)
            stop = min(end, start + self.BLOCK - offset)
            yield memoryview(self._blocks[index])[offset:offset + stop - start]
            start = stop

    def getvalue(self) -> bytes:
        return b"".join(self.views())

    def abandon(self, reason: BaseException | None = None) -> None:
        self._abandoned = reason or ConnectionAbortedError("the part body was abandoned")
        self.generation += 1
        self._grew.set()

    @property
    def abandoned(self) -> bool:
        return self._abandoned is not None

    async def filled_up(self) -> None:
        """Wait until the body is full; raises if it is abandoned first."""
        while not self.full:
            if self._abandoned is not None:
                raise self._abandoned
            self._grew.clear()
            await self._grew.wait()

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return True

    def sending(self) -> "_PartSend":
        """What one UploadPart or PutObject sends (retries included)."""
        return _PartSend(self)

    async def _pieces(self, size: int, generation: int) -> AsyncIterator[memoryview]:
        sent = 0  # every iteration starts over: a retry resends from the blocks, which keep every byte
        if self._stalled and not self.full:
            raise PartStalled("this part stalled before; it is sent again once it is whole")
        while True:
            # truncate() makes an abandoned body whole again, for sends begun after it only
            if self._abandoned is not None and (generation != self.generation or not self.full):
                raise self._abandoned
            if sent >= size:
                break
            if sent >= self.filled:
                self._grew.clear()
                try:
                    await asyncio.wait_for(self._grew.wait(), self.STALL_SECONDS)
                except asyncio.TimeoutError:
                    self._stalled = True
                    raise PartStalled(f"no new bytes for {self.STALL_SECONDS} s") from None
                continue
            for view in self.views(sent, min(size, sent + self.SEND_PIECE)):
                yield view
                sent += len(view)


class _PartSend:
    """One request's view of a PartBody: its length is the body's size when the request began
    (its Content-Length), and it fails, retries included, once the body is abandoned after that."""

    def __init__(self, body: PartBody) -> None:
        self.body = body
        self.size = body.size
        self.generation = body.generation

    # botocore's face: a stream it validates, measures and would rewind on a retry
    def read(self, *_: Any) -> bytes:
        raise io.UnsupportedOperation("PartBody is sent as an async iterable")

    def seek(self, *_: Any) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return True

    # aiohttp's face
    def __aiter__(self) -> AsyncIterator[memoryview]:
        return self.body._pieces(self.size, self.generation)
