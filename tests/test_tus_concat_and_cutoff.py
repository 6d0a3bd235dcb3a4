"""tus concatenation (partial uploads assembled by UploadPartCopy wherever S3 allows) and PATCH
bodies cut off mid-transfer, on real PostgreSQL and SeaweedFS."""
from __future__ import annotations

import asyncio
import os

from support.premises import lease_taken, upload_row
from support.tus import metadata, stored, tus_headers
from support.data import MiB, make_bucket

from sagestore import context
from sagestore.db import cursor

OCTETS = {"Content-Type": "application/offset+octet-stream"}


async def _partial(client, data: bytes, upload: bool = True) -> str:
    response = await client.post("/api/v1/tus/", headers=tus_headers(**{
        "Upload-Concat": "partial", "Upload-Length": str(len(data))}))
    assert response.status == 201, await response.text()
    url = response.headers["Location"]
    if upload:
        response = await client.patch(url, data=data, headers=tus_headers(**OCTETS, **{"Upload-Offset": "0"}))
        assert response.status == 204, await response.text()
    return url


async def test_concatenation_of_finished_partials(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    pieces = [os.urandom(6 * MiB), os.urandom(1024), os.urandom(7 * MiB), os.urandom(3)]
    urls = [await _partial(client, piece) for piece in pieces]
    response = await client.head(urls[1], headers=tus_headers())
    assert response.headers["Upload-Concat"] == "partial" and response.headers["Upload-Offset"] == "1024"
    absolute = [str(client.make_url(url)) for url in urls[:2]] + urls[2:]  # absolute and relative URLs
    response = await client.post("/api/v1/tus/", headers=tus_headers(**{
        "Upload-Concat": "final;" + " ".join(absolute),
        "Upload-Metadata": metadata(bucket=bucket_id, key="joined.bin", filetype="application/x-test")}))
    assert response.status == 201, await response.text()
    final = response.headers["Location"]
    assert await stored(app, bucket_id, "joined.bin") == b"".join(pieces)
    response = await client.head(final, headers=tus_headers())
    total = str(sum(map(len, pieces)))
    assert response.headers["Upload-Offset"] == total and response.headers["Upload-Length"] == total
    assert response.headers["Upload-Concat"] == "final;" + " ".join(absolute)
    # the big partials were copied server-side: the final's parts 1 and 3 have exactly their sizes
    async with cursor(app[context.DB]) as cur:
        await cur.execute("SELECT part_number, size FROM upload_parts WHERE upload_id = %s ORDER BY part_number",
                          (final.rsplit("/", 1)[1],))
        parts = [(row["part_number"], row["size"]) for row in await cur.fetchall()]
    assert parts[0] == (1, 6 * MiB)
    assert sum(size for _, size in parts) == int(total)
    response = await client.patch(final, data=b"x", headers=tus_headers(**OCTETS, **{"Upload-Offset": total}))
    assert response.status == 403


async def test_concatenation_unfinished(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    pieces = [os.urandom(5 * MiB + 1), os.urandom(2 * MiB)]
    urls = [await _partial(client, piece, upload=False) for piece in pieces]
    response = await client.post("/api/v1/tus/", headers=tus_headers(**{
        "Upload-Concat": "final;" + " ".join(urls), "Upload-Metadata": metadata(bucket=bucket_id, key="later.bin")}))
    assert response.status == 201
    final = response.headers["Location"]
    response = await client.head(final, headers=tus_headers())
    assert response.status == 204 and "Upload-Offset" not in response.headers
    assert response.headers["Upload-Length"] == str(sum(map(len, pieces)))
    # the partials finish in reverse order; the last one to finish assembles the final upload
    for url, piece in reversed(list(zip(urls, pieces))):
        assert await stored(app, bucket_id, "later.bin") is None
        response = await client.patch(url, data=piece, headers=tus_headers(**OCTETS, **{"Upload-Offset": "0"}))
        assert response.status == 204
    assert await stored(app, bucket_id, "later.bin") == b"".join(pieces)
    response = await client.head(final, headers=tus_headers())
    assert response.headers["Upload-Offset"] == str(sum(map(len, pieces)))


async def test_concatenation_errors(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    mine = await _partial(client, b"abc")
    other = await client.post("/api/v1/tus/", headers=tus_headers("bob", **{"Upload-Concat": "partial",
                                                                            "Upload-Length": "3"}))
    normal = await client.post("/api/v1/tus/", headers=tus_headers(**{
        "Upload-Length": "3", "Upload-Metadata": metadata(bucket=bucket_id, key="n")}))
    target = metadata(bucket=bucket_id, key="bad.bin")
    for concat, status in ((f"final;{other.headers['Location']}", 404), (f"final;{normal.headers['Location']}", 400),
                           ("final;", 400), ("final;/elsewhere/x", 400), ("whatever", 400)):
        response = await client.post("/api/v1/tus/", headers=tus_headers(**{"Upload-Concat": concat,
                                                                            "Upload-Metadata": target}))
        assert response.status == status, concat
    response = await client.post("/api/v1/tus/", headers=tus_headers(**{
        "Upload-Concat": f"final;{mine}", "Upload-Length": "3", "Upload-Metadata": target}))
    assert response.status == 400  # a final upload has no Upload-Length of its own
    response = await client.post("/api/v1/tus/", headers=tus_headers(**{"Upload-Concat": f"final;{mine}"}))
    assert response.status == 400  # and needs a target
    assert await stored(app, bucket_id, "bad.bin") is None


async def _raw_cut_off_patch(client, url: str, offset: int, declared: int, data: bytes) -> None:
    """A PATCH that announces `declared` bytes, sends `data`, and drops the connection."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    head = (f"PATCH {url} HTTP/1.1\r\nHost: test\r\nTus-Resumable: 1.0.0\r\nAuthorization: sage user:alice\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {declared}\r\n\r\n")
    writer.write(head.encode() + data)
    await writer.drain()
    await lease_taken(client.server.app, url.rsplit("/", 1)[1])  # the request is under way
    await asyncio.sleep(0.3)  # and has read what was sent (nothing shows that; the offset asserts prove it)
    writer.transport.abort()


async def _offset_when_settled(client, url: str) -> int:
    """HEAD once the server has finished with the cut-off request (its lease is released)."""
    upload_id = url.rsplit("/", 1)[1]
    for _ in range(2400):
        async with cursor(client.server.app[context.DB]) as cur:
            await cur.execute("SELECT writer FROM uploads WHERE id = %s", (upload_id,))
            if (await cur.fetchone())["writer"] is None:
                break
        await asyncio.sleep(0.05)
    response = await client.head(url, headers=tus_headers())
    return int(response.headers["Upload-Offset"])


async def test_cut_off_patch_keeps_every_durable_byte(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(40 * MiB)
    response = await client.post("/api/v1/tus/", headers=tus_headers(**{
        "Upload-Length": str(len(data)), "Upload-Metadata": metadata(bucket=bucket_id, key="cut.bin")}))
    url = response.headers["Location"]
    # cut inside the first part (only a staged tail), then past a full part plus a tail
    sent = 3 * MiB + 17
    await _raw_cut_off_patch(client, url, 0, len(data), data[:sent])
    assert await _offset_when_settled(client, url) == sent
    more = 20 * MiB + 5
    await _raw_cut_off_patch(client, url, sent, len(data) - sent, data[sent:sent + more])
    offset = await _offset_when_settled(client, url)
    assert offset == sent + more
    response = await client.patch(url, data=data[offset:], headers=tus_headers(**OCTETS, **{
        "Upload-Offset": str(offset)}))
    assert response.status == 204 and response.headers["Upload-Offset"] == str(len(data))
    assert await stored(app, bucket_id, "cut.bin") == data


async def test_head_right_after_a_cut_off_reports_what_was_kept(client):
    """The HEAD of a client reconnecting at once waits for the cut-off request to commit. The
    premise, that the HEAD came while that request still held the upload, shows in the takeover
    metric; an attempt where the commit won the race is repeated, and five such attempts fail."""
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(12 * MiB)
    registry = app[context.METRICS].registry

    def finished_takeovers() -> float:
        return registry.get_sample_value("sagestore_upload_takeovers_total", {"outcome": "finished"}) or 0.0
    for attempt in range(5):
        response = await client.post("/api/v1/tus/", headers=tus_headers(**{
            "Upload-Length": str(len(data)), "Upload-Metadata": metadata(bucket=bucket_id, key=f"quick{attempt}.bin")}))
        url = response.headers["Location"]
        before = finished_takeovers()
        await _raw_cut_off_patch(client, url, 0, len(data), data[:7 * MiB + 3])
        response = await client.head(url, headers=tus_headers())
        assert response.headers["Upload-Offset"] == str(7 * MiB + 3)
        if finished_takeovers() == before + 1:
            return  # the HEAD waited for the cut-off request, and reported what it committed
    raise AssertionError("premise not reached in 5 attempts: every cut-off request had committed before its HEAD")


async def test_stalled_patch_is_taken_over_by_a_new_one(client):
    """A PATCH whose client went silent (no FIN) is cut off by the next request for the upload."""
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(9 * MiB)
    response = await client.post("/api/v1/tus/", headers=tus_headers(**{
        "Upload-Length": str(len(data)), "Upload-Metadata": metadata(bucket=bucket_id, key="stall.bin")}))
    url = response.headers["Location"]
    upload_id = url.rsplit("/", 1)[1]
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write((f"PATCH {url} HTTP/1.1\r\nHost: test\r\nTus-Resumable: 1.0.0\r\nAuthorization: sage user:alice\r\n"
                  f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n").encode() + data[:2 * MiB])
    await writer.drain()
    await lease_taken(app, upload_id)  # the premise: the stalled request holds the upload
    response = await client.head(url, headers=tus_headers())
    assert response.status == 204 and response.headers["Upload-Offset"] == "0"
    fenced = await upload_row(app, upload_id)
    assert fenced["writer"] is None and fenced["acknowledged_offset"] == 0
    response = await client.patch(url, data=data, headers=tus_headers(**OCTETS, **{"Upload-Offset": "0"}))
    assert response.status == 204 and response.headers["Upload-Offset"] == str(len(data))
    # the old request wakes up and sends the rest: it is refused and changes nothing
    writer.write(data[2 * MiB:])
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 60)
    assert answer.split(b" ")[1] == b"409", answer[:300]  # fenced: its lease is gone, it kept nothing
    writer.close()
    assert await stored(app, bucket_id, "stall.bin") == data
