"""One resumable client per upload path, written against the wire protocol with `requests`.

Each client keeps what the server acknowledged (`acknowledged`) and the high-water mark of
what it has sent (`sent`); after a crash, `resync()` reads the server's view (offset or stored
parts), and the harness checks acknowledged <= server's view <= sent before resuming.
Chunk bodies are KillableBody objects, so the harness can kill the server at a chosen byte.
"""
from __future__ import annotations

import base64
import hashlib
import random
import threading
import time
from typing import Callable

import requests

from support.data import sha256

MiB = 2**20
TIMEOUT = 120


class KillableBody:
    """A request body with a Content-Length that calls `at_byte` once the upload has sent
    `kill_at` bytes in total (across all bodies of a trial): the server dies mid-body."""

    def __init__(self, data: bytes, trial: "TrialBytes") -> None:
        self.data = memoryview(data)
        self.position = 0
        self.trial = trial

    def __len__(self) -> int:
        return len(self.data)

    def read(self, size: int = -1) -> bytes:
        size = len(self.data) - self.position if size < 0 else min(size, 64 * 1024)
        chunk = self.data[self.position:self.position + size]
        self.position += len(chunk)
        self.trial.sent_bytes(len(chunk))
        return bytes(chunk)


class TrialBytes:
    """Counts body bytes of a trial and fires the kill at the chosen one."""

    def __init__(self, kill_at: int | None, kill: Callable[[], None], kill_in_completion: float | None = None) -> None:
        self.total = 0
        self.kill_at = kill_at
        self.kill = kill
        self.kill_in_completion = kill_in_completion  # seconds after the completing request starts
        self.timer: threading.Timer | None = None

    def completing(self) -> None:
        """The client is about to send the request that publishes the object."""
        if self.kill_in_completion is not None:
            self.timer = threading.Timer(self.kill_in_completion, self.kill)
            self.timer.daemon = True
            self.timer.start()
            self.kill_in_completion = None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer.join()

    def sent_bytes(self, count: int) -> None:
        self.total += count
        if self.kill_at is not None and self.total >= self.kill_at:
            self.kill_at = None
            self.kill()


class PathClient:
    """Base: target, data, headers; `acknowledged`/`sent` in bytes (sets of parts for parallel paths)."""

    name = ""
    sequential = True

    def __init__(self, base: str, bucket_id: str, key: str, data: bytes, trial: TrialBytes,
                 rng: random.Random) -> None:
        self.base, self.bucket_id, self.key, self.data, self.trial, self.rng = base, bucket_id, key, data, trial, rng
        self.headers = {"Authorization": "sage user:alice"}
        self.acknowledged = 0
        self.sent = 0
        self.started = False
        self.done = False
        self.lost = 0  # acknowledged bytes the server no longer had after a crash (must stay 0)

    def body(self, start: int, end: int) -> KillableBody:
        self.sent = max(self.sent, end)
        return KillableBody(self.data[start:end], self.trial)

    def chunk_end(self, offset: int) -> int:
        return min(len(self.data), offset + self.rng.randint(1, 7) * MiB - self.rng.randint(0, 4096))

    def ack(self, offset: int) -> None:
        assert offset >= self.acknowledged, f"offset went back: {offset} < {self.acknowledged}"
        self.acknowledged = offset

    def check_resync(self, offset: int) -> None:
        self.lost += max(0, self.acknowledged - offset)
        assert self.acknowledged <= offset <= self.sent, \
            f"server offset {offset} outside [acknowledged {self.acknowledged}, sent {self.sent}]"
        self.acknowledged = offset


