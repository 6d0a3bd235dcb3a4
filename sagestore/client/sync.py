"""Client: AsyncClient's methods, blocking. One private event loop runs in a daemon thread per
Client, so the sync and async clients share every line of transfer code."""
from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from typing import Any, Iterator

from .aio import AsyncClient, Notice
from .config import TransferConfig


class Client:
    """Same methods as AsyncClient, blocking; `list` returns a plain iterator. Use it as a
    context manager, or call close()."""

    def __init__(self, url: str, token: str | None = None, *, config: TransferConfig | None = None,
                 on_retry: Notice | None = None) -> None:
        self._async = AsyncClient(url, token, config=config, on_retry=on_retry)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sagestore-client", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return self._async.url

    @property
    def config(self) -> TransferConfig:
        return self._async.config

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncClient", "Client", 1)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self, coroutine: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def list(self, bucket_id: str, prefix: str = "", *, recursive: bool = False) -> Iterator[dict[str, Any]]:
        pages = self._async.list(bucket_id, prefix, recursive=recursive)
        try:
            while True:
                try:
                    yield self._run(pages.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(pages.aclose())


def _blocking(name: str) -> Any:
    method = getattr(AsyncClient, name)

    @functools.wraps(method)
    def call(self: Client, *args: Any, **kwargs: Any) -> Any:
        return self._run(getattr(self._async, name)(*args, **kwargs))
    return call


for _name, _method in inspect.getmembers(AsyncClient, inspect.iscoroutinefunction):
    if not _name.startswith("_") and _name != "close":
        setattr(Client, _name, _blocking(_name))
