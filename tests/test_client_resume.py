"""Resumable client transfers against a real server process: the CLI killed with -9 in the middle
of a 200 MiB upload and of a 200 MiB download, then rerun (what the server received and sent in
total is counted server-side, in /metrics); a changed local file is never resumed into the old
upload; retries through a test TCP proxy that resets a connection once, or answers 503 once."""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import threading
import time

import pytest
import requests
from support.client import MiB

from sagestore.client import BadRequest, Client, TransferConfig


SIZE = 200 * MiB
CHUNK = 5 * MiB  # the test server's part size, so the sessions' chunk size
IN_FLIGHT = 4


def wait_for(check, timeout: float = 300, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting")


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.bin"
    with open(path, "wb") as handle:
        for _ in range(SIZE // (8 * MiB)):
            handle.write(os.urandom(8 * MiB))
    return path


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def test_upload_killed_with_sigkill_resumes_sending_only_missing_chunks(served, big_file):
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
        target = f"sage://{bucket_id}/big.bin"
        before = served.metric("sagestore_session_received_bytes_total")
        process = served.popen("cp", "--concurrency", str(IN_FLIGHT), str(big_file), target)

        def some_chunks_stored():
            uploads = alice.list_uploads(bucket_id, "big.bin")
            return uploads and len(uploads[0]["receivedChunks"]) >= 8 and uploads[0]
        partial = wait_for(some_chunks_stored)
        process.send_signal(signal.SIGKILL)
        assert process.wait(60) == -signal.SIGKILL
        killed_at = served.metric("sagestore_session_received_bytes_total")
        stored = alice.list_uploads(bucket_id, "big.bin")[0]
        assert stored["sessionId"] == partial["sessionId"] and len(stored["receivedChunks"]) < SIZE // CHUNK
        assert killed_at - before < SIZE
        rerun = served.cli("cp", "--json", "--concurrency", str(IN_FLIGHT), str(big_file), target)
        assert rerun.returncode == 0, rerun.stderr
        [record] = [json.loads(line) for line in rerun.stdout.splitlines()]
        # the chunks the server had hashed (one finishing as the client died may have been hashed after
        # our look); chunks parked beyond them, unhashed, are sent again, and count in the bound below
        assert stored["bytesHashed"] > 0 and stored["sha256SoFar"]
        assert record["resumed"] >= stored["bytesHashed"] and record["resumed"] % CHUNK == 0
        total = served.metric("sagestore_session_received_bytes_total") - before
        # resent at most what was in flight when the client died, plus one chunk
        assert SIZE <= total <= SIZE + (IN_FLIGHT + 1) * CHUNK, (total - SIZE) / CHUNK
        assert alice.stat(bucket_id, "big.bin").sha256 == file_sha256(big_file)
        assert alice.list_uploads(bucket_id, "big.bin") == []


def test_download_killed_with_sigkill_resumes_from_the_part_file(served, big_file, tmp_path):
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
        alice.upload_file(bucket_id, "big.bin", big_file)
    target = tmp_path / "big.bin"
    state = tmp_path / "big.bin.part.json"
    args = ["cp", "--concurrency", "2", "--chunk-size", "5MiB", f"sage://{bucket_id}/big.bin", str(target)]
    before = served.metric("file_download_byte_size_total")
    process = served.popen(*args)

    def ranges_done():
        try:
            return len(json.loads(state.read_text())["done"]) >= 8
        except (OSError, ValueError):
            return False
    wait_for(ranges_done)
    process.send_signal(signal.SIGKILL)
    assert process.wait(60) == -signal.SIGKILL
    assert not target.exists() and (tmp_path / "big.bin.part").exists()
    done = len(json.loads(state.read_text())["done"])
    rerun = served.cli(*args, "--json")
    assert rerun.returncode == 0, rerun.stderr
    record = json.loads(rerun.stdout)
    assert record["verified"] and record["resumed"] >= done * CHUNK
    total = served.metric("file_download_byte_size_total") - before
    assert SIZE <= total <= SIZE + (2 + 1) * CHUNK, (total - SIZE) / CHUNK
    assert file_sha256(target) == file_sha256(big_file)
    assert not (tmp_path / "big.bin.part").exists() and not state.exists()


def test_a_changed_local_file_never_completes_the_old_upload(served, tmp_path):
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
    old = os.urandom(4 * CHUNK)  # above the 16 MiB threshold: a session upload
    headers = {"Authorization": f"Bearer {served.token('alice')}"}
    session = requests.post(served.url + "/api/v1/attachment/initiate", headers=headers, timeout=30, json={
        "bucket_id": bucket_id, "key": "m.bin", "fileName": "m.bin", "fileSize": len(old),
        "sha256": hashlib.sha256(old).hexdigest()}).json()
    response = requests.put(served.url + session["uploadUrl"].replace("{chunkId}", "1"), data=old[:CHUNK],
                            headers=headers, timeout=60)
    assert response.status_code == 200
    new = bytearray(old)
    new[-1] ^= 0xFF  # same size, one byte changed
    (tmp_path / "m.bin").write_bytes(bytes(new))
    result = served.cli("cp", "--json", str(tmp_path / "m.bin"), f"sage://{bucket_id}/m.bin")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["resumed"] == 0 and record["sha256"] == hashlib.sha256(new).hexdigest()
    # the old session was aborted, not completed; the object is the new content
    status = requests.get(f"{served.url}/api/v1/attachment/session/{session['sessionId']}", headers=headers,
                          timeout=30)
    assert status.status_code == 404
    got = requests.get(f"{served.url}/api/v1/objects/{bucket_id}/m.bin", headers=headers, timeout=60)
    assert got.content == bytes(new)


class FlakyProxy:
    """A TCP proxy to the server. `first` decides what happens to the first `times` connections:
    'reset' reads some of the request and resets the connection (RST), '503' answers 503 with
    Retry-After: 1, '400' answers 400 every time; later connections are forwarded."""

    def __init__(self, upstream_port: int, first: str, times: int = 1) -> None:
        self.upstream_port, self.first, self.times = upstream_port, first, times
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(connection, self.connections), daemon=True).start()

    def _handle(self, connection: socket.socket, number: int) -> None:
        if self.first == "400" or number <= self.times:
            connection.recv(65536)
            if self.first == "reset":
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            else:
                status = "503 Service Unavailable" if self.first == "503" else "400 Bad Request"
                body = b'{"error": "proxy says no"}'
                connection.sendall(f"HTTP/1.1 {status}\r\nConnection: close\r\nRetry-After: 1\r\n"
                                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            connection.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))

        def pump(source: socket.socket, sink: socket.socket) -> None:
            try:
                while data := source.recv(1 << 16):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                for each in (source, sink):
                    try:
                        each.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        threading.Thread(target=pump, args=(upstream, connection), daemon=True).start()
        pump(connection, upstream)

    def close(self) -> None:
        self.listener.close()


