"""Real tus clients against a real server on real PostgreSQL and SeaweedFS: tuspy (sync Uploader
and AsyncUploader) and tus-js-client in node (tests/js/upload.mjs, installed by npm)."""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.premises import lease_taken, upload_row
from support.tus import stored
from support.data import MiB, auth, make_bucket, sha256
from tusclient import client as tus_client
from tusclient.exceptions import TusUploadFailed
from tusclient.uploader import AsyncUploader, Uploader

from sagestore.storage import PartBody

JS_DIR = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def data64() -> bytes:
    return os.urandom(64 * MiB)


def endpoint(client) -> str:
    return str(client.make_url("/api/v1/tus/"))


async def test_tuspy_sync_uploader_5mib_chunks(client, data64):
    app = client.server.app
    bucket_id = await make_bucket(app)
    tus = tus_client.TusClient(endpoint(client), headers=auth("alice"))
    uploader = tus.uploader(file_stream=io.BytesIO(data64), chunk_size=5 * MiB,
                            metadata={"bucket": bucket_id, "key": "tuspy/sync.bin", "filetype": "application/x-raw"})
    await asyncio.to_thread(uploader.upload)  # requests blocks: keep the server's loop free
    assert sha256(await stored(app, bucket_id, "tuspy/sync.bin")) == sha256(data64)


async def test_tuspy_async_uploader_7mib_chunks(client, data64):
    app = client.server.app
    bucket_id = await make_bucket(app)
    tus = tus_client.TusClient(endpoint(client), headers=auth("alice"))
    uploader = AsyncUploader(client=tus, file_stream=io.BytesIO(data64), chunk_size=7 * MiB,
                             metadata={"bucket": bucket_id, "filename": "async.bin"})
    await uploader.upload()
    assert sha256(await stored(app, bucket_id, "async.bin")) == sha256(data64)


class _BytearrayStream(io.BytesIO):
    """Hands tuspy mutable chunks, so a chunk can be corrupted after its checksum was computed."""

    def read(self, size: int = -1) -> bytearray:  # type: ignore[override]
        return bytearray(super().read(size))


def _corrupting_sha1(corrupt_call: int):
    calls = {"n": 0}

    def sha1(chunk: bytearray):
        calls["n"] += 1
        digest = hashlib.sha1(bytes(chunk))
        if calls["n"] == corrupt_call:
            chunk[len(chunk) // 2] ^= 0x01  # one bit flips between hashing and sending
        return digest
    return sha1


async def test_tuspy_checksum_and_a_corrupted_chunk_gives_460(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(12 * MiB + 3)
    tus = tus_client.TusClient(endpoint(client), headers=auth("alice"))

    class CorruptingUploader(Uploader):
        CHECKSUM_ALGORITHM_PAIR = ("sha1", _corrupting_sha1(corrupt_call=2))

    uploader = CorruptingUploader(client=tus, file_stream=_BytearrayStream(data), chunk_size=5 * MiB,
                                  upload_checksum=True, metadata={"bucket": bucket_id, "key": "sum.bin"})
    with pytest.raises(TusUploadFailed) as failure:
        await asyncio.to_thread(uploader.upload)
    assert failure.value.status_code == 460
    # the corrupted chunk was discarded: the upload is still at the end of the first chunk
    resumed = await asyncio.to_thread(tus.uploader, file_stream=io.BytesIO(data), url=uploader.url,
                                      chunk_size=5 * MiB, upload_checksum=True)
    assert resumed.offset == 5 * MiB
    await asyncio.to_thread(resumed.upload)
    assert await stored(app, bucket_id, "sum.bin") == data


_KILLED_CLIENT = r"""
import json, sys
from tusclient import client
args = json.loads(sys.argv[1])
tus = client.TusClient(args["endpoint"], headers={"Authorization": args["authorization"]})
uploader = tus.uploader(args["file"], chunk_size=args["chunk"], metadata=args["metadata"])
uploader.set_url(uploader.create_url())
print(json.dumps({"url": uploader.url}), flush=True)
while uploader.offset < uploader.get_file_size():
    uploader.upload_chunk()
    print(json.dumps({"offset": uploader.offset}), flush=True)
"""


# "stalled": the part streamed to S3 while the killed PATCH fills it stalls (2 ms without bytes)
# just as the body is cut off. Its send then used to go on with the truncated bytes once their
# cancellation was lost (Python 3.11's wait_for in aiopg swallows one), freeing the bytes that
# were to become the staged tail: the old tail and the cut-off body were gone, and the last
# PATCH got 400 "the upload has N of its L bytes".
@pytest.mark.parametrize("stall", ["default", "stalled"])
async def test_tuspy_resumes_after_the_client_process_is_killed(client, tmp_path, monkeypatch, stall):
    if stall == "stalled":
        monkeypatch.setattr(PartBody, "STALL_SECONDS", 0.002)
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(96 * MiB)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    args = {"endpoint": endpoint(client), "authorization": auth("alice")["Authorization"], "file": str(path),
            "chunk": 24 * MiB, "metadata": {"bucket": bucket_id, "key": "killed.bin"}}
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", _KILLED_CLIENT, json.dumps(args),
                                                   stdout=asyncio.subprocess.PIPE)
    url = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))["url"]
    first = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))["offset"]
    assert first == 24 * MiB
    # the premise: the second PATCH holds the upload (were it still queued, the resumed client's
    # HEAD would answer first and the late PATCH's bytes would then make its offset stale: 409)
    await lease_taken(app, urlsplit(url).path.rsplit("/", 1)[1])
    await asyncio.sleep(0.05)  # some of its body has arrived
    process.send_signal(signal.SIGKILL)
    await process.wait()
    tus = tus_client.TusClient(endpoint(client), headers=auth("alice"))
    resumed = await asyncio.to_thread(tus.uploader, str(path), url=url, chunk_size=24 * MiB)
    assert 24 * MiB <= resumed.offset < len(data)
    await asyncio.to_thread(resumed.upload)
    assert sha256(await stored(app, bucket_id, "killed.bin")) == sha256(data)


