"""Client-side time limits of every connection: request head, keep-alive idle, request body rate.

aiohttp bounds only an idle keep-alive connection (its `keepalive_timeout`, which the Runner sets
from SAGESTORE_KEEPALIVE_TIMEOUT). `LimitedRequestHandler` adds the two limits it lacks:
- a request head (request line and headers) must be complete within `head_timeout` of its first
  byte, else the connection is closed;
- a request body must arrive by `start + body_grace + bytes received / body_min_rate` (Apache's
  mod_reqtimeout rule: each byte buys 1/rate seconds more). A slower body fails its reader with
  RequestTimeout (408 JSON; an append keeps the bytes it got, like any cut-off body), and the
  connection is closed once the answer is out.
"""
from __future__ import annotations

from typing import Any

from aiohttp.helpers import set_exception
from aiohttp.web_protocol import RequestHandler

from .errors import RequestTimeout


class LimitedRequestHandler(RequestHandler):
    """aiohttp's RequestHandler with a request-head timeout and a minimum request-body rate.
    (It relies on RequestHandler internals as of aiohttp 3.12-3.14: _waiter, _messages, _request_count.)"""

    def __init__(self, manager: Any, *, head_timeout: float = 0.0, body_grace: float = 0.0,
                 body_min_rate: int = 0, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._body_grace = body_grace
        self._body_min_rate = body_min_rate
        self._head_timer: Any = None
        self._body_timer: Any = None
        self._watched: Any = None  # the payload of the request whose body is arriving
        self._body_started = 0.0
        self._too_slow = False

    # ---------------------------------------------------------------- request head
    def data_received(self, data: bytes) -> None:
        waiting_for_head = self._waiter is not None and not self._waiter.done()
        requests_before = self._request_count
        super().data_received(data)
        if self._request_count != requests_before:  # a request head is complete
            self._cancel_head_timer()
            if self._body_min_rate and self._messages:
                self._watch_body(self._messages[-1][1])
        elif waiting_for_head and self._head_timer is None and self._head_timeout > 0 and not self._force_close:
            self._head_timer = self._loop.call_later(self._head_timeout, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._waiter is not None and not self._waiter.done():  # still no complete head
            self.force_close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    # ---------------------------------------------------------------- request body
    def _watch_body(self, payload: Any) -> None:
        self._stop_watching()
        if payload is None or not hasattr(payload, "total_bytes") or payload.is_eof():
            return
        self._watched = payload
        self._body_started = self._loop.time()
        self._body_timer = self._loop.call_at(self._body_started + self._body_grace, self._check_body)

    def _stop_watching(self) -> None:
        self._watched = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _check_body(self) -> None:
        self._body_timer = None
        payload = self._watched
        if payload is None or payload.is_eof() or self._force_close:
            self._watched = None
            return
        deadline = self._body_started + self._body_grace + payload.total_bytes / self._body_min_rate
        if self._loop.time() < deadline:
            self._body_timer = self._loop.call_at(deadline, self._check_body)
            return
        self._watched = None
        self._too_slow = True
        if not self._request_in_progress:  # answered already (aiohttp is discarding the rest)
            self.force_close()
            return
        set_exception(payload, RequestTimeout(
            f"the request body arrived slower than {self._body_min_rate} bytes/s "
            f"({payload.total_bytes} bytes in {self._loop.time() - self._body_started:.0f} s)"))

    async def finish_response(self, request: Any, resp: Any, start_time: float | None) -> Any:
        self._stop_watching()
        result = await super().finish_response(request, resp, start_time)
        if self._too_slow:  # the rest of that body will not be read: the connection cannot go on
            self.force_close()
        return result

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        self._stop_watching()
        super().connection_lost(exc)
