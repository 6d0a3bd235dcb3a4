"""Stopping background tasks at shutdown: cancel, then wait a bounded time. A task stuck where its
cancellation is not honoured (a database connection attempt inside a driver) is left behind with
a warning instead of hanging the shutdown for ever."""
from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("sagestore.background")
STOP_WITHIN = 10.0  # seconds


async def stop(tasks: list[asyncio.Task] | asyncio.Task | None, what: str, within: float = STOP_WITHIN) -> None:
    if tasks is None:
        return
    tasks = [tasks] if isinstance(tasks, asyncio.Task) else list(tasks)
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=within)
    if pending:
        log.warning("%s: %d task(s) still running %.0fs after their cancellation; left behind",
                    what, len(pending), within)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the task's own code logged what mattered
