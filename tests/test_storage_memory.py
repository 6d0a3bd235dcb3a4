"""put_stream keeps memory bounded by part size x parts in flight, whatever the body size."""
from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

from sagestore.storage import Location, PartBody, open_object_store
from sagestore.storage import part_body as part_body_module
from sagestore.storage import s3 as s3_module

MiB = 2**20
PART = 8 * MiB
IN_FLIGHT = 4
CHUNK = MiB + 17  # odd-sized chunks, as a request body arrives
# well over twice the bound below (a put_stream that collected the body would exceed it), and
# 15 parts: more parts than fit in flight at once
TOTAL = 120 * MiB
SLACK = 2 * MiB  # botocore/aiohttp request state, 64 KiB read chunks, the generator's chunk

_S3_SOURCE = Path(s3_module.__file__)
_PART_BODY_SOURCE = Path(part_body_module.__file__)
_BODY_COPY_LINE = next(number for number, line in enumerate(_PART_BODY_SOURCE.read_text().splitlines(), start=1)
                       if "bytearray(self.BLOCK)" in line)


def _buffer_bytes() -> int:
    """Bytes held by put_stream's own allocations except the per-part request bodies
    (PartBody blocks, allocated as the bytes arrive), i.e. any other buffer that collects chunks into parts."""
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, str(_S3_SOURCE)),
                                                          tracemalloc.Filter(True, str(_PART_BODY_SOURCE))])
    return sum(trace.size for trace in snapshot.traces
               if (trace.traceback[0].filename, trace.traceback[0].lineno) != (str(_PART_BODY_SOURCE),
                                                                                _BODY_COPY_LINE))


async def test_put_stream_memory_is_bounded(s3_backend):
    async with open_object_store(endpoint=s3_backend["endpoint"], access_key=s3_backend["access_key"],
                                 secret_key=s3_backend["secret_key"], region="us-east-1",
                                 part_size=PART, parts_in_flight=IN_FLIGHT) as store:
        await store.ensure_buckets(["memory-test"])
        location = Location("memory-test", "120MiB.bin")
        block = os.urandom(CHUNK + 4096)
        expected = hashlib.sha256()
        buffer_samples: list[int] = []

        async def body():
            sent = 0
            index = 0
            while sent < TOTAL:
                size = min(CHUNK, TOTAL - sent)
                chunk = block[index % 4096:index % 4096 + size]
                expected.update(chunk)
                yield chunk
                sent += size
                index += 1
                # put_stream has consumed the chunk: whole parts have left the buffer
                buffer_samples.append(_buffer_bytes())

        await store.put_bytes(Location("memory-test", "warm-up"), b"x")  # connection pool, credentials
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            result = await store.put_stream(location, body(), sha256_metadata_key=None)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert result.size == TOTAL and result.sha256 == expected.hexdigest()
        assert result.etag.strip('"').endswith(f"-{-(-TOTAL // PART)}")
        info = await store.head(location)
        assert info.size == TOTAL
        assert len(buffer_samples) == -(-TOTAL // CHUNK)
        # after each chunk less than one part is left, so the buffer never holds more than
        # one part plus one chunk (bytearray may over-allocate by 1/8)
        assert max(buffer_samples) <= PART * 9 // 8, max(buffer_samples) / MiB
        assert peak <= PART * (IN_FLIGHT + 2) + SLACK, f"peak {peak / MiB:.1f} MiB"
        print(f"peak traced memory {peak / MiB:.1f} MiB for {TOTAL // MiB} MiB "
              f"(bound {PART * (IN_FLIGHT + 2) // MiB} MiB); largest part buffer {max(buffer_samples) / MiB:.1f} MiB")
        await store.delete(location.bucket, [location.key])


def test_a_closed_part_bodys_blocks_serve_the_next_unless_something_still_views_them():
    part_body_module._SPARE_BLOCKS.clear()
    first, original = PartBody(3 * MiB), os.urandom(3 * MiB)
    first.write(original)
    free = [id(block) for block in first._blocks[:2]]  # ids only: a reference would hold them too
    held = next(first.views(2 * MiB))  # a transport or a store still holds a view of the third block
    first.close()
    assert first.filled == 0 and list(first.views()) == []
    assert sorted(id(block) for block in part_body_module._SPARE_BLOCKS) == sorted(free)
    second = PartBody(2 * MiB)
    data = os.urandom(2 * MiB)
    second.write(data)
    assert sorted(id(block) for block in second._blocks) == sorted(free)  # reused, no new block
    assert second.getvalue() == data and part_body_module._SPARE_BLOCKS == []
    assert bytes(held) == original[2 * MiB:]  # the viewed block was left alone