class Tus(PathClient):
    name = "tus"

    def begin(self) -> None:
        meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in
                        (("bucket", self.bucket_id), ("key", self.key)))
        response = requests.post(f"{self.base}/api/v1/tus/", timeout=TIMEOUT, headers={
            **self.headers, "Tus-Resumable": "1.0.0", "Upload-Length": str(len(self.data)), "Upload-Metadata": meta})
        assert response.status_code == 201, response.text
        self.url = self.base + response.headers["Location"]
        self.started = True

    def resync(self) -> None:
        response = requests.head(self.url, headers={**self.headers, "Tus-Resumable": "1.0.0"}, timeout=TIMEOUT)
        assert response.status_code in (200, 204), response.status_code
        self.check_resync(int(response.headers["Upload-Offset"]))
        self.done = self.acknowledged == len(self.data)

    def step(self) -> None:
        start = self.acknowledged
        end = self.chunk_end(start)
        if end == len(self.data):
            self.trial.completing()
        response = requests.patch(self.url, data=self.body(start, end), timeout=TIMEOUT, headers={
            **self.headers, "Tus-Resumable": "1.0.0", "Upload-Offset": str(start),
            "Content-Type": "application/offset+octet-stream"})
        assert response.status_code == 204, (response.status_code, response.text)
        self.ack(int(response.headers["Upload-Offset"]))
        self.done = self.acknowledged == len(self.data)


class Ietf(PathClient):
    name = "ietf"

    def begin(self) -> None:
        # no Upload-Draft-Interop-Version: the editor's copy, and no 104 (http.client cannot read it)
        response = requests.post(f"{self.base}/api/v1/uploads/", timeout=TIMEOUT,
                                 params={"bucket": self.bucket_id, "key": self.key},
                                 headers={**self.headers, "Upload-Complete": "?0",
                                          "Upload-Length": str(len(self.data))})
        assert response.status_code in (201, 204), (response.status_code, response.text)
        self.url = self.base + response.headers["Location"]
        self.started = True

    def resync(self) -> None:
        response = requests.head(self.url, headers=self.headers, timeout=TIMEOUT)
        assert response.status_code in (200, 204), response.status_code
        self.check_resync(int(response.headers["Upload-Offset"]))
        self.done = response.headers.get("Upload-Complete") == "?1" and self.acknowledged == len(self.data)

    def step(self) -> None:
        start = self.acknowledged
        end = self.chunk_end(start)
        last = end == len(self.data)
        if last:
            self.trial.completing()
        response = requests.patch(self.url, data=self.body(start, end), timeout=TIMEOUT, headers={
            **self.headers, "Upload-Offset": str(start), "Upload-Complete": "?1" if last else "?0",
            "Content-Type": "application/partial-upload"})
        assert response.status_code in (200, 201, 204), (response.status_code, response.text)
        self.ack(int(response.headers["Upload-Offset"]))
        self.done = last and response.headers.get("Upload-Complete") == "?1"


