"""Attacks as tests, on a real app over real PostgreSQL and SeaweedFS. JWT attacks (alg=none,
HS/RS key confusion, expired, wrong aud/iss, tampered) live in tests/test_auth.py.

- IDOR: bob, who may even WRITE to alice's bucket, gets 404 for every id alice's uploads carry
  (tus and IETF URLs, offset upload ids, sessions, multipart upload ids), on every route, and
  none of his requests changes alice's upload;
- IDOR on OSDU FileIDs and record ids (another partition's admin gets what an unknown id gets,
  no role in alice's partition is 400, anonymous 401) and on share ids (403/404/401, listings
  show only the caller's links); nothing of alice's changes;
- path traversal in keys and routes never leaves the bucket prefix and never reaches S3;
- oversized headers, JSON bodies and chunks are 4xx JSON;
- CORS with '*' never allows credentials;
- the logs the app wrote hold no token, secret or signature.
"""
from __future__ import annotations

import os

from support.chunked import S3View
from support.apps import AppServer
from support.tus import metadata
from support.data import MiB, auth, make_bucket

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
    from support.data import create_bucket_row
    from support.server import ServerProcess

    server = ServerProcess(base_settings).start()
    try:
        secret_token = "user:alice;groups=" + os.urandom(8).hex()
        headers = {"Authorization": f"sage {secret_token}"}
        bucket_id = create_bucket_row(base_settings.database_url)
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


# --- IDOR on OSDU FileIDs and record ids, and on share-link ids ------------------------------------
OSDU = "/api/file/v2"
PART_A, PART_B = "idor-a", "idor-b"


def osdu_headers(user: str | None, partition: str, *groups: str) -> dict[str, str]:
    return {**auth(user, groups), "Data-Partition-Id": partition}


async def json_answer(response) -> dict:
    assert response.content_type == "application/json", (response.status, await response.text())
    body = await response.json()
    assert isinstance(body.get("error"), str), body
    return body


def osdu_state(database_url: str, file_id: str) -> tuple:
    """alice's file row and the state of every URL issued for it, straight from the database."""
    import psycopg2
    with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
        cur.execute("""SELECT partition_id, bucket_id::text, key, location, created_by, uploaded_at, size, sha256,
                              metadata_id, metadata::text FROM osdu_files WHERE file_id = %s ORDER BY partition_id""",
                    (file_id,))
        files = cur.fetchall()
        cur.execute("""SELECT id::text, method, revoked_at, uploaded_at FROM signed_urls
                       WHERE file_id = %s AND partition_id = %s ORDER BY id""", (file_id, PART_A))
        urls = cur.fetchall()
    connection.close()
    return files, urls


