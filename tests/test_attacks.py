"""Attacks as tests, on a real app over real PostgreSQL and SeaweedFS. JWT attacks (alg=none,
HS/RS key confusion, expired, wrong aud/iss, tampered) live in tests/test_auth.py.

- IDOR: bob, who may even WRITE to alice's bucket, gets 404 for every id alice's uploads carry
  (tus and IETF URLs, offset upload ids, sessions, multipart upload ids), on every route, and
  none of his requests changes alice's upload;
- path traversal in keys and routes never leaves the bucket prefix and never reaches S3;
- oversized headers, JSON bodies and chunks are 4xx JSON;
- CORS with '*' never allows credentials;
- the logs the app wrote hold no token, secret or signature.
"""
from __future__ import annotations

import os

from chunked_helpers import MiB, S3View, make_bucket
from conftest import AppServer, auth
from tus_helpers import metadata

from sagestore.app import create_app

ALICE, BOB = auth("alice"), auth("bob")
TUS = {"Tus-Resumable": "1.0.0"}


async def alice_uploads(client, bucket_id: str) -> dict[str, str]:
    """One unfinished upload of alice's on every protocol; returns their ids/paths."""
    ids = {}
    response = await client.post("/api/v1/tus/", headers={**ALICE, **TUS, "Upload-Length": str(3 * MiB),
                                                           "Upload-Metadata": metadata(bucket=bucket_id, key="t.bin")})
    ids["tus"] = response.headers["Location"]
    await client.patch(ids["tus"], data=b"a" * 1000, headers={**ALICE, **TUS, "Upload-Offset": "0",
                                                               "Content-Type": "application/offset+octet-stream"})
    response = await client.post(f"/api/v1/uploads/?bucket={bucket_id}&key=i.bin",
                                 headers={**ALICE, "Upload-Complete": "?0"})
    ids["ietf"] = response.headers["Location"]
    response = await client.put(f"/api/v1/upload?bucket_id={bucket_id}&key=o.bin", data=b"o" * 1000, headers=ALICE)
    ids["offset"] = (await response.json())["upload_id"]
    response = await client.post("/api/v1/attachment/initiate", headers=ALICE, json={
        "bucket_id": bucket_id, "key": "s.bin", "fileName": "s.bin", "fileSize": 6 * MiB})
    ids["session"] = (await response.json())["sessionId"]
    response = await client.post("/api/v1/multipart/", headers=ALICE, json={
        "object_type": "model_version", "object_id": bucket_id, "key": "m.bin"})
    ids["multipart"] = (await response.json())["upload_id"]
    return ids


async def test_idor_on_every_upload_id(client):
    # bob holds WRITE on alice's bucket: still, her uploads are hers
    bucket_id = await make_bucket(client, grants=[("USER", "bob", "WRITE")])
    ids = await alice_uploads(client, bucket_id)
    session = f"/api/v1/attachment/session/{ids['session']}"
    multipart = {"object_type": "model_version", "object_id": bucket_id, "upload_id": ids["multipart"]}
    attempts = [
        ("HEAD", ids["tus"], {**TUS}, None, None),
        ("PATCH", ids["tus"], {**TUS, "Upload-Offset": "1000", "Content-Type": "application/offset+octet-stream"},
         b"evil", None),
        ("DELETE", ids["tus"], {**TUS}, None, None),
        ("HEAD", ids["ietf"], {}, None, None),
        ("PATCH", ids["ietf"], {"Upload-Offset": "0", "Upload-Complete": "?1",
                                "Content-Type": "application/partial-upload"}, b"evil", None),
        ("DELETE", ids["ietf"], {}, None, None),
        ("GET", f"/api/v1/upload?upload_id={ids['offset']}", {}, None, None),
        ("PUT", f"/api/v1/upload?upload_id={ids['offset']}&offset=1000", {}, b"evil", None),
        ("POST", "/api/v1/import_upload", {}, None, {"upload_id": ids["offset"]}),
        ("GET", f"/api/v1/import_upload/{ids['offset']}", {}, None, None),
        ("GET", session, {}, None, None),
        ("PUT", f"{session}/upload/1", {}, b"evil" * 10, None),
        ("POST", f"{session}/complete", {}, None, None),
        ("POST", f"{session}/abort", {}, None, None),
        ("GET", f"/api/v1/multipart/{ids['multipart']}/", {}, None, None),
        ("PUT", f"/api/v1/multipart/{ids['multipart']}/parts/1", {}, b"evil", None),
        ("POST", "/api/v1/multipart/part/", {}, None, {**multipart, "part_number": 1}),
        ("POST", "/api/v1/multipart/complete/", {}, None, {**multipart, "parts": [{"part_number": 1, "etag": "x"}]}),
        ("POST", "/api/v1/multipart/abort/", {}, None, multipart),
    ]
    for method, path, headers, data, body in attempts:
        response = await client.request(method, path, headers={**BOB, **headers}, data=data, json=body)
        assert response.status == 404, (method, path, response.status, await response.text())
        if method != "HEAD":
            assert "error" in await response.json()
    # nothing bob did changed anything of alice's
    response = await client.head(ids["tus"], headers={**ALICE, **TUS})
    assert response.status in (200, 204) and response.headers["Upload-Offset"] == "1000"
    assert (await client.head(ids["ietf"], headers=ALICE)).headers["Upload-Offset"] == "0"
    assert (await (await client.get(f"/api/v1/upload?upload_id={ids['offset']}", headers=ALICE)).json())["offset"] == 1000
    assert (await (await client.get(session, headers=ALICE)).json())["receivedChunks"] == []
    status = await (await client.get(f"/api/v1/multipart/{ids['multipart']}/", headers=ALICE)).json()
    assert status["parts"] == []
    # and an unknown or malformed id is the same 404 (no oracle)
    for path in ("/api/v1/tus/00000000-0000-0000-0000-000000000000", "/api/v1/tus/..%2F..%2Fetc",
                 "/api/v1/multipart/not-a-uuid/"):
        response = await client.request("HEAD" if "tus" in path else "GET", path, headers={**BOB, **TUS})
        assert response.status in (400, 404), (path, response.status)


