"""Shutdown never waits for ever on a background task (a test's app teardown once hung 600 s)."""
from __future__ import annotations

import asyncio
import time

from sagestore import background


async def test_cancelled_tasks_are_stopped_and_awaited():
    tasks = [asyncio.create_task(asyncio.sleep(3600)) for _ in range(3)]
    await background.stop(tasks, "sleepers")
    assert all(task.cancelled() for task in tasks)


async def test_a_task_that_ignores_its_cancellation_does_not_hang_the_shutdown(caplog):
    release = asyncio.Event()

    async def stubborn():
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:  # as a driver's connection attempt that swallows it
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    started = time.monotonic()
    await background.stop(task, "stubborn", within=0.2)
    assert time.monotonic() - started < 2
    assert "stubborn: 1 task(s) still running" in caplog.text
    release.set()
    task.cancel()
    await task
