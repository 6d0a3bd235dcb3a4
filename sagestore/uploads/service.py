"""The engine as an app resource: opened in a cleanup_ctx, with the background reaper."""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from aiohttp import web

from .. import background, context
from .engine import UploadEngine

log = logging.getLogger("sagestore.uploads")


async def reaper_loop(engine: UploadEngine, interval: float) -> None:
    """Every instance reaps; FOR UPDATE SKIP LOCKED shares the rows between them."""
    while True:
        await asyncio.sleep(interval)
        try:
            counts = await engine.reap()
            if any(counts.values()):
                log.info("reaper: %s", counts)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a failed pass is retried at the next interval
            log.exception("reaper pass failed")


async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
    """Needs database_ctx and storage_ctx before it."""
    settings = app[context.SETTINGS]
    engine = UploadEngine(app[context.DB], app[context.STORE], app[context.MAPPING], settings, app[context.METRICS])
    await engine.start()
    app[context.ENGINE] = engine
    reaper = asyncio.create_task(reaper_loop(engine, settings.reaper_interval)) if settings.reaper_interval > 0 \
        else None
    try:
        yield
    finally:
        await background.stop(reaper, "reaper")
        await engine.close()
