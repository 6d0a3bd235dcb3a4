"""Empty, one-byte and truncated bodies never freeze the server, at any door: aiohttp hands every
empty request the same shared body reader, which once used answers readchunk() without awaiting; a
reader loop that does not stop on it spins the event loop forever (three empty PUTs froze a real
server, /healthz included). Every body-carrying route is sent each body with every Content-Type the
doors accept, several times on one connection and on new ones; /healthz must answer within a second
after each, and no answer is a 5xx."""
from __future__ import annotations

import base64
import http.client
import socket
import time
import uuid

import pytest
import requests
from support.server import ServerProcess
from support.data import auth, create_bucket_row

ALICE = auth("alice")
EDITOR = {**auth("ed", ("service.file.editors",)), "Data-Partition-Id": "default-partition"}
TUS = {"Tus-Resumable": "1.0.0"}
CONTENT_TYPES = [None, "application/octet-stream", "application/offset+octet-stream", "application/partial-upload",
                 "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
                 "application/json"]
BODIES = {"empty": b"", "one byte": b"x"}
SENDS_ON_ONE_CONNECTION = 3
SENDS_ON_NEW_CONNECTIONS = 2


@pytest.fixture(scope="module")
def server(base_settings):
    server = ServerProcess(base_settings).start()
    yield server
    server.stop()
    assert "Traceback" not in server.output, server.output[-3000:]


def healthy_within_a_second(url: str) -> None:
    started = time.monotonic()
    assert requests.get(url + "/healthz", timeout=1).status_code == 200
    assert time.monotonic() - started < 1


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Doors:
    """Each door's next request target: (method, path, headers), with a fresh upload, link or URL
    where a door takes one body per target."""

    def __init__(self, server, bucket: str) -> None:
        self.server, self.bucket = server, bucket

    def post(self, path: str, **kwargs) -> requests.Response:
        response = requests.post(self.server.url + path, timeout=30, **kwargs)
        assert response.status_code in (200, 201), response.text
        return response

    def raw_put(self):
        return "PUT", f"/api/v1/objects/{self.bucket}/empty/{uuid.uuid4().hex}", ALICE

    def signed_put(self):
        link = self.post("/api/v1/shares", headers=ALICE, json={
            "bucket_id": self.bucket, "key": f"link-{uuid.uuid4().hex}", "method": "PUT"}).json()["url"]
        return "PUT", "/api/" + link.split("/api/", 1)[1], {}

    def osdu_upload_url(self):
        response = requests.get(self.server.url + "/api/file/v2/files/uploadURL", headers=EDITOR, timeout=30)
        assert response.status_code == 200, response.text
        return "PUT", "/api/" + response.json()["Location"]["SignedURL"].split("/api/", 1)[1], {}

    def multipart_part(self):
        upload = self.post("/api/v1/multipart/", headers=ALICE, json={
            "object_type": "file", "object_id": self.bucket, "key": f"mp-{uuid.uuid4().hex}"}).json()["upload_id"]
        return "PUT", f"/api/v1/multipart/{upload}/parts/1", ALICE

    def offset_first_chunk(self):
        return "PUT", f"/api/v1/upload?bucket_id={self.bucket}&key=offset-{uuid.uuid4().hex}", ALICE

    def offset_next_chunk(self):
        response = requests.put(f"{self.server.url}/api/v1/upload?bucket_id={self.bucket}&key=o-{uuid.uuid4().hex}",
                                data=b"", headers=ALICE, timeout=30)
        assert response.status_code == 201, response.text
        return "PUT", f"/api/v1/upload?upload_id={response.json()['upload_id']}&offset=0", ALICE

    def session_chunk(self):
        session = self.post("/api/v1/attachment/initiate", headers=ALICE, json={
            "bucket_id": self.bucket, "fileName": f"s-{uuid.uuid4().hex}.bin", "fileSize": 1}).json()["sessionId"]
        return "PUT", f"/api/v1/attachment/session/{session}/upload/1", ALICE

    def tus_creation_with_upload(self):
        return "POST", "/api/v1/tus/", {**ALICE, **TUS, "Upload-Length": "100", "Upload-Metadata":
                                        f"bucket {b64(self.bucket)},key {b64('tus-' + uuid.uuid4().hex)}"}

    def _tus_upload(self) -> str:
        return self.post("/api/v1/tus/", headers={**ALICE, **TUS, "Upload-Length": "100", "Upload-Metadata":
                                                  f"bucket {b64(self.bucket)},key {b64('t-' + uuid.uuid4().hex)}"}
                         ).headers["Location"]

    def tus_patch(self):
        return "PATCH", self._tus_upload(), {**ALICE, **TUS, "Upload-Offset": "0"}

    def tus_patch_by_override(self):
        return "POST", self._tus_upload(), {**ALICE, **TUS, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}

    def ietf_creation(self):
        return "POST", f"/api/v1/uploads/?bucket={self.bucket}&key=ietf-{uuid.uuid4().hex}", \
            {**ALICE, "Upload-Complete": "?0"}

    def ietf_append(self):
        location = self.post(f"/api/v1/uploads/?bucket={self.bucket}&key=i-{uuid.uuid4().hex}",
                             headers={**ALICE, "Upload-Complete": "?0"}).headers["Location"]
        return "PATCH", location, {**ALICE, "Upload-Offset": "0", "Upload-Complete": "?0"}