class OffsetChunks(PathClient):
    name = "offset"

    def begin(self) -> None:
        end = self.chunk_end(0)
        response = requests.put(f"{self.base}/api/v1/upload", data=self.body(0, end), timeout=TIMEOUT,
                                params={"bucket_id": self.bucket_id, "key": self.key}, headers=self.headers)
        assert response.status_code == 201, response.text
        self.upload_id = response.json()["upload_id"]
        self.started = True
        self.ack(response.json()["offset"])

    def restart_from_scratch(self) -> None:
        """The first chunk's answer was lost: its upload id is unknown, so begin again."""
        self.acknowledged = self.sent = 0

    def resync(self) -> None:
        response = requests.get(f"{self.base}/api/v1/upload", params={"upload_id": self.upload_id},
                                headers=self.headers, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        self.check_resync(response.json()["offset"])

    def step(self) -> None:
        start = self.acknowledged
        if start < len(self.data):
            end = self.chunk_end(start)
            response = requests.put(f"{self.base}/api/v1/upload", data=self.body(start, end), timeout=TIMEOUT,
                                    params={"upload_id": self.upload_id, "offset": start}, headers=self.headers)
            assert response.status_code == 200, response.text
            self.ack(response.json()["offset"])
            return
        self.trial.completing()
        response = requests.post(f"{self.base}/api/v1/import_upload", timeout=TIMEOUT, headers=self.headers,
                                 json={"upload_id": self.upload_id, "sha256": sha256(self.data)})
        while response.status_code == 202:
            time.sleep(0.5)
            response = requests.get(self.base + response.headers["Location"], headers=self.headers, timeout=TIMEOUT)
        assert response.status_code in (200, 201), response.text
        assert response.json()["sha256"] == sha256(self.data)
        self.done = True


class PartsClient(PathClient):
    """Paths whose parts may arrive in any order: the state is a set of part numbers."""

    sequential = False
    part_size = 5 * MiB

    def setup_parts(self, part_size: int) -> None:
        self.part_size = part_size
        self.numbers = list(range(1, -(-len(self.data) // part_size) + 1))
        self.rng.shuffle(self.numbers)
        self.acked: set[int] = set()
        self.sent_parts: set[int] = set()

    def part(self, number: int) -> KillableBody:
        self.sent_parts.add(number)
        start = (number - 1) * self.part_size
        return KillableBody(self.data[start:start + self.part_size], self.trial)

    def check_parts(self, stored: set[int]) -> None:
        self.lost += self.part_bytes(self.acked - stored)
        assert self.acked <= stored <= self.sent_parts, \
            f"stored parts {sorted(stored)} outside [acknowledged {sorted(self.acked)}, sent {sorted(self.sent_parts)}]"
        self.acked = set(stored)

    def part_bytes(self, numbers: set[int]) -> int:
        return sum(len(self.data[(n - 1) * self.part_size:n * self.part_size]) for n in numbers)

    @property
    def acknowledged_bytes(self) -> int:
        return self.part_bytes(self.acked)


class Sessions(PartsClient):
    name = "sessions"

    def begin(self) -> None:
        response = requests.post(f"{self.base}/api/v1/attachment/initiate", headers=self.headers, timeout=TIMEOUT,
                                 json={"bucket_id": self.bucket_id, "key": self.key, "fileName": "f.bin",
                                       "fileSize": len(self.data), "sha256": sha256(self.data)})
        assert response.status_code in (200, 201), response.text
        session = response.json()
        self.path = f"{self.base}/api/v1/attachment/session/{session['sessionId']}"
        self.setup_parts(session["chunkSize"])
        self.started = True

    def resync(self) -> None:
        response = requests.get(self.path, headers=self.headers, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        self.check_parts(set(response.json()["receivedChunks"]))

    def step(self) -> None:
        missing = [n for n in self.numbers if n not in self.acked]
        if missing:
            number = missing[0]
            response = requests.put(f"{self.path}/upload/{number}", data=self.part(number), headers=self.headers,
                                    timeout=TIMEOUT)
            assert response.status_code == 200, response.text
            self.acked.add(number)
            return
        self.trial.completing()
        response = requests.post(f"{self.path}/complete", headers=self.headers, timeout=TIMEOUT)
        assert response.status_code in (200, 201), response.text
        assert response.json()["sha256"] == sha256(self.data)
        self.done = True


class Multipart(PartsClient):
    name = "multipart"

    def begin(self) -> None:
        response = requests.post(f"{self.base}/api/v1/multipart/", headers=self.headers, timeout=TIMEOUT, json={
            "object_type": "model_version", "object_id": self.bucket_id, "key": self.key})
        assert response.status_code == 201, response.text
        self.upload_id = response.json()["upload_id"]
        self.setup_parts(5 * MiB)
        self.etags: dict[int, str] = {}
        self.started = True

    def resync(self) -> None:
        response = requests.get(f"{self.base}/api/v1/multipart/{self.upload_id}/", headers=self.headers,
                                timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        parts = response.json()["parts"]
        self.check_parts({p["part_number"] for p in parts})
        self.etags = {p["part_number"]: p["etag"] for p in parts}
        self.done = response.json().get("state") == "completed"

    def step(self) -> None:
        missing = [n for n in self.numbers if n not in self.acked]
        if missing:
            number = missing[0]
            response = requests.put(f"{self.base}/api/v1/multipart/{self.upload_id}/parts/{number}",
                                    data=self.part(number), headers=self.headers, timeout=TIMEOUT)
            assert response.status_code == 200, response.text
            self.acked.add(number)
            self.etags[number] = response.json()["etag"]
            return
        self.trial.completing()
        response = requests.post(f"{self.base}/api/v1/multipart/complete/", headers=self.headers, timeout=TIMEOUT,
                                 json={"object_type": "model_version", "object_id": self.bucket_id,
                                       "upload_id": self.upload_id,
                                       "parts": [{"part_number": n, "etag": self.etags[n]} for n in sorted(self.acked)]})
        assert response.status_code == 201, response.text
        self.done = True


class RawPut(PathClient):
    """A plain PUT: a client that loses the answer sends the whole file again."""

    name = "raw-put"

    def begin(self) -> None:
        self.started = True

    def restart_from_scratch(self) -> None:
        self.acknowledged = self.sent = 0

    def resync(self) -> None:
        self.acknowledged = self.sent = 0  # nothing to resume: the object is absent or whole

    def step(self) -> None:
        self.trial.completing()
        response = requests.put(f"{self.base}/api/v1/objects/{self.bucket_id}/{self.key}",
                                data=self.body(0, len(self.data)), timeout=TIMEOUT,
                                headers={**self.headers, "Content-Type": "application/octet-stream"})
        assert response.status_code in (200, 201), response.text
        self.ack(len(self.data))
        self.done = True


class SignedPut(PathClient):
    """A sagestore-signed PUT URL (a share link for PUT, as `sagestore share --put` makes): the
    whole file goes to the URL with no Authorization header; a client that loses the answer sends
    the whole file again to the same URL, as the raw PUT's client does."""

    name = "signed-put"

    def begin(self) -> None:
        response = requests.post(f"{self.base}/api/v1/shares", headers=self.headers, timeout=TIMEOUT, json={
            "bucket_id": self.bucket_id, "key": self.key, "method": "PUT", "expires_in": 3600})
        assert response.status_code == 201, response.text
        self.url = response.json()["url"]
        self.retried = False
        self.started = True

    def restart_from_scratch(self) -> None:
        self.acknowledged = self.sent = 0

    def resync(self) -> None:
        self.acknowledged = self.sent = 0  # nothing to resume: the object is absent or whole
        self.retried = True

    def step(self) -> None:
        self.trial.completing()
        response = requests.put(self.url, data=self.body(0, len(self.data)), timeout=TIMEOUT,
                                headers={"Content-Type": "application/octet-stream"})
        if response.status_code == 423 and self.retried:
            # the killed server's claim on the URL: it lapses once PostgreSQL has seen that
            # instance's connections close (its liveness lock); send the file again
            time.sleep(0.2)
            return
        if response.status_code == 409 and self.retried and "has completed" in response.text:
            # the killed server had finished the upload and lost only its answer; the harness
            # checks the stored object's sha256
            self.ack(len(self.data))
            self.done = True
            return
        assert response.status_code == 201, (response.status_code, response.text)
        assert response.json()["sha256"] == sha256(self.data)
        self.ack(len(self.data))
        self.done = True


class _SeekableBody(KillableBody):
    """A KillableBody botocore can measure and rewind (it asks tell/seek of a file-like body)."""

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = offset if whence == 0 else len(self.data) + offset if whence == 2 else self.position + offset
        return self.position


class _S3Client:
    """boto3 on the S3 API (s3_url: set by the harness), with an access key made through the API;
    one attempt per call (the harness restarts and resumes), connection failures as requests'."""

    s3_url = ""

    def s3(self):
        if getattr(self, "_s3", None) is None:
            import boto3
            from botocore.config import Config
            response = requests.post(f"{self.base}/api/v1/s3/keys", headers=self.headers, timeout=TIMEOUT)
            assert response.status_code == 201, response.text
            key = response.json()
            self._s3 = boto3.client(
                "s3", endpoint_url=self.s3_url, region_name="us-east-1", aws_access_key_id=key["access_key_id"],
                aws_secret_access_key=key["secret_access_key"],
                config=Config(s3={"addressing_style": "path", "payload_signing_enabled": False},
                              retries={"max_attempts": 1}, request_checksum_calculation="when_required",
                              connect_timeout=5, read_timeout=TIMEOUT))
        return self._s3

    def call(self, operation: str, **params):
        from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
        try:
            return getattr(self.s3(), operation)(**params)
        except (ConnectionClosedError, EndpointConnectionError, ReadTimeoutError) as problem:
            raise requests.ConnectionError(str(problem)) from None


class S3Put(_S3Client, PathClient):
    """PutObject through the S3 API: a client that loses the answer sends the whole file again."""

    name = "s3-put"

    def begin(self) -> None:
        self.started = True

    def restart_from_scratch(self) -> None:
        self.acknowledged = self.sent = 0

    def resync(self) -> None:
        self.acknowledged = self.sent = 0

    def step(self) -> None:
        self.trial.completing()
        self.sent = len(self.data)
        answer = self.call("put_object", Bucket=self.bucket_id, Key=self.key,
                           Body=_SeekableBody(self.data, self.trial), ContentLength=len(self.data))
        assert answer["ETag"] == f'"{hashlib.md5(self.data).hexdigest()}"', answer["ETag"]
        self.ack(len(self.data))
        self.done = True


class S3Multipart(_S3Client, PartsClient):
    """An S3 multipart upload (boto3): parts in random order, resumed from ListParts."""

    name = "s3-multipart"

    def begin(self) -> None:
        self.upload_id = self.call("create_multipart_upload", Bucket=self.bucket_id, Key=self.key)["UploadId"]
        self.setup_parts(5 * MiB)
        self.etags: dict[int, str] = {}
        self.started = True

    def resync(self) -> None:
        from botocore.exceptions import ClientError
        try:
            parts = self.call("list_parts", Bucket=self.bucket_id, Key=self.key, UploadId=self.upload_id)
        except ClientError as problem:
            if problem.response["Error"]["Code"] != "NoSuchUpload":
                raise
            # completed before the kill, only the answer was lost: the harness checks the object
            head = self.call("head_object", Bucket=self.bucket_id, Key=self.key)
            assert head["ContentLength"] == len(self.data)
            self.check_parts(set(self.numbers))
            self.done = True
            return
        listed = parts.get("Parts", [])
        self.check_parts({part["PartNumber"] for part in listed})
        self.etags = {part["PartNumber"]: part["ETag"] for part in listed}

    def step(self) -> None:
        missing = [n for n in self.numbers if n not in self.acked]
        if missing:
            number = missing[0]
            start = (number - 1) * self.part_size
            self.sent_parts.add(number)
            answer = self.call("upload_part", Bucket=self.bucket_id, Key=self.key, UploadId=self.upload_id,
                               PartNumber=number, Body=_SeekableBody(self.data[start:start + self.part_size],
                                                                      self.trial))
            self.acked.add(number)
            self.etags[number] = answer["ETag"]
            return
        self.trial.completing()
        self.call("complete_multipart_upload", Bucket=self.bucket_id, Key=self.key, UploadId=self.upload_id,
                  MultipartUpload={"Parts": [{"PartNumber": n, "ETag": self.etags[n]} for n in sorted(self.acked)]})
        self.done = True


PATHS: dict[str, type[PathClient]] = {cls.name: cls for cls in (Tus, Ietf, OffsetChunks, Sessions, Multipart, RawPut,
                                                                SignedPut, S3Put, S3Multipart)}
