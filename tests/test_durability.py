"""Real `sagestore serve` subprocesses on one PostgreSQL and one SeaweedFS: kill -9 in the
middle of a chunk, restart, status, resume, complete (both chunked APIs); two instances taking
turns on one upload; two instances racing for the same offset or chunk."""
from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from support.chunked import S3View
from support.premises import eventually_sync, part_lease_held_sync, s3_parts_sync, upload_row_sync
from support.data import MiB, auth, create_bucket_row, sha256

HEADERS = auth("alice")


def start_request_then_kill(server, method: str, path: str, announced: int, sent: bytes, premise) -> None:
    """Announce a chunk, send part of it, wait until premise() holds (the request visibly got
    that far), and kill -9 the server while it is inside the request."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {announced}",
            *(f"{name}: {value}" for name, value in HEADERS.items())]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + sent)
    premise()
    server.stop(sig=9)
    sock.close()


def slow_body(blob: bytes, step: int = MiB, pause: float = 0.05):
    """A streamed (chunked) request body that takes a while to arrive."""
    for start in range(0, len(blob), step):
        yield blob[start:start + step]
        time.sleep(pause)


def test_offset_upload_survives_kill_9_mid_chunk(server_process, base_settings):
    server = server_process(s3_part_size=5 * MiB)
    bucket_id = create_bucket_row(base_settings.database_url)
    data = os.urandom(33 * MiB)
    response = requests.put(f"{server.url}/api/v1/upload", params={"bucket_id": bucket_id, "key": "kill/offset.bin"},
                            data=data[:7 * MiB], headers=HEADERS, timeout=60)
    assert response.status_code == 201, response.text
    upload_id = response.json()["upload_id"]
    response = requests.put(f"{server.url}/api/v1/upload", params={"upload_id": upload_id, "offset": 7 * MiB},
                            data=data[7 * MiB:14 * MiB], headers=HEADERS, timeout=60)
    assert response.json()["offset"] == 14 * MiB  # two 5 MiB parts in S3 and a 4 MiB staged tail
    # the third chunk: 8 of its 12 MiB arrive, S3 has the two full parts among them (the old
    # 4 MiB tail + 1 MiB, then 5 MiB), then the server dies
    row = upload_row_sync(base_settings.database_url, upload_id)
    s3 = S3View(base_settings).client

    def two_more_parts_in_s3() -> None:
        eventually_sync(lambda: upload_row_sync(base_settings.database_url, upload_id)["lease_held"],
                        "the third chunk holds the lease")
        eventually_sync(lambda: {3: 5 * MiB, 4: 5 * MiB}.items() <= s3_parts_sync(s3, row).items(),
                        "S3 lists parts 3 and 4 of the third chunk")
    start_request_then_kill(server, "PUT", f"/api/v1/upload?upload_id={upload_id}&offset={14 * MiB}", 12 * MiB,
                            data[14 * MiB:22 * MiB], two_more_parts_in_s3)
    assert s3_parts_sync(s3, row).keys() >= {1, 2, 3, 4}  # in S3, but never acknowledged
    server.start()
    status = requests.get(f"{server.url}/api/v1/upload", params={"upload_id": upload_id}, headers=HEADERS,
                          timeout=30)
    assert status.status_code == 200 and status.json()["offset"] == 14 * MiB  # nothing unacknowledged counts
    offset = 14 * MiB
    while offset < len(data):  # the restarted server takes the upload at once (the dead one holds no lease)
        response = requests.put(f"{server.url}/api/v1/upload", params={"upload_id": upload_id, "offset": offset},
                                data=data[offset:offset + 12 * MiB], headers=HEADERS, timeout=60)
        assert response.status_code == 200, response.text
        offset = response.json()["offset"]
    response = requests.post(f"{server.url}/api/v1/import_upload", headers=HEADERS, timeout=120,
                             json={"upload_id": upload_id, "sha256": sha256(data)})
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == sha256(data)
    assert sha256(S3View(base_settings).object(bucket_id, "kill/offset.bin")) == sha256(data)


def test_session_survives_kill_9_mid_chunk(server_process, base_settings):
    server = server_process(s3_part_size=8 * MiB)
    bucket_id = create_bucket_row(base_settings.database_url)
    data = os.urandom(40 * MiB)
    response = requests.post(f"{server.url}/api/v1/attachment/initiate", headers=HEADERS, timeout=30, json={
        "bucket_id": bucket_id, "key": "kill/session.bin", "fileName": "session.bin", "fileSize": len(data),
        "sha256": sha256(data)})
    session = response.json()
    assert session["chunkSize"] == 8 * MiB and session["totalChunks"] == 5
    base = f"/api/v1/attachment/session/{session['sessionId']}"

    def put(number: int) -> int:
        chunk = data[(number - 1) * 8 * MiB:number * 8 * MiB]
        return requests.put(f"{server.url}{base}/upload/{number}", data=chunk, headers=HEADERS, timeout=60).status_code

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(put, (3, 1, 2))) == [200, 200, 200]
    start_request_then_kill(server, "PUT", f"{base}/upload/4", 8 * MiB, data[24 * MiB:28 * MiB], lambda: eventually_sync(
        lambda: part_lease_held_sync(base_settings.database_url, session["sessionId"], 4),
        "chunk 4 holds its part lease"))
    server.start()
    status = requests.get(f"{server.url}{base}", headers=HEADERS, timeout=30).json()
    assert status["receivedChunks"] == [1, 2, 3] and status["missingChunks"] == [4, 5]
    assert status["bytesReceived"] == 24 * MiB
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(put, (5, 4))) == [200, 200]
    response = requests.post(f"{server.url}{base}/complete", headers=HEADERS, timeout=120)
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == sha256(data)
    assert sha256(S3View(base_settings).object(bucket_id, "kill/session.bin")) == sha256(data)


def test_two_instances_take_turns_on_one_upload(server_process, base_settings):
    servers = [server_process(s3_part_size=8 * MiB) for _ in range(2)]
    view = S3View(base_settings)
    bucket_id = create_bucket_row(base_settings.database_url)

    # offset chunks of 6 MiB (not part-aligned): parts and staged tails pass between instances
    data = os.urandom(31 * MiB)
    response = requests.put(f"{servers[0].url}/api/v1/upload", params={"bucket_id": bucket_id, "key": "turns.bin"},
                            data=data[:6 * MiB], headers=HEADERS, timeout=60)
    upload_id, offset = response.json()["upload_id"], response.json()["offset"]
    turn = 1
    while offset < len(data):
        response = requests.put(f"{servers[turn % 2].url}/api/v1/upload",
                                params={"upload_id": upload_id, "offset": offset},
                                data=data[offset:offset + 6 * MiB], headers=HEADERS, timeout=60)
        assert response.status_code == 200, response.text
        offset, turn = response.json()["offset"], turn + 1
    for server in servers:
        assert requests.get(f"{server.url}/api/v1/upload", params={"upload_id": upload_id}, headers=HEADERS,
                            timeout=30).json()["offset"] == len(data)
    response = requests.post(f"{servers[1].url}/api/v1/import_upload", headers=HEADERS, timeout=120,
                             json={"upload_id": upload_id, "sha256": sha256(data)})
    assert response.status_code == 201, response.text
    assert view.object(bucket_id, "turns.bin") == data

    # session chunks alternating between the instances, two in flight
    blob = os.urandom(44 * MiB)
    session = requests.post(f"{servers[0].url}/api/v1/attachment/initiate", headers=HEADERS, timeout=30, json={
        "bucket_id": bucket_id, "key": "turns-session.bin", "fileName": "s.bin", "fileSize": len(blob)}).json()
    base = f"/api/v1/attachment/session/{session['sessionId']}"

    def put(number: int) -> int:
        chunk = blob[(number - 1) * 8 * MiB:number * 8 * MiB]
        return requests.put(f"{servers[number % 2].url}{base}/upload/{number}", data=chunk, headers=HEADERS,
                            timeout=60).status_code

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(put, range(1, 7))) == [200] * 6
    for server in servers:
        status = requests.get(f"{server.url}{base}", headers=HEADERS, timeout=30).json()
        assert status["receivedChunks"] == [1, 2, 3, 4, 5, 6] and status["bytesReceived"] == len(blob)
    response = requests.post(f"{servers[1].url}{base}/complete", headers=HEADERS, timeout=120)
    assert response.status_code == 201, response.text
    assert view.object(bucket_id, "turns-session.bin") == blob


class HeldBody:
    """A streamed request body that sends `head`, then waits for release() before the rest."""

    def __init__(self, blob: bytes, head: int = MiB) -> None:
        self.blob, self.head = blob, head
        self.released = threading.Event()

    def release(self) -> None:
        self.released.set()

    def __iter__(self):
        yield self.blob[:self.head]
        assert self.released.wait(300), "the held body was never released"
        yield from slow_body(self.blob[self.head:])


def test_two_instances_writing_one_offset_or_one_chunk_exactly_one_wins(server_process, base_settings):
    """The second writer arrives on the other instance while the first visibly holds the lease
    (its row in PostgreSQL): 423, and only the first one's bytes are kept."""
    servers = [server_process(s3_part_size=5 * MiB) for _ in range(2)]
    view = S3View(base_settings)
    database = base_settings.database_url
    bucket_id = create_bucket_row(database)

    head = os.urandom(3 * MiB)
    response = requests.put(f"{servers[0].url}/api/v1/upload", params={"bucket_id": bucket_id, "key": "race.bin"},
                            data=head, headers=HEADERS, timeout=60)
    upload_id = response.json()["upload_id"]
    first, second = HeldBody(os.urandom(8 * MiB)), os.urandom(8 * MiB)
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(requests.put, f"{servers[0].url}/api/v1/upload", timeout=120, headers=HEADERS,
                             params={"upload_id": upload_id, "offset": len(head)}, data=iter(first))
        eventually_sync(lambda: upload_row_sync(database, upload_id)["lease_held"], "the first writer holds the lease")
        response = requests.put(f"{servers[1].url}/api/v1/upload", params={"upload_id": upload_id,
                                "offset": len(head)}, data=second, headers=HEADERS, timeout=120)
        assert response.status_code == 423, response.text
        first.release()
        response = holder.result()
        assert response.status_code == 200, response.text
    response = requests.post(f"{servers[1].url}/api/v1/import_upload", headers=HEADERS, timeout=120,
                             json={"upload_id": upload_id, "sha256": sha256(head + first.blob)})
    assert response.status_code == 201, response.text
    assert view.object(bucket_id, "race.bin") == head + first.blob

    session = requests.post(f"{servers[0].url}/api/v1/attachment/initiate", headers=HEADERS, timeout=30, json={
        "bucket_id": bucket_id, "key": "race-session.bin", "fileName": "s.bin", "fileSize": 5 * MiB}).json()
    url = f"/api/v1/attachment/session/{session['sessionId']}/upload/1"
    first, second = HeldBody(os.urandom(5 * MiB)), os.urandom(5 * MiB)
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(requests.put, f"{servers[0].url}{url}", data=iter(first), headers=HEADERS, timeout=120)
        eventually_sync(lambda: part_lease_held_sync(database, session["sessionId"], 1),
                        "the first writer holds chunk 1's lease")
        response = requests.put(f"{servers[1].url}{url}", data=second, headers=HEADERS, timeout=120)
        assert response.status_code == 423, response.text
        first.release()
        assert holder.result().status_code == 200
    response = requests.post(f"{servers[1].url}/api/v1/attachment/session/{session['sessionId']}/complete",
                             headers=HEADERS, timeout=120)
    assert response.status_code == 201, response.text
    assert view.object(bucket_id, "race-session.bin") == first.blob