DOORS = ["raw_put", "signed_put", "osdu_upload_url", "multipart_part", "offset_first_chunk", "offset_next_chunk",
         "session_chunk", "tus_creation_with_upload", "tus_patch", "tus_patch_by_override", "ietf_creation",
         "ietf_append"]


def send(connection: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str],
         body: bytes) -> int:
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status


def send_truncated(server, method: str, path: str, headers: dict[str, str]) -> bytes:
    """Declare 10 bytes, send 3, stop sending: the answer (or the close) must come, not a hang."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in {**headers, "Content-Length": "10"}.items())
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: sagestore\r\n{lines}\r\n".encode() + b"abc")
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("door", DOORS)
def test_empty_one_byte_and_truncated_bodies_at_every_door(server, database_url, door):
    doors = Doors(server, create_bucket_row(database_url))
    target = getattr(doors, door)
    for content_type in CONTENT_TYPES:
        extra = {"Content-Type": content_type} if content_type else {}
        for name, body in BODIES.items():
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
            try:
                for _ in range(SENDS_ON_ONE_CONNECTION):
                    method, path, headers = target()
                    status = send(connection, method, path, {**headers, **extra}, body)
                    assert status < 500, (door, content_type, name, status)
                    healthy_within_a_second(server.url)
            finally:
                connection.close()
            for _ in range(SENDS_ON_NEW_CONNECTIONS):
                method, path, headers = target()
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
                try:
                    status = send(connection, method, path, {**headers, **extra}, body)
                finally:
                    connection.close()
                assert status < 500, (door, content_type, name, status)
                healthy_within_a_second(server.url)
        method, path, headers = target()
        answer = send_truncated(server, method, path, {**headers, **extra})
        assert not answer.startswith(b"HTTP/1.1 5"), (door, content_type, answer[:300])
        healthy_within_a_second(server.url)


@pytest.mark.parametrize("content_type", ["application/octet-stream", None])
def test_empty_raw_puts_on_one_connection_and_on_new_ones(server, database_url, content_type):
    bucket = create_bucket_row(database_url)
    headers = {**ALICE, **({"Content-Type": content_type} if content_type else {})}
    with requests.Session() as session:
        for attempt in range(3):
            answer = session.put(f"{server.url}/api/v1/objects/{bucket}/empty-{attempt}", data=b"",
                                 headers=headers, timeout=10)
            assert answer.status_code == 200, answer.text
            healthy_within_a_second(server.url)
    for attempt in range(3):
        answer = requests.put(f"{server.url}/api/v1/objects/{bucket}/fresh-{attempt}", data=b"", headers=headers,
                              timeout=10)
        assert answer.status_code == 200, answer.text
        healthy_within_a_second(server.url)
    got = requests.get(f"{server.url}/api/v1/objects/{bucket}/empty-2", headers=ALICE, timeout=10)
    assert got.status_code == 200 and got.content == b""