def test_a_rerun_continues_only_the_session_whose_hashed_prefix_is_the_files(served, tmp_path):
    """Sessions started with verifySha256 (as the client starts them), then left: a rerun continues
    one only when the sha256 of the local file's first bytesHashed bytes is the server's
    sha256SoFar, and sends what comes after; a file changed inside the prefix gets a new session
    and the old one is aborted. A session with every chunk in (the last one short) completes
    without sending anything."""
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
    headers = {"Authorization": f"Bearer {served.token('alice')}"}
    old = os.urandom(4 * CHUNK + 7)  # 5 chunks, the last of 7 bytes

    def left_after(key: str, chunks: int) -> dict:
        session = requests.post(served.url + "/api/v1/attachment/initiate", headers=headers, timeout=30, json={
            "bucket_id": bucket_id, "key": key, "fileName": key, "fileSize": len(old), "verifySha256": True}).json()
        for number in range(1, chunks + 1):
            response = requests.put(served.url + session["uploadUrl"].replace("{chunkId}", str(number)),
                                    data=old[(number - 1) * CHUNK:number * CHUNK], headers=headers, timeout=60)
            assert response.status_code == 200, response.text
        return session

    def cp(key: str, data: bytes) -> dict:
        (tmp_path / key).write_bytes(data)
        result = served.cli("cp", "--json", str(tmp_path / key), f"sage://{bucket_id}/{key}")
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        got = requests.get(f"{served.url}/api/v1/objects/{bucket_id}/{key}", headers=headers, timeout=60)
        assert got.content == data
        return record

    def session_status(session: dict) -> int:
        return requests.get(f"{served.url}/api/v1/attachment/session/{session['sessionId']}", headers=headers,
                            timeout=30).status_code

    before = served.metric("sagestore_session_received_bytes_total")
    full = left_after("full.bin", 5)
    assert cp("full.bin", old)["resumed"] == len(old)
    assert served.metric("sagestore_session_received_bytes_total") - before == len(old)  # nothing sent again
    assert session_status(full) != 404  # that session completed
    late = bytearray(old)
    late[-1] ^= 0xFF  # the same first chunk, another last byte
    left_after("late.bin", 1)
    assert cp("late.bin", bytes(late))["resumed"] == CHUNK
    early = bytearray(old)
    early[0] ^= 0xFF  # another first byte
    stale = left_after("early.bin", 1)
    assert cp("early.bin", bytes(early))["resumed"] == 0
    assert session_status(stale) == 404  # aborted, never completed