async def test_idor_on_osdu_file_ids_and_record_ids(aiohttp_client, settings, database_url):
    """alice (admin of partition A) uploads a file and registers its record. mallory, admin of
    partition B, names alice's FileID and record id on every OSDU route: in his own partition each
    answer is the one an unknown id gets (404, or OSDU's 400/204 where the seed says so) and in
    alice's partition he has no role (400, the seed's answer); anonymous is 401; his plain SAGE
    calls on the partition's bucket are 404. Afterwards alice's row, record, URLs and bytes are as
    they were, and her pending PUT URL still uploads."""
    import hashlib
    import json
    from urllib.parse import parse_qs, urlsplit

    import aiohttp

    from sagestore.osdu import partition_bucket_id

    client = await aiohttp_client(AppServer(create_app(settings.replace(osdu_partitions=(PART_A, PART_B)))))
    alice = osdu_headers("alice", PART_A, f"service.file.admin@{PART_A}")
    file_id = f"idor-{os.urandom(6).hex()}.las"
    pending_id = f"idor-pending-{os.urandom(6).hex()}"
    data = os.urandom(300_000)

    response = await client.post(f"{OSDU}/getLocation", json={"FileID": file_id}, headers=alice)
    assert response.status == 200, await response.text()
    made = await response.json()
    async with aiohttp.ClientSession() as session:
        async with session.put(made["Location"]["SignedURL"], data=data) as put:
            assert put.status == 201, await put.text()
    response = await client.post(f"{OSDU}/getLocation", json={"FileID": pending_id}, headers=alice)
    pending_url = (await response.json())["Location"]["SignedURL"]
    record = {"kind": "osdu:wks:dataset--File.Generic:1.0.0",
              "acl": {"viewers": ["v@x"], "owners": ["o@x"]}, "legal": {"legaltags": ["t"]},
              "data": {"DatasetProperties": {"FileSourceInfo": {"FileSource": made["Location"]["FileSource"]}}}}
    response = await client.post(f"{OSDU}/files/metadata", json=record, headers=alice)
    assert response.status == 201, await response.text()
    record_id = (await response.json())["id"]
    response = await client.get(f"{OSDU}/files/{record_id}/downloadURL", headers=alice)
    download = (await response.json())["SignedUrl"]
    url_id = parse_qs(urlsplit(download).query)["id"][0]
    before = osdu_state(database_url, file_id), osdu_state(database_url, pending_id)

    unknown_file, unknown_record = "idor-no-such-file", f"{PART_B}:dataset--File.Generic:{os.urandom(4).hex()}"

    def attempts(file: str, record_: str, source: str) -> list:
        wide = {"TimeFrom": "2000-01-01T00:00:00Z", "TimeTo": "2999-01-01T00:00:00Z", "Items": 1000}
        return [
            ("POST", "/getFileLocation", {"FileID": file}),
            ("GET", f"/files/{file}/downloadURL", None),
            ("GET", f"/files/{record_}/downloadURL", None),
            ("GET", f"/files/{record_}/metadata", None),
            ("DELETE", f"/files/{record_}/metadata", None),
            ("DELETE", f"/files/{file}/metadata", None),
            ("POST", "/files/revokeURL", {"FileID": file}),
            ("POST", "/files/revokeURL", {"CreatedBy": "alice"}),
            ("POST", "/files/metadata", {**record, "data": {"DatasetProperties": {"FileSourceInfo": {
                "FileSource": source}}}}),
            ("POST", "/getFileList", wide),
        ]

    async def send(method, path, body, headers):
        response = await client.request(method, OSDU + path, json=body, headers=headers)
        if response.status >= 400:
            return response.status, (await json_answer(response))["error"]
        text = await response.text()
        return response.status, text

    mallory = osdu_headers("mallory", PART_B, f"service.file.admin@{PART_B}")
    theirs = attempts(file_id, record_id, made["Location"]["FileSource"])
    nothing = attempts(unknown_file, unknown_record, "s3://nowhere/idor-no-such-file")
    source, unknown_source = made["Location"]["FileSource"], nothing[-2][2]["data"]["DatasetProperties"][
        "FileSourceInfo"]["FileSource"]
    for (method, path, body), (_, unknown_path, unknown_body) in zip(theirs, nothing):
        status, answer = await send(method, path, body, mallory)
        unknown_status, unknown_answer = await send(method, unknown_path, unknown_body, mallory)
        # the very answer an id that exists nowhere gets (no oracle), and never alice's data
        assert status in (204, 400, 404) or path == "/getFileList", (method, path, status, answer)
        assert (status, answer.replace(source, "S").replace(record_id, "R").replace(file_id, "F")) == \
            (unknown_status, unknown_answer.replace(unknown_source, "S").replace(unknown_record, "R")
             .replace(unknown_file, "F")), (method, path)
    status, listing = await send("POST", "/getFileList", theirs[-1][2], mallory)
    assert status == 200 and file_id not in listing and pending_id not in listing
    # alice's SignedURL names partition A's bucket: refused in B (400, as any foreign URL)
    status, answer = await send("POST", "/files/revokeURL", {"SignedURL": pending_url}, mallory)
    assert status == 400 and "not a signed URL of this data partition" in answer
    status, answer = await send("POST", "/files/revokeURL", {"SignedURL": download}, mallory)
    assert status == 400

    # in alice's partition mallory has no role (400), eve has none anywhere (400), anonymous is 401
    for caller, expected in ((osdu_headers("mallory", PART_A, f"service.file.admin@{PART_B}"), 400),
                             (osdu_headers("eve", PART_A), 400), ({"Data-Partition-Id": PART_A}, 401)):
        for method, path, body in theirs:
            status, _ = await send(method, path, body, caller)
            assert status == expected, (caller, method, path, status)

    # the same FileID in B is B's own file: mallory's upload there never touches alice's object
    response = await client.post(f"{OSDU}/getLocation", json={"FileID": file_id}, headers=mallory)
    assert response.status == 200
    async with aiohttp.ClientSession() as session:
        async with session.put((await response.json())["Location"]["SignedURL"], data=b"evil") as put:
            assert put.status == 201

    # plain SAGE routes on partition A's bucket: mallory cannot see it, anonymous must sign in
    bucket_a = partition_bucket_id(PART_A)
    for user, expected in (("mallory", 404), (None, 401)):
        for method in ("GET", "HEAD", "DELETE"):
            response = await client.request(method, f"/api/v1/objects/{bucket_a}/{file_id}", headers=auth(user))
            assert response.status == expected, (user, method, response.status)
        response = await client.post("/api/v1/shares", json={"bucket_id": bucket_a, "key": file_id},
                                     headers=auth(user))
        assert response.status == expected
    # an OSDU URL's id is no share id: 404 to everyone, its owner included
    for user in ("mallory", "alice"):
        response = await client.delete(f"/api/v1/shares/{url_id}", headers=auth(user))
        assert response.status == 404 and await json_answer(response)

    # nothing changed: rows, record, URLs; the bytes download; the pending URL still uploads
    after = osdu_state(database_url, file_id), osdu_state(database_url, pending_id)
    assert after[1] == before[1]
    assert [row for row in after[0][0] if row[0] == PART_A] == before[0][0]
    assert after[0][1] == before[0][1]
    response = await client.get(f"{OSDU}/files/{record_id}/metadata", headers=alice)
    assert response.status == 200 and (await response.json())["id"] == record_id
    response = await client.post(f"{OSDU}/getFileLocation", json={"FileID": file_id}, headers=alice)
    assert (await response.json())["Location"] == made["Location"]["FileSource"]
    async with aiohttp.ClientSession() as session:
        async with session.get(download) as got:
            assert got.status == 200 and hashlib.sha256(await got.read()).digest() == hashlib.sha256(data).digest()
        async with session.put(pending_url, data=b"alice's") as put:
            assert put.status == 201, await put.text()
    assert json.loads(before[0][0][0][9])["id"] == record_id


