"""tus checksum-trailer: Upload-Checksum sent in the trailer section of a chunked PATCH, over raw
sockets (no HTTP client library sends request trailers), on the test server and on a real
`sagestore serve` process. The trailer is verified after the body: a mismatch is 460 and keeps
nothing, a missing or malformed trailer is 400 and keeps nothing."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os

import pytest
import requests
from test_tus_protocol import create, head
from support.tus import metadata, stored
from support.data import MiB, make_bucket

from sagestore.app import create_app
from sagestore.uploads.checksums import MultiDigest


def b64(algorithm: str, data: bytes) -> str:
    digest = MultiDigest([algorithm])
    digest.update(data)
    return digest.b64(algorithm)


def chunked_patch(path: str, offset: int, body: bytes, trailers: dict[str, str], *, user: str = "alice",
                  announce: str | None = "Upload-Checksum", piece: int = 1 * MiB, **headers: str) -> bytes:
    """A PATCH with a chunked body cut into `piece`-sized chunks, ending in the given trailers."""
    head_lines = [f"PATCH {path} HTTP/1.1", "Host: sagestore", "Tus-Resumable: 1.0.0",
                  f"Authorization: sage user:{user}", "Content-Type: application/offset+octet-stream",
                  f"Upload-Offset: {offset}", "Transfer-Encoding: chunked"]
    if announce:
        head_lines.append(f"Trailer: {announce}")
    head_lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    request = bytearray(("\r\n".join(head_lines) + "\r\n\r\n").encode())
    for start in range(0, len(body), piece):
        part = body[start:start + piece]
        request += b"%x\r\n" % len(part) + part + b"\r\n"
    request += b"0\r\n" + "".join(f"{name}: {value}\r\n" for name, value in trailers.items()).encode() + b"\r\n"
    return bytes(request)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def exchange(host: str, port: int, *requests_: bytes, pipelined: bool = False) -> list[tuple[int, dict, bytes]]:
    """Send the requests on one keep-alive connection (all at once when pipelined) and read the answers."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        answers = []
        if pipelined:
            writer.write(b"".join(requests_))
            await writer.drain()
            for _ in requests_:
                answers.append(await read_response(reader))
        else:
            for request in requests_:
                writer.write(request)
                await writer.drain()
                answers.append(await read_response(reader))
        return answers
    finally:
        writer.close()


async def test_checksum_trailer_is_advertised(client):
    response = await client.options("/api/v1/tus/")
    assert "checksum-trailer" in response.headers["Tus-Extension"].split(",")


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256", "crc32", "crc32c"])
async def test_a_good_trailer_checksum_is_accepted(client, algorithm):
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(3 * MiB + 17)
    url = await create(client, bucket_id, len(data), key=f"trailer/{algorithm}")
    [(status, headers, body)] = await exchange(client.server.host, client.server.port, chunked_patch(
        url, 0, data, {"Upload-Checksum": f"{algorithm} {b64(algorithm, data)}"}))
    assert status == 204, body
    assert headers["upload-offset"] == str(len(data))
    assert await stored(app, bucket_id, f"trailer/{algorithm}") == data