# ------------------------------------------------------------------------------ tus-js-client (node)
def _node_ready() -> None:
    assert shutil.which("node"), "node is required (installed by .ci/run)"
    assert (JS_DIR / "node_modules" / "tus-js-client").is_dir(), "run `npm ci` in tests/js (scripts/test does)"


async def run_js(client, file: Path, mode: str, metadata: dict, **extra) -> dict:
    _node_ready()
    args = {"endpoint": endpoint(client), "authorization": auth("alice")["Authorization"], "file": str(file),
            "metadata": metadata, "mode": mode, **extra}
    process = await asyncio.create_subprocess_exec("node", str(JS_DIR / "upload.mjs"), json.dumps(args), cwd=JS_DIR,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert out, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


@pytest.fixture
def js_file(tmp_path) -> tuple[Path, bytes]:
    data = os.urandom(24 * MiB + 321)
    path = tmp_path / "js.bin"
    path.write_bytes(data)
    return path, data


async def test_tus_js_client_plain_upload(client, js_file):
    path, data = js_file
    bucket_id = await make_bucket(client.server.app)
    result = await run_js(client, path, "plain", {"bucket": bucket_id, "filename": "js plain.bin",
                                                  "filetype": "application/x-js"}, chunkSize=7 * MiB)
    assert result["ok"], result
    assert await stored(client.server.app, bucket_id, "js plain.bin") == data


async def test_tus_js_client_parallel_uploads_concatenate(client, js_file):
    path, data = js_file
    bucket_id = await make_bucket(client.server.app)
    result = await run_js(client, path, "parallel", {"bucket": bucket_id, "key": "js/parallel.bin"})
    assert result["ok"], result
    assert await stored(client.server.app, bucket_id, "js/parallel.bin") == data
    response = await client.head(urlsplit(result["url"]).path, headers={**auth("alice"), "Tus-Resumable": "1.0.0"})
    assert response.headers["Upload-Concat"].startswith("final;")
    assert len(response.headers["Upload-Concat"].split(";", 1)[1].split()) == 4


async def test_tus_js_client_abort_true_terminates(client, js_file):
    path, _ = js_file
    bucket_id = await make_bucket(client.server.app)
    result = await run_js(client, path, "terminate", {"bucket": bucket_id, "key": "js/aborted.bin"},
                          chunkSize=5 * MiB)
    assert result["ok"], result
    assert result["offset"] == 5 * MiB
    response = await client.head(urlsplit(result["url"]).path, headers={**auth("alice"), "Tus-Resumable": "1.0.0"})
    assert response.status == 404
    assert await stored(client.server.app, bucket_id, "js/aborted.bin") is None


async def test_tus_js_client_deferred_length(client, js_file):
    path, data = js_file
    bucket_id = await make_bucket(client.server.app)
    result = await run_js(client, path, "deferred", {"bucket": bucket_id, "key": "js/deferred.bin"},
                          chunkSize=6 * MiB)
    assert result["ok"], result
    assert await stored(client.server.app, bucket_id, "js/deferred.bin") == data


@pytest.mark.parametrize("protocol", ["ietf-draft-05", "ietf-draft-03"])
async def test_tus_js_client_ietf_draft(client, js_file, protocol):
    path, data = js_file
    bucket_id = await make_bucket(client.server.app)
    result = await run_js(client, path, "plain", {"bucket": bucket_id, "key": f"js/{protocol}.bin"},
                          protocol=protocol, chunkSize=9 * MiB, endpoint=str(client.make_url("/api/v1/uploads/")))
    assert result["ok"], result
    assert result["url"].split("/api/v1/uploads/")[1]
    assert await stored(client.server.app, bucket_id, f"js/{protocol}.bin") == data


# tus-js-client configured with the one tus endpoint speaks the IETF draft to it (issue 16): the upload
# is an IETF upload located under /api/v1/tus/, and every later request of the client goes there.
@pytest.mark.parametrize("protocol", ["ietf-draft-05", "ietf-draft-03"])
async def test_tus_js_client_ietf_draft_on_the_tus_endpoint(client, js_file, protocol):
    path, data = js_file
    app = client.server.app
    bucket_id = await make_bucket(app)
    result = await run_js(client, path, "plain", {"bucket": bucket_id, "key": f"js/tus-{protocol}.bin"},
                          protocol=protocol, chunkSize=9 * MiB)
    assert result["ok"], result
    assert urlsplit(result["url"]).path.startswith("/api/v1/tus/")
    assert await stored(app, bucket_id, f"js/tus-{protocol}.bin") == data
    row = await upload_row(app, urlsplit(result["url"]).path.rsplit("/", 1)[1])
    assert row["protocol"] == "ietf" and row["state"] == "completed"


@pytest.mark.parametrize("protocol", ["ietf-draft-05", "ietf-draft-03"])
async def test_tus_js_client_ietf_draft_on_the_tus_endpoint_resumes_after_it_is_killed(client, tmp_path, protocol):
    _node_ready()
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(48 * MiB + 321)
    path = tmp_path / "killed.bin"
    path.write_bytes(data)
    key = f"js/killed-{protocol}.bin"
    args = {"endpoint": endpoint(client), "authorization": auth("alice")["Authorization"], "file": str(path),
            "metadata": {"bucket": bucket_id, "key": key}, "mode": "progress", "protocol": protocol,
            "chunkSize": 16 * MiB}
    process = await asyncio.create_subprocess_exec("node", str(JS_DIR / "upload.mjs"), json.dumps(args), cwd=JS_DIR,
                                                   stdout=asyncio.subprocess.PIPE)
    try:
        first = json.loads(await asyncio.wait_for(process.stdout.readline(), 120))
        assert first.get("offset") == 16 * MiB, first
        upload_path = urlsplit(first["url"]).path
        assert upload_path.startswith("/api/v1/tus/")
        upload_id = upload_path.rsplit("/", 1)[1]
        await lease_taken(app, upload_id)  # the premise: the second PATCH is being received
        await asyncio.sleep(0.05)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        await process.wait()
    # what the server kept of the cut-off PATCH, asked as the draft asks (it takes the upload over)
    version = "6" if protocol == "ietf-draft-05" else "5"
    response = await client.head(upload_path, headers={**auth("alice"), "Upload-Draft-Interop-Version": version})
    assert response.status == 204 and response.headers["Upload-Complete"] == "?0"
    offset = int(response.headers["Upload-Offset"])
    assert 16 * MiB <= offset < len(data)
    assert await stored(app, bucket_id, key) is None
    result = await run_js(client, path, "plain", {"bucket": bucket_id, "key": key}, protocol=protocol,
                          chunkSize=16 * MiB, uploadUrl=first["url"])
    assert result["ok"], result
    assert result["url"] == first["url"]  # resumed, not created anew
    assert result["firstProgress"] == offset  # it went on from the server's offset
    assert sha256(await stored(app, bucket_id, key)) == sha256(data)
    row = await upload_row(app, upload_id)
    assert row["protocol"] == "ietf" and row["state"] == "completed"