@pytest.mark.parametrize("failure", ["reset", "503"])
def test_retries_through_a_proxy_that_fails_once(served, tmp_path, failure):
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
    port = int(served.url.rsplit(":", 1)[1])
    data = os.urandom(2 * MiB)
    (tmp_path / "f.bin").write_bytes(data)
    config = TransferConfig(backoff=0.05, max_backoff=2)
    for operation in ("upload", "download", "session"):
        proxy = FlakyProxy(port, failure)
        try:
            with Client(proxy.url, served.token("alice"), config=config) as client:
                if operation == "upload":
                    result = client.upload_file(bucket_id, "f.bin", tmp_path / "f.bin")
                    assert result["sha256"] == hashlib.sha256(data).hexdigest()
                elif operation == "download":
                    client.download_file(bucket_id, "f.bin", tmp_path / "back.bin")
                    assert (tmp_path / "back.bin").read_bytes() == data
                else:
                    assert [u for u in client.list_uploads(bucket_id)] == []
        finally:
            proxy.close()
        assert proxy.connections >= 2, operation  # the failed one, then the retry


def test_4xx_answers_are_not_retried(served):
    port = int(served.url.rsplit(":", 1)[1])
    proxy = FlakyProxy(port, "400")
    try:
        with Client(proxy.url, served.token("alice"), config=TransferConfig(backoff=0.05)) as client:
            with pytest.raises(BadRequest) as refused:
                client.list_buckets()
        assert refused.value.message == "proxy says no"
        assert proxy.connections == 1
    finally:
        proxy.close()


def test_download_state_of_another_version_restarts_and_a_bad_part_file_is_refused(served, tmp_path):
    """The .part state names the ETag it belongs to: a changed object restarts from zero; ranges the
    state calls done but whose bytes are wrong fail the sha256 check against Repr-Digest."""
    from sagestore.client import ChecksumMismatch
    config = TransferConfig(threshold=1 * MiB, chunk_size=1 * MiB, concurrency=2)
    with Client(served.url, served.token("alice"), config=config) as alice:
        bucket_id = alice.create_bucket("model")["id"]
        first, second = os.urandom(4 * MiB), os.urandom(4 * MiB)
        alice.upload_file(bucket_id, "v.bin", io.BytesIO(first))
        old_etag = alice.stat(bucket_id, "v.bin").etag
        target = tmp_path / "v.bin"
        (tmp_path / "v.bin.part").write_bytes(first[:2 * MiB] + bytes(2 * MiB))
        state = {"etag": old_etag, "size": 4 * MiB, "chunk": MiB, "done": [0, 1]}
        (tmp_path / "v.bin.part.json").write_text(json.dumps(state))
        alice.upload_file(bucket_id, "v.bin", io.BytesIO(second))  # a new version
        result = alice.download_file(bucket_id, "v.bin", target)
        assert result["resumed"] == 0 and result["verified"] and target.read_bytes() == second
        # same version, but the bytes the state calls done are wrong: refused, and the part file is gone
        target.unlink()
        (tmp_path / "v.bin.part").write_bytes(bytes(4 * MiB))
        state = {"etag": alice.stat(bucket_id, "v.bin").etag, "size": 4 * MiB, "chunk": MiB, "done": [0, 1, 2]}
        (tmp_path / "v.bin.part.json").write_text(json.dumps(state))
        with pytest.raises(ChecksumMismatch):
            alice.download_file(bucket_id, "v.bin", target)
        assert not target.exists() and not (tmp_path / "v.bin.part").exists()
        assert alice.download_file(bucket_id, "v.bin", target)["resumed"] == 0 and target.read_bytes() == second
