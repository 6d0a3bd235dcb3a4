"""The IETF resumable-upload draft at /api/v1/uploads/ over raw HTTP: interop versions 5, 6 and 8,
104 interim responses read off a raw socket, offset retrieval, appends, 409 problem+json with the
right offset, Upload-Limit, digests, cancellation and takeover of a stalled request."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os

import http_sfv
import pytest
from support.premises import lease_taken
from support.tus import metadata, stored, stored_info
from support.data import MiB, auth, make_bucket

from sagestore import context
from sagestore.app import create_app

PARTIAL = {"Content-Type": "application/partial-upload"}


def limits(value: str) -> dict:
    parsed = http_sfv.Dictionary()
    parsed.parse(value.encode())
    return {key: member.value for key, member in parsed.items()}


def headers(version: int | None = 6, user: str | None = "alice", **extra: str) -> dict[str, str]:
    result = {**auth(user), **extra}
    if version is not None:
        result["Upload-Draft-Interop-Version"] = str(version)
    return result


async def read_responses(reader: asyncio.StreamReader) -> list[tuple[int, dict[str, str], bytes]]:
    """Every response head (interim ones included) up to the final one and its body."""
    responses = []
    while True:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        fields = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                fields[name.strip().lower()] = value.strip()
        body = b""
        if status >= 200:
            if int(fields.get("content-length", "0")):
                body = await reader.readexactly(int(fields["content-length"]))
            responses.append((status, fields, body))
            return responses
        responses.append((status, fields, body))


async def raw_request(client, method: str, path: str, fields: dict[str, str], body: bytes = b""):
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in fields.items()) + "\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    try:
        return await read_responses(reader)
    finally:
        writer.close()


@pytest.mark.parametrize("version", [5, 6, 8])
async def test_creation_sends_104_with_location_then_completes(client, version):
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(6 * MiB + 11)
    responses = await raw_request(client, "POST", f"/api/v1/uploads/?bucket={bucket_id}&key=ietf/{version}.bin",
                                  {**headers(version), "Upload-Complete": "?1", "Content-Type": "image/png",
                                   "Upload-Length": str(len(data))}, data)
    (interim_status, interim, _), (status, final, body) = responses
    assert interim_status == 104
    assert interim["upload-draft-interop-version"] == str(version)
    assert interim["location"].startswith("/api/v1/uploads/")
    assert ("upload-limit" in interim) == (version >= 6)
    if version >= 6:
        assert limits(interim["upload-limit"])["max-size"] == app[context.SETTINGS].max_upload_size
    assert status == 201 and final["upload-complete"] == "?1" and final["location"] == interim["location"]
    info = json.loads(body)
    assert info["key"] == f"ietf/{version}.bin" and info["size"] == len(data)
    assert await stored(app, bucket_id, f"ietf/{version}.bin") == data
    assert (await stored_info(app, bucket_id, f"ietf/{version}.bin")).content_type == "image/png"
    response = await client.head(interim["location"], headers=headers(version))
    assert response.status == 204 and response.headers["Upload-Complete"] == "?1"
    assert response.headers["Upload-Offset"] == str(len(data))


async def test_no_104_without_or_with_unknown_interop_version(client):
    bucket_id = await make_bucket(client.server.app)
    responses = await raw_request(client, "POST", f"/api/v1/uploads/?bucket={bucket_id}&key=plain",
                                  {**headers(None), "Upload-Complete": "?0"}, b"abc")
    assert [status for status, _, _ in responses] == [201]
    assert responses[0][1]["upload-offset"] == "3" and responses[0][1]["upload-complete"] == "?0"
    responses = await raw_request(client, "POST", f"/api/v1/uploads/?bucket={bucket_id}&key=old",
                                  {**headers(3), "Upload-Complete": "?0"}, b"abc")
    assert [status for status, _, _ in responses] == [400]


async def test_incremental_upload_with_offsets_and_409_problem(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(13 * MiB + 5)
    response = await client.post(f"/api/v1/uploads/?bucket={bucket_id}&key=parts.bin", data=data[:MiB],
                                 headers=headers(8, **{"Upload-Complete": "?0", "Upload-Length": str(len(data))}))
    assert response.status == 201
    location = response.headers["Location"]
    assert response.headers["Upload-Complete"] == "?0" and response.headers["Upload-Offset"] == str(MiB)
    assert limits(response.headers["Upload-Limit"])["max-age"] > 0
    response = await client.head(location, headers=headers(8))
    assert response.status == 204
    assert response.headers["Upload-Offset"] == str(MiB) and response.headers["Upload-Complete"] == "?0"
    assert response.headers["Upload-Length"] == str(len(data)) and response.headers["Cache-Control"] == "no-store"
    assert "max-size" in limits(response.headers["Upload-Limit"])
    response = await client.get(location, headers=headers(8))  # GET retrieves the offset too
    assert response.status == 204 and response.headers["Upload-Offset"] == str(MiB)
    # a wrong offset: 409, problem+json, the right Upload-Offset, nothing changed
    response = await client.patch(location, data=b"zzz", headers=headers(8, **PARTIAL, **{
        "Upload-Offset": "7", "Upload-Complete": "?0"}))
    assert response.status == 409
    assert response.content_type == "application/problem+json"
    assert response.headers["Upload-Offset"] == str(MiB) and response.headers["Upload-Complete"] == "?0"
    problem = await response.json()
    assert problem["type"] == "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
    assert problem["expected-offset"] == MiB and problem["provided-offset"] == 7
    response = await client.patch(location, data=data[MiB:9 * MiB], headers=headers(8, **PARTIAL, **{
        "Upload-Offset": str(MiB), "Upload-Complete": "?0"}))
    assert response.status == 204 and response.headers["Upload-Complete"] == "?0"
    assert response.headers["Upload-Offset"] == str(9 * MiB)
    assert await stored(app, bucket_id, "parts.bin") is None
    response = await client.patch(location, data=data[9 * MiB:], headers=headers(8, **PARTIAL, **{
        "Upload-Offset": str(9 * MiB), "Upload-Complete": "?1"}))
    assert response.status == 201 and response.headers["Upload-Complete"] == "?1"
    assert (await response.json())["size"] == len(data)
    assert await stored(app, bucket_id, "parts.bin") == data
    # the final answer was lost: an empty completing append replays it; anything else is refused
    response = await client.patch(location, data=b"", headers=headers(8, **PARTIAL, **{
        "Upload-Offset": str(len(data)), "Upload-Complete": "?1"}))
    assert response.status == 201 and (await response.json())["size"] == len(data)
    response = await client.patch(location, data=b"more", headers=headers(8, **PARTIAL, **{
        "Upload-Offset": str(len(data)), "Upload-Complete": "?0"}))
    assert response.status == 400
    assert (await response.json())["type"].endswith("#completed-upload")


async def test_append_media_type_rules_per_version(client):
    bucket_id = await make_bucket(client.server.app)
    for version, content_type, status in ((6, None, 415), (8, "application/offset+octet-stream", 415),
                                          (None, None, 415), (5, None, 201)):
        response = await client.post(f"/api/v1/uploads/?bucket={bucket_id}&key=t{version}",
                                     headers=headers(version, **{"Upload-Complete": "?0"}))
        location = response.headers["Location"]
        extra = {"Content-Type": content_type} if content_type else {}
        response = await client.patch(location, data=b"abc", headers=headers(version, **extra, **{
            "Upload-Offset": "0", "Upload-Complete": "?0"}))
        assert response.status == status, version
        if status == 415:
            assert response.headers["Upload-Complete"] == "?0"


async def test_bad_requests(client):
    app = client.server.app
    bucket_id = await make_bucket(app, grants=[("USER", "bob", "READ")])
    target = f"/api/v1/uploads/?bucket={bucket_id}&key=bad"
    for fields, status in (({}, 400),                                   # no Upload-Complete
                           ({"Upload-Complete": "yes"}, 400),           # not a structured boolean
                           ({"Upload-Complete": "?0", "Upload-Length": "-3"}, 400),
                           ({"Upload-Complete": "?1", "Upload-Length": "99"}, 400)):  # != Content-Length
        response = await client.post(target, data=b"abc", headers=headers(6, **fields))
        assert response.status == status, fields
    response = await client.post(target, data=b"abc", headers=headers(6, **{"Upload-Complete": "?1",
                                                                           "Upload-Length": "99"}))
    assert (await response.json())["type"].endswith("#inconsistent-upload-length")
    for path, user, status in (("/api/v1/uploads/?key=x", "alice", 400), (target, "bob", 403),
                               (target, "carol", 404), (target, None, 401),
                               (f"/api/v1/uploads/?bucket={bucket_id}&key=../x", "alice", 400)):
        response = await client.post(path, headers=headers(6, user, **{"Upload-Complete": "?0"}))
        assert response.status == status, (path, user)
    response = await client.post(target, headers=headers(5, **{"Upload-Complete": "?0", "Upload-Offset": "0"}))
    assert response.status == 400
    location = (await client.post(target, headers=headers(6, **{"Upload-Complete": "?0"}))).headers["Location"]
    for fields in ({"Upload-Complete": "?0"}, {"Upload-Offset": "0"}, {"Upload-Offset": "x", "Upload-Complete": "?0"}):
        response = await client.patch(location, data=b"a", headers=headers(6, **PARTIAL, **fields))
        assert response.status == 400, fields
    assert (await client.head(location, headers=headers(5, **{"Upload-Offset": "0"}))).status == 400
    assert (await client.head(location, headers=headers(6, "bob"))).status == 404


async def test_upload_limit_and_413(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.replace(max_upload_size=4 * MiB)))
    bucket_id = await make_bucket(client.server.app)
    response = await client.options("/api/v1/uploads/")
    assert response.status == 204
    assert limits(response.headers["Upload-Limit"]) == {"max-size": 4 * MiB,
                                                        "max-age": int(settings.upload_ttl)}
    response = await client.post(f"/api/v1/uploads/?bucket={bucket_id}&key=big", headers=headers(8, **{
        "Upload-Complete": "?0", "Upload-Length": str(4 * MiB + 1)}))
    assert response.status == 413 and "Upload-Limit" in response.headers
    # without a declared length, appends cannot pass the maximum either
    response = await client.post(f"/api/v1/uploads/?bucket={bucket_id}&key=grow", headers=headers(8, **{
        "Upload-Complete": "?0"}))
    location = response.headers["Location"]
    response = await client.patch(location, data=os.urandom(4 * MiB + 1), headers=headers(8, **PARTIAL, **{
        "Upload-Offset": "0", "Upload-Complete": "?1"}))
    assert response.status == 413
    assert (await client.head(location, headers=headers(8))).headers["Upload-Offset"] == "0"


async def test_digests(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = b"representation data"

    def sfv(name: str, raw: bytes) -> str:
        return f"{name}=:{base64.b64encode(raw).decode()}:"
    response = await client.post(f"/api/v1/uploads/?bucket={bucket_id}&key=digest", data=data[:5], headers=headers(
        8, **{"Upload-Complete": "?0", "Content-Digest": sfv("sha-256", hashlib.sha256(b"wrong").digest()),
              "Repr-Digest": sfv("sha-256", hashlib.sha256(data).digest())}))
    assert response.status == 400 and response.headers["Location"]
    location = response.headers["Location"]
    assert (await client.head(location, headers=headers(8))).headers["Upload-Offset"] == "0"
    response = await client.patch(location, data=data, headers=headers(8, **PARTIAL, **{
        "Upload-Offset": "0", "Upload-Complete": "?1", "Content-Digest": sfv("sha-256", hashlib.sha256(data).digest())}))
    assert response.status == 201
    assert (await response.json())["sha256"] == hashlib.sha256(data).hexdigest()
    # a representation digest that does not match publishes nothing
    response = await client.post(f"/api/v1/uploads/?bucket={bucket_id}&key=wrong", data=data, headers=headers(
        8, **{"Upload-Complete": "?1", "Repr-Digest": sfv("sha-256", hashlib.sha256(b"other").digest())}))
    assert response.status == 400 and response.headers["Upload-Complete"] == "?1"
    assert await stored(app, bucket_id, "wrong") is None


async def test_upload_metadata_and_content_disposition_targets(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    response = await client.post("/api/v1/uploads/", data=b"tus-js", headers=headers(6, **{
        "Upload-Complete": "?1", "Upload-Metadata": metadata(bucket=bucket_id, filename="a.txt",
                                                             filetype="text/plain")}))
    assert response.status == 201 and (await response.json())["key"] == "a.txt"
    assert (await stored_info(app, bucket_id, "a.txt")).content_type == "text/plain"
    response = await client.post(f"/api/v1/uploads/?bucket={bucket_id}", data=b"cd", headers=headers(8, **{
        "Upload-Complete": "?1", "Content-Disposition": 'inline; filename="report 1.pdf"'}))
    assert response.status == 201 and await stored(app, bucket_id, "report 1.pdf") == b"cd"


async def test_cancel_and_cross_protocol_status(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    response = await client.post(f"/api/v1/uploads/?bucket={bucket_id}&key=cancel", data=os.urandom(6 * MiB),
                                 headers=headers(6, **{"Upload-Complete": "?0"}))
    location = response.headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    status = await (await client.get(f"/api/v1/multipart/{upload_id}/", headers=auth("alice"))).json()
    assert status["protocol"] == "ietf" and status["offset"] == 6 * MiB
    # the same engine row answers tus too
    response = await client.head(f"/api/v1/tus/{upload_id}", headers={**auth("alice"), "Tus-Resumable": "1.0.0"})
    assert response.headers["Upload-Offset"] == str(6 * MiB) and response.headers["Upload-Defer-Length"] == "1"
    assert (await client.delete(location, headers=headers(5, **{"Upload-Complete": "?0"}))).status == 400
    assert (await client.delete(location, headers=headers(6))).status == 204
    assert (await client.head(location, headers=headers(6))).status == 404
    assert (await client.patch(location, data=b"x", headers=headers(6, **PARTIAL, **{
        "Upload-Offset": str(6 * MiB), "Upload-Complete": "?1"}))).status == 404


async def test_new_append_takes_over_a_stalled_one(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(8 * MiB)
    response = await client.post(f"/api/v1/uploads/?bucket={bucket_id}&key=takeover",
                                 headers=headers(6, **{"Upload-Complete": "?0"}))
    location = response.headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write((f"PATCH {location} HTTP/1.1\r\nHost: test\r\nAuthorization: sage user:alice\r\n"
                  f"Upload-Draft-Interop-Version: 6\r\nContent-Type: application/partial-upload\r\n"
                  f"Upload-Offset: 0\r\nUpload-Complete: ?1\r\nContent-Length: {len(data)}\r\n\r\n").encode()
                 + data[:3 * MiB])
    await writer.drain()
    await lease_taken(app, upload_id)  # the premise: the stalled request holds the upload
    response = await client.patch(location, data=data, headers=headers(6, **PARTIAL, **{
        "Upload-Offset": "0", "Upload-Complete": "?1"}))
    assert response.status == 201, await response.text()
    writer.write(data[3 * MiB:])
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 60)
    assert answer.split(b" ")[1] == b"409", answer[:300]  # fenced: its lease is gone, it kept nothing
    writer.close()
    assert await stored(app, bucket_id, "takeover") == data