async def test_path_traversal_in_keys_and_routes(client, settings):
    bucket_id = await make_bucket(client)
    other = await make_bucket(client, owner="bob")
    view = S3View(settings)
    # dot segments ("../x") are normalised away by HTTP clients before they are sent; the key
    # validator's own tests (tests/test_keys.py) cover them, and the encoded forms arrive here
    for key in ("a//b", f"..%2F{other}%2Fstolen", "a\\b", "%2e%2e/x", "a/%00b", "a/%2e%2e/%2e%2e/x"):
        response = await client.put(f"/api/v1/objects/{bucket_id}/{key}", data=b"evil", headers=ALICE)
        assert response.status in (400, 404), (key, response.status)
        assert "error" in await response.json()
    response = await client.post("/api/v1/tus/", headers={**ALICE, **TUS, "Upload-Length": "4",
                                                           "Upload-Metadata": metadata(bucket=bucket_id,
                                                                                       key=f"../{other}/x")})
    assert response.status == 400
    response = await client.put(f"/api/v1/upload?bucket_id={bucket_id}&key=../{other}/x", data=b"e", headers=ALICE)
    assert response.status == 400
    assert view.object(other, "stolen") is None and view.object(other, "x") is None


async def test_oversized_headers_bodies_and_json(client):
    bucket_id = await make_bucket(client)
    response = await client.get("/api/v1/objects", headers={**ALICE, "X-Big": "a" * 70_000})
    assert response.status in (400, 431)
    response = await client.post("/api/v1/attachment/initiate", headers={**ALICE, "Content-Type": "application/json"},
                                 data=b'{"a": "' + b"x" * (3 * MiB) + b'"}')
    assert response.status == 413 and "error" in await response.json()
    response = await client.post("/api/v1/multipart/", headers={**ALICE, "Content-Type": "application/json"},
                                 data=b"[" * 100_000 + b"]" * 100_000)
    assert response.status in (400, 413) and "error" in await response.json()
    response = await client.post("/api/v1/attachment/initiate", headers=ALICE, json={
        "bucket_id": bucket_id, "key": "k" * 5000, "fileName": "f", "fileSize": 10})
    assert response.status == 400 and "error" in await response.json()


async def test_cors_star_never_allows_credentials(aiohttp_client, settings):
    client = await aiohttp_client(AppServer(create_app(settings.replace(cors_origins=("*",)))))
    for method, path, extra in (("OPTIONS", "/api/v1/tus/", {"Access-Control-Request-Method": "POST"}),
                                ("GET", "/api/v1/objects", {}), ("GET", "/api/v1/", {})):
        response = await client.request(method, path, headers={"Origin": "https://evil.example", **ALICE, **extra})
        assert response.headers.get("Access-Control-Allow-Credentials", "false").lower() != "true", path


def test_logs_hold_no_token_or_secret(base_settings):
    """A real `sagestore serve` (its access log and its warnings) after requests that carry a
    token, signature-like query strings and failing inputs: none of them is in its output."""
    import requests
    from chunked_helpers import make_bucket_sync
    from conftest import ServerProcess

    server = ServerProcess(base_settings).start()
    try:
        secret_token = "user:alice;groups=" + os.urandom(8).hex()
        headers = {"Authorization": f"sage {secret_token}"}
        bucket_id = make_bucket_sync(base_settings.database_url)
        url = f"{server.url}/api/v1/objects/{bucket_id}"
        requests.put(f"{url}/log/a.bin?X-Amz-Signature=deadbeefcafe", data=b"x", headers=headers, timeout=30)
        requests.get(f"{url}/log/a.bin?signature=deadbeefcafe&token=deadbeefcafe", headers=headers, timeout=30)
        requests.get(f"{server.url}/api/v1/objects/not-a-uuid", headers=headers, timeout=30)
        requests.get(f"{server.url}/api/v1/", headers={"Authorization": "Bearer deadbeefcafe.x.y"}, timeout=30)
    finally:
        server.stop()
    logged = server.output
    assert "/log/a.bin" in logged, "the access log is not in the output"
    for secret in (secret_token.split("=")[1], "deadbeefcafe", base_settings.s3_secret_key,
                   base_settings.s3_access_key, base_settings.database_url):
        assert secret not in logged, f"{secret[:4]}... appears in the logs"