async def test_idor_on_share_ids(client, database_url):
    """bob, who holds READ and WRITE on alice's bucket, and carol, a stranger, on alice's share ids: no route
    reads one share by id (GET is 405 JSON), the listing shows only the caller's own links (even
    filtered by alice's bucket), DELETE is 403 for bob (no FULL_CONTROL) and 404 for carol, 401
    anonymously. Afterwards both links still work and their rows are not revoked."""
    from support.api import grant, put_raw
    from test_signed_urls import anonymous, share, signed_url_row

    bucket_id = await make_bucket(client)
    await put_raw(client, bucket_id, "shared.txt", b"alice's data")
    get_link = await share(client, bucket_id, "shared.txt")
    put_link = await share(client, bucket_id, "incoming.bin", method="PUT")
    await grant(client, bucket_id, "USER", "bob", "READ")
    await grant(client, bucket_id, "USER", "bob", "WRITE")
    for link in (get_link, put_link):
        for user, expected in (("bob", 403), ("carol", 404), (None, 401)):
            response = await client.delete(f"/api/v1/shares/{link['id']}", headers=auth(user))
            assert response.status == expected, (user, response.status)
            await json_answer(response)
            response = await client.delete(f"/api/v1/shares/{link['id'].upper()}", headers=auth(user))
            assert response.status == expected, (user, response.status)
        for user in ("bob", "carol", None):
            response = await client.get(f"/api/v1/shares/{link['id']}", headers=auth(user))
            assert response.status in (404, 405), response.status
            assert link["url"] not in await response.text()
            await json_answer(response)
    for user in ("bob", "carol"):
        for params in ({}, {"bucket_id": bucket_id}):
            response = await client.get("/api/v1/shares", params=params, headers=auth(user))
            text = await response.text()
            assert response.status == 200 and get_link["id"] not in text and put_link["id"] not in text
    assert signed_url_row(database_url, get_link["id"])["revoked"] is False
    assert signed_url_row(database_url, put_link["id"])["revoked"] is False
    assert (await anonymous("GET", get_link["url"]))[:3:2] == (200, b"alice's data")
    assert (await anonymous("PUT", put_link["url"], data=b"upload"))[0] == 201
