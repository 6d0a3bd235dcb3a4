"""The IETF draft on the tus endpoint (issue 16, as tusd serves both): over raw HTTP, a creation POST to
/api/v1/tus/ that carries the draft's headers is served as IETF and located under /api/v1/tus/; HEAD,
PATCH and DELETE there answer in the protocol the request speaks, or, when it names none, in the
upload's own; plain tus is unchanged (412 without Tus-Resumable, tus headers, tus error codes)."""
from __future__ import annotations

import os
import uuid

import pytest
from support.premises import upload_row
from test_ietf_protocol import limits, raw_request
from support.tus import TUS, metadata, stored, tus_headers
from support.data import MiB, auth, make_bucket

PARTIAL = {"Content-Type": "application/partial-upload"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}
TUS_ENDPOINT = "/api/v1/tus/"


def ietf(version: int | None = 6, user: str | None = "alice", **extra: str) -> dict[str, str]:
    result = {**auth(user), **extra}
    if version is not None:
        result["Upload-Draft-Interop-Version"] = str(version)
    return result


def upload_id(location: str) -> str:
    return location.rsplit("/", 1)[1]


async def ietf_create(client, bucket_id: str, key: str, data: bytes = b"", version: int | None = 6,
                      user: str = "alice", **extra: str) -> str:
    response = await client.post(TUS_ENDPOINT, data=data, headers=ietf(version, user, **{
        "Upload-Complete": "?0", "Upload-Metadata": metadata(bucket=bucket_id, key=key), **extra}))
    assert response.status == 201, await response.text()
    assert "Tus-Resumable" not in response.headers
    return response.headers["Location"]


async def tus_create(client, bucket_id: str, key: str, length: int) -> str:
    response = await client.post(TUS_ENDPOINT, headers=tus_headers(**{
        "Upload-Length": str(length), "Upload-Metadata": metadata(bucket=bucket_id, key=key)}))
    assert response.status == 201, await response.text()
    return response.headers["Location"]


def is_ietf_answer(response) -> bool:
    return "Upload-Complete" in response.headers and "Tus-Resumable" not in response.headers


def is_tus_answer(response) -> bool:
    return response.headers.get("Tus-Resumable") == "1.0.0" and "Upload-Complete" not in response.headers


@pytest.mark.parametrize("version", [5, 6, 8])
async def test_creation_with_the_draft_header_is_ietf_with_104_and_located_under_tus(client, version):
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(6 * MiB + 7)
    responses = await raw_request(client, "POST", f"{TUS_ENDPOINT}?bucket={bucket_id}&key=v{version}.bin", {
        **ietf(version), "Upload-Complete": "?1", "Upload-Length": str(len(data)), "Content-Type": "image/png"}, data)
    (interim_status, interim, _), (status, final, _) = responses
    assert interim_status == 104 and interim["upload-draft-interop-version"] == str(version)
    assert interim["location"].startswith(TUS_ENDPOINT) and final["location"] == interim["location"]
    assert status == 201 and final["upload-complete"] == "?1" and "tus-resumable" not in final
    assert await stored(app, bucket_id, f"v{version}.bin") == data
    row = await upload_row(app, upload_id(final["location"]))
    assert row["protocol"] == "ietf" and row["state"] == "completed"


