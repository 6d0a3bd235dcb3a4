"""A small TCP fault proxy for the path between sagestore and S3 (asyncio, same loop as the app).

Modes, switchable at any moment:
- "pass": forward both ways;
- latency: every forwarded chunk waits `latency` seconds first;
- reset_after: once that many request bytes (client -> S3) have passed, the connection is
  reset (RST to both sides): a reset in the middle of a part;
- garble_requests: that many of the next requests (client -> S3) are preceded by a line that is
  not HTTP, so the S3 server's HTTP layer answers 400 without an S3 error document and closes;
- "blackhole": new connections are accepted and read but nothing is forwarded or answered,
  and connections already open stop forwarding (a frozen or unreachable network).
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct

REQUEST_LINE = re.compile(rb"[A-Z]+ /[^ ]* HTTP/1\.1\r\n")


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.latency = 0.0
        self.reset_after: int | None = None  # request bytes until the next reset (one-shot)
        self.resets = 0
        self.garble_requests = 0
        self.garbled = 0
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> "FaultProxy":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "blackhole":
            await self._swallow(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, requests: bool) -> None:
            try:
                while True:
                    data = await source.read(65536)
                    if not data:
                        break
                    while self.mode == "blackhole":
                        await asyncio.sleep(0.05)
                    if self.latency:
                        await asyncio.sleep(self.latency)
                    if requests and self.reset_after is not None:
                        if len(data) >= self.reset_after:
                            self.reset_after = None
                            self.resets += 1
                            for side in pair:
                                _reset(side)
                            return
                        self.reset_after -= len(data)
                    if requests and self.garble_requests and REQUEST_LINE.match(data):
                        self.garble_requests -= 1
                        self.garbled += 1
                        data = b"\x00 not a request\r\n" + data
                    sink.write(data)
                    await sink.drain()
                with contextlib.suppress(OSError):
                    sink.write_eof()
            except (OSError, asyncio.IncompleteReadError):
                for side in pair:
                    side.transport.abort()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        for side in pair:
            side.close()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        writer.close()
