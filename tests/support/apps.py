"""In-process apps for the tests: served like `sagestore serve` serves them, and shared by the
tests of a module that use the same settings."""
from __future__ import annotations

import ctypes
from typing import Any

from aiohttp import web_app
from aiohttp.test_utils import TestServer

from sagestore.app import create_app
from sagestore.config import Settings
from sagestore.trailers import Runner


class AppServer(TestServer):
    """A test server run like `sagestore serve` runs the app: the trailer-recording Runner, and
    a handler that goes on when its client goes away (aiohttp's default, which `sagestore serve`
    keeps; aiohttp's TestServer would cancel it instead)."""

    async def _make_runner(self, **kwargs: Any) -> Runner:
        kwargs["handler_cancellation"] = False
        return Runner(self.app, **kwargs)


class SharedAppServer(AppServer):
    """An AppServer that outlives the clients of single tests: their close() leaves it running;
    shutdown() stops it (when its module is done)."""

    async def close(self) -> None:
        pass

    async def shutdown(self) -> None:
        await super().close()


class SharedApps:
    """One running app per distinct Settings, for the tests of one module. Every test still gets
    its own aiohttp client session; the app (database pool, S3 client, caches) is shared."""

    def __init__(self) -> None:
        self.servers: dict[Settings, SharedAppServer] = {}

    async def server(self, settings: Settings) -> SharedAppServer:
        server = self.servers.get(settings)
        if server is None:
            server = SharedAppServer(create_app(settings))
            await server.start_server()
            self.servers[settings] = server
        return server

    async def shutdown(self) -> None:
        servers, self.servers = list(self.servers.values()), {}
        for server in servers:
            await server.shutdown()
        forget_built_middlewares()


def forget_built_middlewares() -> None:
    """aiohttp memoizes each handler wrapped in its app's middlewares in a process-wide
    lru_cache of 1024 entries keyed on the handler and the apps; in a test process that builds
    hundreds of apps it keeps every one alive (~12 MiB each). A server process builds one app,
    so only the tests clear it."""
    cached = getattr(web_app, "_cached_build_middleware", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()


def give_freed_memory_back() -> None:
    """Ask glibc to return the free pages of its heaps to the kernel: the in-process tests move
    tens of MiB through many small allocations, and what glibc keeps after a test would add to
    the next one's peak (measured: ~80 MiB less resident after test_tus_clients.py)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