async def test_a_wrong_trailer_checksum_is_460_and_keeps_nothing(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    first, second = os.urandom(6 * MiB), os.urandom(6 * MiB)  # each spans a 5 MiB part boundary
    url = await create(client, bucket_id, len(first) + len(second), key="trailer/mismatch")
    host, port = client.server.host, client.server.port
    [(status, headers, _)] = await exchange(host, port, chunked_patch(
        url, 0, first, {"Upload-Checksum": f"sha256 {b64('sha256', first)}"}))
    assert status == 204 and headers["upload-offset"] == str(len(first))
    wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    [(status, headers, body)] = await exchange(host, port, chunked_patch(
        url, len(first), second, {"Upload-Checksum": f"sha256 {wrong}"}))
    assert status == 460 and headers["tus-resumable"] == "1.0.0"
    assert "checksum" in json.loads(body)["error"]
    assert (await head(client, url)).headers["Upload-Offset"] == str(len(first))
    # the same bytes with the right trailer go in, and the object is exactly first + second
    [(status, headers, _)] = await exchange(host, port, chunked_patch(
        url, len(first), second, {"Upload-Checksum": f"sha1 {b64('sha1', second)}"}))
    assert status == 204 and headers["upload-offset"] == str(len(first) + len(second))
    assert await stored(app, bucket_id, "trailer/mismatch") == first + second


@pytest.mark.parametrize("case, request_options, message", [
    ("announced but missing", {"trailers": {}}, "did not arrive"),
    ("another trailer only", {"trailers": {"X-Other": "1"}}, "did not arrive"),
    ("unsupported algorithm", {"trailers": {"Upload-Checksum": "whirlpool AAAA"}}, "unsupported"),
    ("malformed value", {"trailers": {"Upload-Checksum": "sha1"}}, "Upload-Checksum"),
    ("header and trailer", {"trailers": {"Upload-Checksum": "sha1 AAAA"}, "Upload_Checksum": "sha1 AAAA"},
     "not both"),
])
async def test_bad_trailers_are_400_and_keep_nothing(client, case, request_options, message):
    bucket_id = await make_bucket(client.server.app)
    url = await create(client, bucket_id, 100, key="trailer/bad")
    options = dict(request_options)
    trailers = options.pop("trailers")
    [(status, headers, body)] = await exchange(client.server.host, client.server.port,
                                              chunked_patch(url, 0, b"x" * 10, trailers, **options))
    assert status == 400, (case, body)
    assert message in json.loads(body)["error"]
    assert headers["tus-resumable"] == "1.0.0"
    assert (await head(client, url)).headers["Upload-Offset"] == "0"


async def test_a_trailer_needs_a_chunked_body(client):
    bucket_id = await make_bucket(client.server.app)
    url = await create(client, bucket_id, 100, key="trailer/length")
    response = await client.patch(url, data=b"x" * 10, headers={
        "Tus-Resumable": "1.0.0", "Authorization": "sage user:alice", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream", "Trailer": "Upload-Checksum"})
    assert response.status == 400
    assert "chunked" in (await response.json())["error"]
    assert (await head(client, url)).headers["Upload-Offset"] == "0"


async def test_trailers_are_paired_with_their_own_request_on_a_keep_alive_connection(client):
    """Four PATCHes on one connection, sent one by one and then pipelined: each is judged by its
    own trailer (a good one, a wrong one, a request without trailers, a good one again)."""
    app = client.server.app
    bucket_id = await make_bucket(app)
    pieces = [os.urandom(100_000) for _ in range(3)]
    for pipelined in (False, True):
        key = f"trailer/keepalive-{pipelined}"
        url = await create(client, bucket_id, sum(map(len, pieces)), key=key)
        wrong = b64("crc32c", b"not this")
        answers = await exchange(client.server.host, client.server.port,
                                 chunked_patch(url, 0, pieces[0], {"Upload-Checksum": f"crc32c {b64('crc32c', pieces[0])}"}),
                                 chunked_patch(url, 100_000, pieces[1], {"Upload-Checksum": f"crc32c {wrong}"}),
                                 chunked_patch(url, 100_000, pieces[1], {}, announce=None),
                                 chunked_patch(url, 200_000, pieces[2], {"Upload-Checksum": f"md5 {b64('md5', pieces[2])}"}),
                                 pipelined=pipelined)
        assert [status for status, _, _ in answers] == [204, 460, 204, 204], answers
        assert [headers.get("upload-offset") for status, headers, _ in answers if status == 204] == \
            ["100000", "200000", "300000"]
        assert await stored(app, bucket_id, key) == b"".join(pieces)


def test_checksum_trailer_through_sagestore_serve(server_process, base_settings):
    """The real server process (its Runner) reads trailers too: one good and one wrong trailer."""
    server = server_process()
    headers = {"Authorization": "sage user:alice", "Tus-Resumable": "1.0.0"}
    bucket = requests.post(f"{server.url}/api/v1/objects?type=model&name=trailers", headers=headers, timeout=30)
    assert bucket.status_code == 200, bucket.text
    bucket_id = bucket.json()["id"]
    data = os.urandom(2 * MiB)
    response = requests.post(f"{server.url}/api/v1/tus/", timeout=30, headers={
        **headers, "Upload-Length": str(len(data)), "Upload-Metadata": metadata(bucket=bucket_id, key="t.bin")})
    assert response.status_code == 201, response.text
    path = response.headers["Location"]
    port = int(server.url.rsplit(":", 1)[1])
    wrong, right = b64("sha1", b"nope"), b64("sha1", data)
    answers = asyncio.run(exchange("127.0.0.1", port,
                                   chunked_patch(path, 0, data, {"Upload-Checksum": f"sha1 {wrong}"}),
                                   chunked_patch(path, 0, data, {"Upload-Checksum": f"sha1 {right}"})))
    assert [status for status, _, _ in answers] == [460, 204]
    assert answers[1][1]["upload-offset"] == str(len(data))
    download = requests.get(f"{server.url}/api/v1/objects/{bucket_id}/t.bin", headers=headers, timeout=30)
    assert download.status_code == 200 and download.content == data


async def test_a_server_that_cannot_read_trailers_neither_advertises_nor_accepts_them(aiohttp_client, settings):
    """Served by a plain aiohttp runner (C parser): no checksum-trailer in OPTIONS, 400 for a trailer."""
    plain = await aiohttp_client(create_app(settings))
    response = await plain.options("/api/v1/tus/")
    extensions = response.headers["Tus-Extension"].split(",")
    assert "checksum" in extensions and "checksum-trailer" not in extensions
    bucket_id = await make_bucket(plain.server.app)
    url = await create(plain, bucket_id, 100, key="trailer/plain")
    [(status, _, body)] = await exchange(plain.server.host, plain.server.port, chunked_patch(
        url, 0, b"x" * 10, {"Upload-Checksum": f"sha1 {b64('sha1', b'x' * 10)}"}))
    assert status == 400 and "cannot read request trailers" in json.loads(body)["error"]
    assert (await head(plain, url)).headers["Upload-Offset"] == "0"


def test_sagestore_serve_with_request_trailers_off_uses_the_c_parser(server_process):
    """SAGESTORE_REQUEST_TRAILERS=false: the faster C parser, so no checksum-trailer in OPTIONS and
    a PATCH announcing the trailer is 400 (nothing kept); plain checksums still work."""
    server = server_process(request_trailers=False)
    headers = {"Authorization": "sage user:alice", "Tus-Resumable": "1.0.0"}
    extensions = requests.options(f"{server.url}/api/v1/tus/", timeout=30).headers["Tus-Extension"].split(",")
    assert "checksum" in extensions and "checksum-trailer" not in extensions
    bucket_id = requests.post(f"{server.url}/api/v1/objects?type=model&name=c", headers=headers, timeout=30).json()["id"]
    response = requests.post(f"{server.url}/api/v1/tus/", timeout=30, headers={
        **headers, "Upload-Length": "10", "Upload-Metadata": metadata(bucket=bucket_id, key="c.bin")})
    path = response.headers["Location"]
    port = int(server.url.rsplit(":", 1)[1])
    [(status, _, body)] = asyncio.run(exchange("127.0.0.1", port, chunked_patch(
        path, 0, b"0123456789", {"Upload-Checksum": f"sha1 {b64('sha1', b'0123456789')}"})))
    assert status == 400 and "cannot read request trailers" in json.loads(body)["error"]
    response = requests.patch(f"{server.url}{path}", data=b"0123456789", timeout=30, headers={
        **headers, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0",
        "Upload-Checksum": f"sha1 {b64('sha1', b'0123456789')}"})
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "10"
