"""Hostile and malformed requests against a real `sagestore serve` process: each gets a 4xx
JSON error, never a 500 with a traceback, and bodies are read only after authentication."""
from __future__ import annotations

import base64
import json
import socket
import time
import uuid

import pytest
import requests
from support.data import create_bucket_row

ALICE = {"Authorization": "sage user:alice"}
TUS = {"Tus-Resumable": "1.0.0"}


def raw(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as they are (requests would refuse or re-encode them); (status, whole answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def assert_json_4xx(status: int, answer: bytes | str) -> None:
    text = answer.decode(errors="replace") if isinstance(answer, bytes) else answer
    assert 400 <= status < 500, text[:500]
    body = text.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in text else text
    assert "error" in json.loads(body), text[:500]


@pytest.fixture(scope="module")
def hostile_server(base_settings):
    from support.server import ServerProcess
    server = ServerProcess(base_settings).start()
    yield server
    server.stop()
    assert "Traceback" not in server.output, server.output[-3000:]


def test_anonymous_and_malformed_requests_get_4xx_json(hostile_server, database_url):
    server = hostile_server
    url = server.url
    bucket = create_bucket_row(database_url, owner="alice")
    huge = "9" * 5000

    # 5000-digit offsets and lengths (int() refuses more than 4300 digits)
    for headers in ({}, ALICE):
        response = requests.put(f"{url}/api/v1/upload?upload_id={uuid.uuid4()}&offset={huge}", data=b"x",
                                headers=headers)
        assert_json_4xx(response.status_code, response.text)
        response = requests.post(f"{url}/api/v1/tus/", headers={**TUS, **headers, "Upload-Length": huge})
        assert_json_4xx(response.status_code, response.text)
        response = requests.patch(f"{url}/api/v1/tus/{uuid.uuid4()}", data=b"x", headers={
            **TUS, **headers, "Upload-Offset": huge, "Content-Type": "application/offset+octet-stream"})
        assert_json_4xx(response.status_code, response.text)
        response = requests.put(f"{url}/api/v1/multipart/{uuid.uuid4()}/parts/{huge}", data=b"x", headers=headers)
        assert_json_4xx(response.status_code, response.text)
        response = requests.patch(f"{url}/api/v1/uploads/{uuid.uuid4()}", data=b"x", headers={
            **headers, "Upload-Offset": huge, "Upload-Complete": "?0", "Upload-Draft-Interop-Version": "6",
            "Content-Type": "application/partial-upload"})
        assert_json_4xx(response.status_code, response.text)

    # JSON nested 200 000 deep: anonymous is refused before the body is read; a user gets 400
    deep = b"[" * 200_000 + b"]" * 200_000
    for path in ("/api/v1/import_upload", "/api/v1/multipart/", "/api/v1/multipart/complete/"):
        response = requests.post(url + path, data=deep, headers={"Content-Type": "application/json"})
        assert response.status_code == 401, response.text[:300]
        response = requests.post(url + path, data=deep, headers={**ALICE, "Content-Type": "application/json"})
        assert_json_4xx(response.status_code, response.text)
    shallow_but_deep = json.dumps({"parts": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{}]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]})
    response = requests.post(url + "/api/v1/multipart/complete/", data=shallow_but_deep, headers=ALICE)
    assert response.status_code == 400 and "nested" in response.json()["error"]

    # invalid UTF-8 in Upload-Metadata, raw in the header or inside the base64
    bad_base64 = base64.b64encode(b"\xff\xfe.bin").decode()
    for auth_line in (b"", b"Authorization: sage user:alice\r\n"):
        nul = base64.b64encode(b"a\x00b.bin").decode()
        for metadata in (f"bucket {base64.b64encode(bucket.encode()).decode()},filename {bad_base64}".encode(),
                         f"bucket {base64.b64encode(bucket.encode()).decode()},key a.bin,x {nul}".encode(),
                         f"bucket {base64.b64encode(bucket.encode()).decode()},key a.bin,filetype {nul}".encode(),
                         b"bucket " + base64.b64encode(bucket.encode()) + b",key \xff\xfe\xfd, filename \xc3\x28"):
            status, answer = raw(server.port, b"POST /api/v1/tus/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                                 b"Upload-Length: 5\r\n" + auth_line + b"Upload-Metadata: " + metadata +
                                 b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            assert_json_4xx(status, metadata + b"\n" + answer)
        # a control character in a file name is dropped by the sanitiser (no 500 either way)
        status, answer = raw(server.port, b"POST /api/v1/tus/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                             b"Upload-Length: 5\r\n" + auth_line + b"Upload-Metadata: bucket " +
                             base64.b64encode(bucket.encode()) + b",filename " + nul.encode() +
                             b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        assert status in (201, 401), answer
        for version in ("3", "6"):  # IETF: the file name comes from Content-Disposition
            status, answer = raw(server.port, b"POST /api/v1/uploads/?bucket=" + bucket.encode() +
                                 b" HTTP/1.1\r\nHost: x\r\nUpload-Draft-Interop-Version: " + version.encode() +
                                 b"\r\nUpload-Complete: ?0\r\n" + auth_line +
                                 b"Content-Disposition: attachment; filename=\"\xff\xfe.bin\"\r\n"
                                 b"Connection: close\r\nContent-Length: 0\r\n\r\n")
            assert_json_4xx(status, answer)

    # a multipart part header longer than 8190 bytes
    boundary = "b" + uuid.uuid4().hex
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
            f"X-Padding: {'p' * 9000}\r\n\r\nhello\r\n--{boundary}--\r\n").encode()
    for headers in ({}, ALICE):
        response = requests.put(f"{url}/api/v1/objects/{bucket}/a.bin", data=form,
                                headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert_json_4xx(response.status_code, response.text)
    assert requests.get(f"{url}/api/v1/objects/{bucket}/a.bin", headers=ALICE).status_code == 404
    assert " 500 " not in server.output and "Traceback" not in server.output, server.output[-3000:]


def test_control_characters_cannot_forge_log_lines(hostile_server):
    server = hostile_server
    forged = "FORGED-" + uuid.uuid4().hex
    for path in (f"/nowhere%0d%0a2026-01-01%2000:00:00,000%20INFO%20aiohttp.access:%20{forged}",
                 f"/api/v1/objects/x%0a{forged}%E2%80%AEgpj.exe", f"/%1b[2J{forged}%c2%85{forged}%e2%80%a8{forged}"):
        raw(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    deadline = time.monotonic() + 10
    while server.output.count(forged) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in server.output.splitlines() if forged in line]
    assert len(lines) == 3, server.output[-2000:]  # one access-log line per request, nothing split off
    for line in lines:
        assert not line.startswith(forged) and not line.startswith("2026-01-01"), line
        assert '"GET /' in line or "user=" in line, line
        assert not any(char in line for char in "\r\x0b\x1b\x85\u2028\u202e"), repr(line)
