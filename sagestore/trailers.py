"""Request trailers (RFC 9112 section 7.1.2), which tus's checksum-trailer extension needs.

aiohttp parses the trailer section of a chunked request body and throws it away: its C parser
(llhttp) gives no access at all, its pure-Python parser parses the trailers into headers and
drops them. `Runner` serves the app with aiohttp's own pure-Python request parser, given a
HeadersParser stand-in that keeps what it parses for trailers; `request_trailers(request)`
hands them to the handler once the body has been read.

The pure-Python parser costs ~55 µs more per request head than the C one (measured with
aiohttp 3.14 on the benchmark machine) and moves body bytes at least as fast; see docs/operations.md.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from aiohttp import web
from aiohttp.http_parser import HeadersParser, HttpRequestParserPy
from aiohttp.web_protocol import MAX_MSG_QUEUE_SIZE, RequestPayloadError
from aiohttp.web_request import BaseRequest
from multidict import CIMultiDictProxy

from . import context
from .connections import LimitedRequestHandler

# Trailers wait for their handler here; a handler that never asks leaves them behind, so only
# the newest few of a connection are kept (a connection serves one request at a time).
_KEPT_PER_CONNECTION = 4


class _RecordingHeadersParser:
    """Parses like aiohttp's HeadersParser and logs what it parses outside a request head: the
    payload parser calls it exactly once per chunked body, for the trailer section."""

    def __init__(self, inner: HeadersParser) -> None:
        self._inner = inner
        self.in_request_head = False
        self.parsed_trailers: deque[CIMultiDictProxy[str]] = deque()

    def parse_headers(self, lines: list[bytes]) -> Any:
        result = self._inner.parse_headers(lines)
        if not self.in_request_head:
            self.parsed_trailers.append(result[0])
        return result


class TrailerRecordingParser(HttpRequestParserPy):
    """aiohttp's pure-Python request parser, keeping the trailers of each chunked body."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recorder = _RecordingHeadersParser(self._headers_parser)
        self._headers_parser = self._recorder  # also handed to every payload parser it creates
        self._chunked_bodies: deque[Any] = deque()
        self.trailers: OrderedDict[Any, CIMultiDictProxy[str]] = OrderedDict()

    def parse_headers(self, lines: list[bytes]) -> Any:
        self._recorder.in_request_head = True
        try:
            return super().parse_headers(lines)
        finally:
            self._recorder.in_request_head = False

    def feed_data(self, data: bytes, *args: Any, **kwargs: Any) -> Any:
        messages, upgraded, tail = super().feed_data(data, *args, **kwargs)
        # Bodies and trailer sections come in the same order; they are paired here, before any
        # handler can see the end of its body (handlers run after this synchronous call).
        for message, payload in messages:
            if message.chunked:
                self._chunked_bodies.append(payload)
        parsed = self._recorder.parsed_trailers
        while parsed and self._chunked_bodies:
            payload, trailers = self._chunked_bodies.popleft(), parsed.popleft()
            if trailers:
                self.trailers[payload] = trailers
                while len(self.trailers) > _KEPT_PER_CONNECTION:
                    self.trailers.popitem(last=False)
        return messages, upgraded, tail


class _LimitedServer(web.Server):
    """Builds each connection's handler as a LimitedRequestHandler (head timeout, body rate)."""

    def __call__(self) -> Any:
        return LimitedRequestHandler(self, loop=self._loop, **self._kwargs)


class _TrailerServer(_LimitedServer):
    """Also gives each connection a TrailerRecordingParser in place of the C parser."""

    def __call__(self) -> Any:
        handler = super().__call__()
        handler._parser = TrailerRecordingParser(
            handler, self._loop, handler._read_bufsize, max_line_size=handler.max_line_size,
            max_field_size=handler.max_field_size, max_headers=handler.max_headers,
            payload_exception=RequestPayloadError,
            max_msg_queue_size=MAX_MSG_QUEUE_SIZE)
        return handler


class Runner(web.AppRunner):
    """web.AppRunner for sagestore: the client-side time limits of sagestore.connections from the
    app's settings (keep-alive idle, request head, body rate) and, with trailers=True, connections
    that record request trailers (see request_trailers)."""

    def __init__(self, app: web.Application, *, trailers: bool = True, **kwargs: Any) -> None:
        settings = app.get(context.SETTINGS)
        if settings is not None:
            kwargs.setdefault("keepalive_timeout", settings.keepalive_timeout)
            kwargs.setdefault("head_timeout", settings.request_head_timeout)
            kwargs.setdefault("body_grace", settings.body_grace)
            kwargs.setdefault("body_min_rate", settings.body_min_rate)
        super().__init__(app, **kwargs)
        self._keep_trailers = trailers

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # the app built a plain Server; only its handler factory differs
        server.__class__ = _TrailerServer if self._keep_trailers else _LimitedServer
        return server


def can_read_trailers(request: BaseRequest) -> bool:
    """Whether this request arrived on a connection that records trailers (served by Runner)."""
    return isinstance(getattr(request.protocol, "_parser", None), TrailerRecordingParser)


def request_trailers(request: BaseRequest) -> CIMultiDictProxy[str] | None:
    """The trailer fields of the request's chunked body, once the body has been read to its end;
    None when it had none, was not chunked, or the connection does not record trailers (check
    can_read_trailers before reading the body). Trailers are handed out once."""
    parser = getattr(request.protocol, "_parser", None)
    if not isinstance(parser, TrailerRecordingParser):
        return None
    return parser.trailers.pop(request.content, None)
