"""The small-request load generator: an aiohttp client with a fixed number of concurrent
workers hammering one URL for a fixed time."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def hammer(url: str, headers: dict[str, str], *, seconds: float = 5.0, concurrency: int = 32,
                 max_requests: int = 1_000_000, targets: list[tuple[str, dict[str, str]]] | None = None) -> LoadResult:
    """GET url from `concurrency` workers until `seconds` pass (or max_requests are sent);
    only 200s with a complete body count as requests, everything else as errors. With
    targets, the requests go to those (url, headers) pairs in turn instead."""
    targets = targets or [(url, headers)]
    statuses: dict[int, int] = {}
    counts = {"ok": 0, "errors": 0, "sent": 0}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        # one warm-up request per worker so that connection set-up is not measured
        await asyncio.gather(*(_one(session, *targets[i % len(targets)], {}, {"ok": 0, "errors": 0, "sent": 0})
                               for i in range(concurrency)))
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline and counts["sent"] < max_requests:
                target = targets[counts["sent"] % len(targets)]
                counts["sent"] += 1
                await _one(session, *target, statuses, counts)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(counts["ok"], counts["errors"], elapsed, statuses)


async def _one(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
               statuses: dict[int, int], counts: dict[str, int]) -> None:
    try:
        async with session.get(url, headers=headers) as response:
            await response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1
            counts["ok" if response.status == 200 else "errors"] += 1
    except aiohttp.ClientError:
        counts["errors"] += 1