async def test_creation_with_upload_complete_and_no_tus_resumable_is_ietf(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    location = await ietf_create(client, bucket_id, "unversioned.bin", b"abc", version=None)
    assert location.startswith(TUS_ENDPOINT)
    assert (await upload_row(app, upload_id(location)))["protocol"] == "ietf"
    # Upload-Complete beside Tus-Resumable is a tus request (tus ignores the field), as before
    response = await client.post(TUS_ENDPOINT, headers=tus_headers(**{
        "Upload-Complete": "?0", "Upload-Length": "3", "Upload-Metadata": metadata(bucket=bucket_id, key="t.bin")}))
    assert response.status == 201 and is_tus_answer(response)
    assert (await upload_row(app, upload_id(response.headers["Location"])))["protocol"] == "tus"
    # neither: tus's 412, as before
    response = await client.post(TUS_ENDPOINT, headers={**auth("alice"), "Upload-Length": "3"})
    assert response.status == 412 and response.headers["Tus-Version"] == "1.0.0"


async def test_ietf_upload_head_patch_delete_under_tus_answer_ietf(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    data = os.urandom(7 * MiB + 3)
    location = await ietf_create(client, bucket_id, "ietf.bin", data[:MiB], **{"Upload-Length": str(len(data))})
    assert location == f"{TUS_ENDPOINT}{upload_id(location)}"
    # HEAD with the draft's header, and without any (a final-RFC client sends none): the upload's protocol
    for fields in (ietf(6), ietf(None)):
        response = await client.head(location, headers=fields)
        assert response.status == 204 and is_ietf_answer(response), fields
        assert response.headers["Upload-Offset"] == str(MiB) and response.headers["Upload-Complete"] == "?0"
        assert response.headers["Upload-Length"] == str(len(data)) and "max-size" in limits(
            response.headers["Upload-Limit"])
    # a wrong offset: the draft's 409 problem with the right offset (tus would say nothing of the kind)
    response = await client.patch(location, data=b"zz", headers=ietf(6, **PARTIAL, **{
        "Upload-Offset": "5", "Upload-Complete": "?0"}))
    assert response.status == 409 and response.content_type == "application/problem+json"
    assert response.headers["Upload-Offset"] == str(MiB) and "Tus-Resumable" not in response.headers
    problem = await response.json()
    assert problem["type"].endswith("#mismatching-upload-offset") and problem["error"]
    # the draft's media type rule, not tus's (application/offset+octet-stream is tus's, 415 here)
    response = await client.patch(location, data=b"zz", headers=ietf(6, **OCTETS, **{
        "Upload-Offset": str(MiB), "Upload-Complete": "?0"}))
    assert response.status == 415 and is_ietf_answer(response)
    response = await client.patch(location, data=data[MiB:6 * MiB], headers=ietf(6, **PARTIAL, **{
        "Upload-Offset": str(MiB), "Upload-Complete": "?0"}))
    assert response.status == 204 and is_ietf_answer(response)
    assert response.headers["Upload-Offset"] == str(6 * MiB)
    # interop 5 answers an append with 201
    response = await client.patch(location, data=data[6 * MiB:7 * MiB], headers=ietf(5, **{
        "Upload-Offset": str(6 * MiB), "Upload-Complete": "?0"}))
    assert response.status == 201 and response.headers["Upload-Offset"] == str(7 * MiB)
    # a PATCH with no version header but Upload-Complete completes it: 201 with the file's info
    response = await client.patch(location, data=data[7 * MiB:], headers=ietf(None, **PARTIAL, **{
        "Upload-Offset": str(7 * MiB), "Upload-Complete": "?1"}))
    assert response.status == 201 and response.headers["Upload-Complete"] == "?1"
    assert (await response.json())["size"] == len(data)
    assert await stored(app, bucket_id, "ietf.bin") == data
    assert (await upload_row(app, upload_id(location)))["protocol"] == "ietf"


async def test_ietf_upload_delete_under_tus_is_ietf_cancellation(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    location = await ietf_create(client, bucket_id, "cancel.bin", b"abc")
    # interop 5 forbids upload fields on a cancellation: the draft's 400, not a tus termination
    response = await client.delete(location, headers=ietf(5, **{"Upload-Complete": "?0"}))
    assert response.status == 400 and is_ietf_answer(response)
    response = await client.delete(location, headers=ietf(None))  # no protocol named: the upload's own
    assert response.status == 204 and "Tus-Resumable" not in response.headers
    response = await client.head(location, headers=ietf(6))
    assert response.status == 404 and is_ietf_answer(response)
    assert (await upload_row(app, upload_id(location)))["state"] == "aborted"
    # once it is gone, a request naming no protocol gets tus's answer, like any missing upload
    response = await client.head(location, headers=ietf(None))
    assert response.status == 412 and response.headers["Tus-Version"] == "1.0.0"


async def test_tus_upload_under_tus_is_unchanged(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    location = await tus_create(client, bucket_id, "tus.bin", 10)
    assert (await upload_row(app, upload_id(location)))["protocol"] == "tus"
    response = await client.patch(location, data=b"01234", headers=tus_headers(**OCTETS, **{"Upload-Offset": "0"}))
    assert response.status == 204 and is_tus_answer(response) and response.headers["Upload-Offset"] == "5"
    response = await client.head(location, headers=tus_headers())
    assert response.status == 204 and is_tus_answer(response)
    assert response.headers["Upload-Offset"] == "5" and response.headers["Upload-Length"] == "10"
    # tus's 409 (not the draft's problem+json)
    response = await client.patch(location, data=b"x", headers=tus_headers(**OCTETS, **{"Upload-Offset": "2"}))
    assert response.status == 409 and is_tus_answer(response) and response.content_type == "application/json"
    assert response.headers["Upload-Offset"] == "5"
    # the draft's media type on a tus request is tus's 415
    response = await client.patch(location, data=b"x", headers=tus_headers(**PARTIAL, **{"Upload-Offset": "5"}))
    assert response.status == 415 and is_tus_answer(response)
    # no Tus-Resumable and no draft header: refused with 412, as before, by every method
    for method, extra in (("PATCH", {**OCTETS, "Upload-Offset": "5"}), ("HEAD", {}), ("DELETE", {})):
        response = await client.request(method, location, data=b"56789" if method == "PATCH" else None,
                                        headers={**auth("alice"), **extra})
        assert response.status == 412, method
        assert response.headers["Tus-Version"] == "1.0.0" and response.headers["Tus-Resumable"] == "1.0.0"
        if method != "HEAD":
            assert "Tus-Resumable" in (await response.json())["error"]
    response = await client.patch(location, data=b"56789", headers=tus_headers(**OCTETS, **{"Upload-Offset": "5"}))
    assert response.status == 204 and is_tus_answer(response)
    assert await stored(app, bucket_id, "tus.bin") == b"0123456789"
    response = await client.head(location, headers=tus_headers())
    assert response.status == 204 and response.headers["Upload-Offset"] == "10" and is_tus_answer(response)


async def test_a_request_speaking_the_draft_to_a_tus_upload_is_ietf_as_under_uploads(client):
    """The request's own protocol wins when it names one, as /api/v1/uploads/ continues tus uploads."""
    bucket_id = await make_bucket(client.server.app)
    location = await tus_create(client, bucket_id, "cross.bin", 6)
    response = await client.head(location, headers=ietf(6))
    assert response.status == 204 and is_ietf_answer(response) and response.headers["Upload-Offset"] == "0"
    response = await client.patch(location, data=b"abcdef", headers=ietf(6, **PARTIAL, **{
        "Upload-Offset": "0", "Upload-Complete": "?1"}))
    assert response.status == 201 and (await response.json())["size"] == 6
    assert await stored(client.server.app, bucket_id, "cross.bin") == b"abcdef"


async def test_ownership_and_acl_are_the_same_for_ietf_on_tus(client):
    app = client.server.app
    bucket_id = await make_bucket(app, grants=[("USER", "bob", "READ")])
    location = await ietf_create(client, bucket_id, "mine.bin", b"abc")
    missing = f"{TUS_ENDPOINT}{uuid.uuid4()}"
    # another user's upload id is answered exactly as a missing one, in either protocol
    for fields in (ietf(6, "bob"), tus_headers("bob")):
        theirs = await client.head(location, headers=fields)
        absent = await client.head(missing, headers=fields)
        assert theirs.status == absent.status == 404
        assert dict(theirs.headers).keys() - {"Date"} == dict(absent.headers).keys() - {"Date"}
        theirs = await client.patch(location, data=b"d", headers={**fields, **PARTIAL, "Upload-Offset": "3",
                                                                  "Upload-Complete": "?0"})
        absent = await client.patch(missing, data=b"d", headers={**fields, **PARTIAL, "Upload-Offset": "3",
                                                                 "Upload-Complete": "?0"})
        assert theirs.status == absent.status and await theirs.json() == await absent.json()
    for target in (location, missing):  # naming no protocol: tus's 412 for both
        response = await client.delete(target, headers=auth("bob"))
        assert response.status == 412 and response.headers["Tus-Version"] == "1.0.0"
    response = await client.delete(location, headers=auth(None))
    assert response.status == 412
    assert (await upload_row(app, upload_id(location)))["state"] == "open"
    # creating: 403 with READ only, 404 without, 401 anonymous, with the house's error JSON
    for user, status in (("bob", 403), ("carol", 404), (None, 401)):
        response = await client.post(TUS_ENDPOINT, data=b"x", headers=ietf(6, user, **{
            "Upload-Complete": "?1", "Upload-Metadata": metadata(bucket=bucket_id, key="no.bin")}))
        assert response.status == status, user
        assert (await response.json())["error"] and response.headers["Upload-Complete"] == "?0"
    assert await stored(app, bucket_id, "no.bin") is None


async def test_options_under_tus(client):
    response = await client.options(TUS_ENDPOINT)
    assert response.status == 204 and response.headers["Tus-Version"] == "1.0.0"
    assert "Upload-Limit" not in response.headers
    response = await client.options(TUS_ENDPOINT, headers={**TUS, "Upload-Draft-Interop-Version": "6"})
    assert response.status == 204 and "Tus-Version" not in response.headers
    assert limits(response.headers["Upload-Limit"])["max-size"] > 0
