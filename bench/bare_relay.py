"""The relay anchor: the smallest honest aiohttp server that moves request bodies to S3 and S3
objects back, with sagestore's own S3 settings and nothing else (no database, no ACL, no
sha256, no middleware, no access log). What sagestore adds to a relayed transfer is measured
against this process, in the same run, on the same SeaweedFS.

    BARE_S3_ENDPOINT=... BARE_S3_ACCESS_KEY=... BARE_S3_SECRET_KEY=... python -m bench.bare_relay PORT

The S3 client is the one `sagestore.storage.open_object_store` builds from sagestore's default
settings (SigV4 with an UNSIGNED-PAYLOAD body and a signed x-amz-checksum-crc32c instead, no
Expect: 100-continue, the same pool, timeouts and retries), and uploads use sagestore's default
part size and parts in flight. Only the client is taken from it: the transfers below are
written out here, so none of sagestore's policy (memory budget, transfer slots) is in them.

Routes (the S3 bucket is part of the path):
- PUT /relay/{bucket}/{key}: the body, piece by piece as received, copied once into part
  buffers; a body up to one part is one PutObject, a longer one a multipart upload with at most
  parts_in_flight parts sending while the next one fills. Each part goes out as 256 KiB views
  of its buffer (a bytes or bytearray Body costs botocore and the transport one to three more
  copies of the part). 201 {"size": n}.
- GET /relay/{bucket}/{key}: the object streamed back in 256 KiB writes (sagestore's download
  write size); a Range header is passed on.
- GET /small/{bucket}/{key}: the whole object read, then answered in one response (the
  reference for sagestore's small GET).
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
from typing import Any, AsyncIterator, Iterator

from aiohttp import web
from botocore.exceptions import ClientError

from sagestore.config import Settings
from sagestore.storage import open_object_store
from sagestore.storage.s3 import crc32c_b64

STORE: web.AppKey[Any] = web.AppKey("store")
WRITE_CHUNK = 256 * 1024  # sagestore's download write size
SEND_PIECE = 256 * 1024
DEFAULTS = Settings()  # sagestore's defaults: the part size and parts in flight of every streamed upload


async def s3_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_object_store(
            endpoint=os.environ["BARE_S3_ENDPOINT"], access_key=os.environ["BARE_S3_ACCESS_KEY"],
            secret_key=os.environ["BARE_S3_SECRET_KEY"], region=DEFAULTS.s3_region,
            part_size=DEFAULTS.s3_part_size, parts_in_flight=DEFAULTS.s3_parts_in_flight,
            sign_payload=DEFAULTS.s3_sign_payload, connect_timeout=DEFAULTS.s3_connect_timeout,
            read_timeout=DEFAULTS.s3_read_timeout, max_attempts=DEFAULTS.s3_max_attempts) as store:
        app[STORE] = store.client
        yield


class PartPieces:
    """A filled part buffer as both libraries take it without a copy: to botocore a sized file-like
    Body (it never reads an unsigned payload; it only seeks and tells), to aiohttp an async iterable
    of views of the buffer. aiohttp calls __aiter__ once per request, so a retry starts over."""

    def __init__(self, buffer: bytearray, size: int) -> None:
        self.buffer, self.size = buffer, size

    def read(self, *_: Any) -> bytes:
        raise io.UnsupportedOperation("sent as an async iterable")

    def seek(self, *_: Any) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def __len__(self) -> int:
        return self.size

    def views(self) -> Iterator[memoryview]:
        view = memoryview(self.buffer)[:self.size]
        return (view[start:start + SEND_PIECE] for start in range(0, self.size, SEND_PIECE))

    async def __aiter__(self) -> AsyncIterator[memoryview]:
        for piece in self.views():
            yield piece


async def relay_put(request: web.Request) -> web.Response:
    s3 = request.app[STORE]
    bucket, key = request.match_info["bucket"], request.match_info["key"]
    part_size, in_flight = DEFAULTS.s3_part_size, DEFAULTS.s3_parts_in_flight
    upload_id: str | None = None
    parts: list[dict[str, Any]] = []
    sending: set[asyncio.Task] = set()
    part, filled, total, numbered = bytearray(part_size), 0, 0, 0

    async def send(number: int, body: PartPieces, crc: str) -> None:
        answer = await s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
                                      ContentLength=body.size, ChecksumCRC32C=crc)
        parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumCRC32C": crc})

    async def dispatch(body: PartPieces) -> None:
        nonlocal upload_id, numbered
        if upload_id is None:
            created = await s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32C")
            upload_id = created["UploadId"]
        numbered += 1
        sending.add(asyncio.create_task(send(numbered, body, crc32c_b64(memoryview(body.buffer)[:body.size]))))
        while len(sending) >= in_flight:  # a free slot before the next part buffer exists
            done, _ = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
            sending.difference_update(done)
            for task in done:
                task.result()

    try:
        content = request.content
        while True:
            piece, _ = await content.readchunk()
            if not piece:
                if content.at_eof():
                    break
                continue
            total += len(piece)
            view = memoryview(piece)
            while view:
                take = min(len(view), part_size - filled)
                part[filled:filled + take] = view[:take]
                filled += take
                view = view[take:]
                if filled == part_size:
                    await dispatch(PartPieces(part, filled))
                    part, filled = bytearray(part_size), 0
        if upload_id is None:  # one part or less: one PutObject
            await s3.put_object(Bucket=bucket, Key=key, Body=PartPieces(part, filled), ContentLength=filled,
                                ChecksumCRC32C=crc32c_b64(memoryview(part)[:filled]))
        else:
            if filled:
                await dispatch(PartPieces(part, filled))
            await asyncio.gather(*sending)
            sending.clear()
            parts.sort(key=lambda entry: entry["PartNumber"])
            await s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                               MultipartUpload={"Parts": parts})
            upload_id = None
    finally:
        for task in sending:
            task.cancel()
        await asyncio.gather(*sending, return_exceptions=True)
        if upload_id is not None:
            with contextlib.suppress(Exception):
                await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    return web.json_response({"size": total}, status=201)


async def relay_get(request: web.Request) -> web.StreamResponse:
    ranged = {"Range": request.headers["Range"]} if "Range" in request.headers else {}
    try:
        answer = await request.app[STORE].get_object(Bucket=request.match_info["bucket"],
                                                     Key=request.match_info["key"], **ranged)
    except ClientError as error:
        raise web.HTTPNotFound(text=str(error)) from None
    response = web.StreamResponse(status=206 if answer.get("ContentRange") else 200)
    response.content_length = answer["ContentLength"]
    response.content_type = "application/octet-stream"
    await response.prepare(request)
    async with answer["Body"] as body:
        async for chunk in body.iter_chunks(WRITE_CHUNK):
            await response.write(chunk)
    await response.write_eof()
    return response


async def small_get(request: web.Request) -> web.Response:
    try:
        answer = await request.app[STORE].get_object(Bucket=request.match_info["bucket"],
                                                     Key=request.match_info["key"])
    except ClientError as error:
        raise web.HTTPNotFound(text=str(error)) from None
    async with answer["Body"] as body:
        data = await body.read()
    return web.Response(body=data, content_type="application/octet-stream")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(s3_ctx)
    app.router.add_put("/relay/{bucket}/{key:.+}", relay_put)
    app.router.add_get("/relay/{bucket}/{key:.+}", relay_get)
    app.router.add_get("/small/{bucket}/{key:.+}", small_get)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    web.run_app(build_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
