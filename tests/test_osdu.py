"""The OSDU File service (seed 003) under /api/file/v2/, on a real app in JWT mode (roles from the
groups claim) over real PostgreSQL and SeaweedFS. The seed's curl examples run with curl."""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid

import aiohttp
import jwt
import pytest

from support.api import s3_client, s3_keys
from support.apps import AppServer
from sagestore.app import create_app
from sagestore.auth.tokens import mint_token
from sagestore.osdu import SERVICE_USER, partition_bucket_id

BASE = "/api/file/v2"
PARTITIONS = ("default-partition", "other-part")


@pytest.fixture
def osdu_settings(settings):
    return settings.replace(auth_mode="jwt", jwt_secret="osdu-test-secret-" + "x" * 32,
                            osdu_partitions=PARTITIONS, signing_keys="t1:" + "k" * 40, osdu_domain="example.com")


@pytest.fixture
async def osdu(aiohttp_client, osdu_settings):
    return await aiohttp_client(AppServer(create_app(osdu_settings)))


@pytest.fixture
def token(osdu_settings):
    def make(user: str = "editor", *groups: str) -> str:
        return mint_token(osdu_settings, user, list(groups), 3600)
    return make


def headers(token: str | None, partition: str | None = "default-partition") -> dict[str, str]:
    result = {}
    if token is not None:
        result["Authorization"] = f"Bearer {token}"
    if partition is not None:
        result["Data-Partition-Id"] = partition
    return result


async def call(osdu, method: str, path: str, token: str | None, partition: str | None = "default-partition",
               **kwargs) -> tuple[int, object]:
    response = await osdu.request(method, BASE + path, headers=headers(token, partition), **kwargs)
    text = await response.text()
    if response.status >= 400:
        assert response.content_type == "application/json", (response.status, text)
    return response.status, (json.loads(text) if text and response.content_type == "application/json" else text)


async def curl(*args: str) -> tuple[int, bytes]:
    """curl as a subprocess (asynchronously, so the in-process server keeps serving)."""
    process = await asyncio.create_subprocess_exec("curl", "--silent", "--show-error", "--write-out",
                                                   "\n%{http_code}", *args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err
    body, _, status = out.rpartition(b"\n")
    return int(status), body


async def test_the_seeds_three_curl_examples_then_a_curl_upload_and_download(osdu, token, tmp_path):
    path = f"http://{osdu.host}:{osdu.port}/api/file"  # the seed's {path}
    bearer = token("common-user", "service.file.editors@default-partition.example.com")
    file_id = "8900a83f-18c6-4b1d-8f38-309a208779cc"
    status, body = await curl("--location", "--request", "POST", f"{path}/v2/getLocation",
                              "--header", f"Authorization: Bearer {bearer}",
                              "--header", "Content-Type: application/json",
                              "--header", "Data-Partition-Id: default-partition",
                              "--data-raw", '{\n"FileID": "8900a83f-18c6-4b1d-8f38-309a208779cc"\n}')
    assert status == 200, body
    location = json.loads(body)
    assert location["FileID"] == file_id
    signed_url = location["Location"]["SignedURL"]
    bucket_id = partition_bucket_id("default-partition")
    assert signed_url.startswith(f"http://{osdu.host}:{osdu.port}/api/v1/signed/{bucket_id}/{file_id}?method=PUT&")
    assert location["Location"]["FileSource"].endswith(f"/{bucket_id}/{file_id}")

    status, body = await curl("--location", "--request", "POST", f"{path}/v2/getFileLocation",
                              "--header", f"Authorization: Bearer {bearer}",
                              "--header", "Content-Type: application/json",
                              "--header", "Data-Partition-Id: default-partition",
                              "--data-raw", '{\n"FileID": "8900a83f-18c6-4b1d-8f38-309a208779cc"\n}')
    assert status == 200, body
    assert json.loads(body) == {"Driver": "S3", "Location": location["Location"]["FileSource"]}
    assert json.loads(body)["Location"].startswith("s3://")

    status, body = await curl("--location", "--request", "POST", f"{path}/v2/getFileList",
                              "--header", f"Authorization: Bearer {bearer}",
                              "--header", "Data-Partition-Id: default-partition",
                              "--header", "Content-Type: application/json",
                              "--data-raw", '{\n"PageNum": 0,\n"TimeFrom": "2020-01-01T16:21:00.552Z",\n'
                                            '"UserID": "common-user",\n"TimeTo": "2020-02-15T16:28:44.220Z",\n'
                                            '"Items": 2\n}')
    assert status == 200, body
    assert json.loads(body) == {"Content": [], "Number": 0, "NumberOfElements": 0, "Size": 2}

    upload = tmp_path / "well-log.las"
    upload.write_bytes(b"~Version information\n" + bytes(range(256)) * 4096)
    status, body = await curl("-T", str(upload), signed_url)  # no Authorization header
    assert status == 201, body
    status, body = await curl("--header", f"Authorization: Bearer {bearer}", "--header",
                              "Data-Partition-Id: default-partition", f"{path}/v2/files/{file_id}/downloadURL")
    assert status == 200, body
    download = tmp_path / "downloaded"
    status, _ = await curl("--output", str(download), json.loads(body)["SignedUrl"])
    assert status == 200
    assert hashlib.sha256(download.read_bytes()).hexdigest() == hashlib.sha256(upload.read_bytes()).hexdigest()
    # a second PUT through the same upload URL cannot overwrite
    status, body = await curl("-T", str(download), signed_url)
    assert status == 409 and json.loads(body)["error"]


async def test_each_partition_is_a_sage_bucket_owned_by_the_service_user(osdu, token, database_url, osdu_settings):
    import psycopg2
    with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
        cur.execute("SELECT id::text, owner, name FROM buckets WHERE id = ANY(%s::uuid[]) ORDER BY name",
                    ([partition_bucket_id(p) for p in PARTITIONS],))
        rows = cur.fetchall()
    connection.close()
    assert rows == [(partition_bucket_id("default-partition"), SERVICE_USER, "osdu-default-partition"),
                    (partition_bucket_id("other-part"), SERVICE_USER, "osdu-other-part")]
    editor = token("ed", "service.file.editors")
    status, location = await call(osdu, "GET", "/files/uploadURL", editor)
    assert status == 200
    async with aiohttp.ClientSession() as session:
        async with session.put(location["Location"]["SignedURL"], data=b"osdu bytes") as response:
            assert response.status == 201
    bucket_id = partition_bucket_id("default-partition")
    path = f"/api/v1/objects/{bucket_id}/{location['FileID']}"
    # nobody can act as the service user: no token names it (a hand-made one is refused)
    forged = jwt.encode({"sub": SERVICE_USER, "groups": [], "aud": "sagestore", "iss": "sagestore",
                         "exp": int(time.time()) + 600}, osdu_settings.jwt_secret, algorithm="HS256")
    response = await osdu.get(path, headers={"Authorization": f"Bearer {forged}"})
    assert response.status == 401
    response = await osdu.get(path, headers={"Authorization": f"Bearer {editor}"})
    assert response.status == 404  # the bucket's ACL decides for the SAGE API, not the OSDU role


async def test_header_checks_follow_the_seed(osdu, token):
    editor = token("ed", "service.file.editors")
    body = {"FileID": f"f-{uuid.uuid4().hex}"}
    status, answer = await call(osdu, "POST", "/getLocation", None, json=body)
    assert status == 401 and answer["code"] == 401 and answer["error"] == answer["message"]
    response = await osdu.post(BASE + "/getLocation", json=body, headers={"Authorization": "Bearer not.a.jwt",
                                                                          "Data-Partition-Id": "default-partition"})
    assert response.status == 401 and "error" in await response.json()
    for partition in (None, "", "nowhere"):
        status, answer = await call(osdu, "POST", "/getLocation", editor, partition, json=body)
        assert status == 400, partition
    status, answer = await call(osdu, "POST", "/getLocation", token("nobody", "users.datalake"), json=body)
    assert status == 400 and "no service.file role" in answer["error"]
    status, answer = await call(osdu, "POST", "/getLocation", token("v", "service.file.viewers"), json=body)
    assert status == 403 and "service.file.editors" in answer["error"]
    status, answer = await call(osdu, "POST", "/files/revokeURL", editor, json={"FileID": "x"})
    assert status == 403 and "service.file.admin" in answer["error"]
    for path in ("/getFileLocation", "/getFileList", "/files/metadata"):
        assert (await call(osdu, "POST", path, None, json={}))[0] == 401
        assert (await call(osdu, "POST", path, editor, None, json={}))[0] == 400


@pytest.mark.parametrize("groups, partition, expected", [
    ((), "default-partition", {"getLocation": 400, "downloadURL": 400, "revokeURL": 400}),
    (("service.file.viewers",), "default-partition", {"getLocation": 403, "downloadURL": 404, "revokeURL": 403}),
    (("service.file.viewers",), "other-part", {"getLocation": 403, "downloadURL": 404, "revokeURL": 403}),
    (("service.file.editors@default-partition.example.com",), "default-partition",
     {"getLocation": 200, "downloadURL": 404, "revokeURL": 403}),
    (("service.file.editors@default-partition.example.com",), "other-part",
     {"getLocation": 400, "downloadURL": 400, "revokeURL": 400}),
    (("service.file.admin@other-part",), "other-part", {"getLocation": 200, "downloadURL": 404, "revokeURL": 204}),
    (("service.file.admin@other-part",), "default-partition",
     {"getLocation": 400, "downloadURL": 400, "revokeURL": 400}),
    # <role>@<partition>.<anything> is no role: only the configured domain counts
    (("service.file.viewers@default-partition.x", "service.file.admin@other-part.x"), "default-partition",
     {"getLocation": 400, "downloadURL": 400, "revokeURL": 400}),
    (("service.file.admin",), "default-partition", {"getLocation": 200, "downloadURL": 404, "revokeURL": 204}),
])
async def test_the_partition_and_role_matrix(osdu, token, groups, partition, expected):
    caller = token(f"u-{uuid.uuid4().hex[:6]}", *groups)
    results = {
        "getLocation": (await call(osdu, "POST", "/getLocation", caller, partition, json={}))[0],
        # viewers may ask; the file does not exist, so 404 proves the role check passed
        "downloadURL": (await call(osdu, "GET", "/files/no-such-file/downloadURL", caller, partition))[0],
        "revokeURL": (await call(osdu, "POST", "/files/revokeURL", caller, partition,
                                 json={"FileID": "no-such-file"}))[0],
    }
    assert results == expected


async def test_get_location_validation_and_duplicates(osdu, token):
    editor = token("ed", "service.file.editors")
    status, answer = await call(osdu, "POST", "/getLocation", editor, json={})
    assert status == 200 and uuid.UUID(answer["FileID"]) and answer["Location"]["SignedURL"]
    unique = uuid.uuid4().hex
    for good in (f"abc-{unique}.txt", f"a b,c-{unique}"):
        status, answer = await call(osdu, "POST", "/getLocation", editor, json={"FileID": good})
        assert (status, answer["FileID"]) == (200, good)
    status, answer = await call(osdu, "POST", "/getLocation", editor, json={"FileID": f"abc-{unique}.txt"})
    assert (status, answer["error"]) == (400, f"Location for fileID abc-{unique}.txt already exists")
    for bad in ("..ddd.com", "temp-file.", "/x", "a.b.c", " ", "", "é", "a" * 1025, 1, ["x"]):
        status, answer = await call(osdu, "POST", "/getLocation", editor, json={"FileID": bad})
        assert status == 400 and "FileID" in answer["error"], bad
    for raw in (b"{not json", b"[1]", b"null"):
        status, answer = await call(osdu, "POST", "/getLocation", editor, data=raw)
        assert status == 400 and "Json" in answer["error"], raw
    # no body at all is allowed (the FileID is optional): a deliberate leniency over the OSDU services,
    # which answer 400 Invalid Json Input; see docs/protocols.md
    status, answer = await call(osdu, "POST", "/getLocation", editor, data=b"")
    assert status == 200 and uuid.UUID(answer["FileID"]) and answer["Location"]["SignedURL"], answer
    for expiry, ok in (("15M", True), ("12H", True), ("10D", True), ("0M", False), ("15", False), ("1W", False),
                       ("-1D", False), ("15m", False)):
        status, _ = await call(osdu, "GET", "/files/uploadURL", editor, params={"expiryTime": expiry})
        assert status == (200 if ok else 400), expiry


async def test_expiry_time_is_in_the_signed_url_and_capped_at_seven_days(osdu, token):
    import time
    from urllib.parse import parse_qs, urlsplit
    editor = token("ed", "service.file.editors")
    for expiry, seconds in (("15M", 900), ("2H", 7200), ("30D", 7 * 86400), (None, 3600)):
        params = {"expiryTime": expiry} if expiry else {}
        _, answer = await call(osdu, "GET", "/files/uploadURL", editor, params=params)
        expires = int(parse_qs(urlsplit(answer["Location"]["SignedURL"]).query)["expires"][0])
        assert abs(expires - time.time() - seconds) < 120, expiry


async def test_get_file_location_errors(osdu, token):
    editor = token("ed", "service.file.editors")
    status, answer = await call(osdu, "POST", "/getFileLocation", editor, json={})
    assert status == 400 and "FileID" in answer["error"]
    status, answer = await call(osdu, "POST", "/getFileLocation", editor, json={"FileID": "test"})
    assert (status, answer["message"]) == (400, "Not found location for fileID : test")
    for bad in ({"FileID": 1}, {"FileID": "/id/"}, {"FileID": " "}):
        assert (await call(osdu, "POST", "/getFileLocation", editor, json=bad))[0] == 400
    # another partition's file is not found in this one
    admin = token("adm", "service.file.admin")
    _, made = await call(osdu, "POST", "/getLocation", admin, "other-part", json={})
    status, _ = await call(osdu, "POST", "/getFileLocation", admin, json={"FileID": made["FileID"]})
    assert status == 400


async def test_get_file_list_pages_and_reports_uploads(osdu, token):
    from datetime import datetime, timedelta, timezone
    user = f"lister-{uuid.uuid4().hex[:8]}"
    editor = token(user, "service.file.editors")
    started = datetime.now(timezone.utc) - timedelta(seconds=5)
    made = []
    for _ in range(5):
        _, answer = await call(osdu, "POST", "/getLocation", editor, json={})
        made.append(answer)
    window = {"TimeFrom": started.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
              "TimeTo": (datetime.now(timezone.utc) + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S"),
              "UserID": user}
    pages = []
    for page in range(4):
        status, answer = await call(osdu, "POST", "/getFileList", editor, json={**window, "PageNum": page, "Items": 2})
        assert status == 200, answer
        assert (answer["Number"], answer["Size"], answer["NumberOfElements"]) == \
            (page, 2, len(answer["Content"]))
        pages.append([item["FileID"] for item in answer["Content"]])
    assert pages == [[made[0]["FileID"], made[1]["FileID"]], [made[2]["FileID"], made[3]["FileID"]],
                     [made[4]["FileID"]], []]
    _, answer = await call(osdu, "POST", "/getFileList", editor, json={**window, "Items": 10})
    record = answer["Content"][0]
    assert set(record) == {"FileID", "Driver", "Location", "CreatedAt", "CreatedBy", "Uploaded"}
    assert (record["Driver"], record["CreatedBy"], record["Uploaded"]) == ("S3", user, False)
    assert record["CreatedAt"].endswith("+0000") and len(record["CreatedAt"]) == 28
    data = b"uploaded bytes" * 1000
    async with aiohttp.ClientSession() as session:
        async with session.put(made[0]["Location"]["SignedURL"], data=data) as response:
            assert response.status == 201
    _, answer = await call(osdu, "POST", "/getFileList", editor, json={**window, "Items": 10})
    uploaded = answer["Content"][0]
    assert (uploaded["Uploaded"], uploaded["Size"], uploaded["Sha256"]) == \
        (True, len(data), hashlib.sha256(data).hexdigest())
    assert [item["Uploaded"] for item in answer["Content"][1:]] == [False] * 4

    for body, field in [
        ({**window}, "Items"), ({**window, "Items": 0}, "Items"), ({**window, "Items": -1}, "Items"),
        ({**window, "Items": "1"}, "Items"), ({**window, "Items": 40000}, "Items"),
        ({**window, "Items": 1, "PageNum": "0"}, "PageNum"), ({**window, "Items": 1, "PageNum": -1}, "PageNum"),
        ({**window, "Items": 1, "PageNum": 99999999999999}, "PageNum"),
        ({**window, "Items": 1, "UserID": 1}, "UserID"),
        ({"TimeTo": window["TimeTo"], "Items": 1}, "TimeFrom"), ({"TimeFrom": window["TimeFrom"], "Items": 1}, "TimeTo"),
        ({**window, "TimeFrom": "", "Items": 1}, "TimeFrom"), ({**window, "TimeFrom": "2020-02-31T00:00:00", "Items": 1},
                                                              "TimeFrom"),
        ({**window, "TimeFrom": "2020+01+01T00:00:00", "Items": 1}, "TimeFrom"),
        ({**window, "TimeFrom": window["TimeTo"], "TimeTo": window["TimeFrom"], "Items": 1}, "TimeFrom"),
        ({}, "TimeFrom"),
    ]:
        status, answer = await call(osdu, "POST", "/getFileList", editor, json=body)
        assert status == 400 and field in answer["error"], (body, answer)


async def test_revoke_url_by_file_creator_or_url_on_every_instance(aiohttp_client, osdu_settings, token):
    first = await aiohttp_client(AppServer(create_app(osdu_settings)))
    second = await aiohttp_client(AppServer(create_app(osdu_settings)))
    admin = token("adm", "service.file.admin")
    creator = f"maker-{uuid.uuid4().hex[:6]}"
    editor = token(creator, "service.file.editors")

    async def put(url: str, data: bytes = b"x") -> int:
        async with aiohttp.ClientSession() as session:
            async with session.put(url, data=data) as response:
                return response.status

    def on_second(url: str) -> str:
        return url.replace(f"{first.host}:{first.port}", f"{second.host}:{second.port}")

    _, by_file = await call(first, "POST", "/getLocation", editor, json={})
    _, by_creator_1 = await call(first, "POST", "/getLocation", editor, json={})
    _, by_creator_2 = await call(first, "GET", "/files/uploadURL", editor)
    _, by_url = await call(first, "GET", "/files/uploadURL", editor)
    _, untouched = await call(first, "GET", "/files/uploadURL", admin)

    status, answer = await call(first, "POST", "/files/revokeURL", admin, json={"Resource": "x"})
    assert status == 400 and "Resource" in answer["error"]
    for bad in ({}, {"FileID": 1}, {"SignedURL": "http://elsewhere/x"}, {"FileID": ""}):
        assert (await call(first, "POST", "/files/revokeURL", admin, json=bad))[0] == 400, bad
    tampered = by_url["Location"]["SignedURL"].replace("sig=", "sig=A")
    assert (await call(first, "POST", "/files/revokeURL", admin, json={"SignedURL": tampered}))[0] == 400

    assert (await call(first, "POST", "/files/revokeURL", admin, json={"FileID": by_file["FileID"]}))[0] == 204
    assert await put(on_second(by_file["Location"]["SignedURL"])) == 403
    assert (await call(first, "POST", "/files/revokeURL", admin,
                       json={"SignedURL": by_url["Location"]["SignedURL"]}))[0] == 204
    assert await put(on_second(by_url["Location"]["SignedURL"])) == 403
    assert (await call(first, "POST", "/files/revokeURL", admin, json={"CreatedBy": creator}))[0] == 204
    for made in (by_creator_1, by_creator_2):
        assert await put(on_second(made["Location"]["SignedURL"])) == 403
    assert await put(on_second(untouched["Location"]["SignedURL"])) == 201


METADATA = {
    "kind": "osdu:wks:dataset--File.Generic:1.0.0",
    "acl": {"viewers": ["data.default.viewers@opendes.example.com"], "owners": ["data.default.owners@opendes.example.com"]},
    "legal": {"legaltags": ["opendes-public-usa-dataset-1"], "otherRelevantDataCountries": ["US"], "status": "compliant"},
    "data": {"Name": "well.las", "Endian": "BIG", "DatasetProperties": {"FileSourceInfo": {"FileSource": ""}}},
}


async def test_metadata_download_url_and_delete(osdu, token, s3_backend, settings):
    editor = token("ed", "service.file.editors")
    viewer = token("vi", "service.file.viewers")
    _, made = await call(osdu, "GET", "/files/uploadURL", editor)
    source = made["Location"]["FileSource"]
    record = json.loads(json.dumps(METADATA))
    record["data"]["DatasetProperties"]["FileSourceInfo"]["FileSource"] = source
    status, answer = await call(osdu, "POST", "/files/metadata", editor, json=record)
    assert status == 400 and answer["error"] == f"Invalid source file path to copy from {source}"  # not uploaded
    data = b"las file" * 5000
    async with aiohttp.ClientSession() as session:
        async with session.put(made["Location"]["SignedURL"], data=data) as response:
            assert response.status == 201

    def broken(change) -> dict:
        copy = json.loads(json.dumps(record))
        change(copy)
        return copy
    for body, message in [
        (broken(lambda r: r.pop("kind")), "kind must not be null"),
        (broken(lambda r: r.update(kind="osdu:wks:x")), "Invalid kind"),
        (broken(lambda r: r.update(kind="osdu:other:dataset--File.Generic:1.0.0")), "Invalid source in kind"),
        (broken(lambda r: r.update(kind="osdu:wks:dataset--File.Other:1.0.0")), "Invalid entity in kind"),
        (broken(lambda r: r.pop("acl")), "acl must not be null"),
        (broken(lambda r: r["acl"].update(viewers=[])), "Record acl.viewers cannot be empty"),
        (broken(lambda r: r["acl"].update(owners=[])), "Record acl.owners cannot be empty"),
        (broken(lambda r: r["legal"].update(legaltags=[])), "legal tag cannot be empty"),
        (broken(lambda r: r.update(data={})), "data cannot be empty"),
        (broken(lambda r: r["data"]["DatasetProperties"]["FileSourceInfo"].pop("FileSource")),
         "FileSource can not be empty"),
        (broken(lambda r: r["data"].update(Endian="Small")), "Invalid value of Small for Endian"),
        (broken(lambda r: r["data"]["DatasetProperties"]["FileSourceInfo"].update(FileSource="s3://x/y")),
         "Invalid source file path to copy from s3://x/y"),
    ]:
        status, answer = await call(osdu, "POST", "/files/metadata", editor, json=body)
        assert (status, answer["error"]) == (400, message)
    # what PostgreSQL cannot store (a NUL) and JSON nested too deep are 400 in OSDU's shape, not a 500
    too_deep = json.loads("[" * 50 + "]" * 50)
    for body in (broken(lambda r: r["data"].update(Name="a\x00b")), {**record, "deep": too_deep}):
        status, answer = await call(osdu, "POST", "/files/metadata", editor, json=body)
        assert status == 400 and answer["error"].startswith("Invalid Json Input") and answer["code"] == 400, answer
    status, answer = await call(osdu, "POST", "/files/metadata", editor, data=b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and "nested" in answer["error"]
    assert (await call(osdu, "POST", "/files/metadata", viewer, json=record))[0] == 403

    status, answer = await call(osdu, "POST", "/files/metadata", editor, json=record)
    assert status == 201, answer
    record_id = answer["id"]
    assert record_id.startswith("default-partition:dataset--File.Generic:") and uuid.UUID(record_id.rsplit(":", 1)[1])
    status, stored = await call(osdu, "GET", f"/files/{record_id}/metadata", viewer)
    assert status == 200 and stored["id"] == record_id and stored["kind"] == record["kind"]
    assert stored["data"]["DatasetProperties"]["FileSourceInfo"]["Checksum"] == hashlib.sha256(data).hexdigest()
    status, answer = await call(osdu, "GET", "/files/opendes:file:TEST/metadata", viewer)
    assert (status, answer["error"]) == (404, "Record Not Found")

    status, answer = await call(osdu, "GET", f"/files/{record_id}/downloadURL", viewer, params={"expiryTime": "5M"})
    assert status == 200
    download = answer["SignedUrl"]
    async with aiohttp.ClientSession() as session:
        async with session.get(download) as response:
            assert (response.status, await response.read()) == (200, data)
    status, answer = await call(osdu, "GET", "/files/nothing-here/downloadURL", viewer)
    assert (status, answer["message"]) == (404, "File id not found.")

    assert (await call(osdu, "DELETE", f"/files/{record_id}/metadata", viewer))[0] == 403
    assert (await call(osdu, "DELETE", f"/files/{record_id}/metadata", editor))[0] == 204
    assert (await call(osdu, "DELETE", f"/files/{record_id}/metadata", editor))[0] == 404
    assert (await call(osdu, "GET", f"/files/{record_id}/metadata", viewer))[0] == 404
    async with aiohttp.ClientSession() as session:
        async with session.get(download) as response:
            assert response.status == 403
    bucket_id = partition_bucket_id("default-partition")
    assert f"{bucket_id}/{made['FileID']}" not in s3_keys(s3_client(s3_backend), settings, bucket_id)


async def test_public_endpoints_and_unknown_routes(osdu, token):
    response = await osdu.get(BASE + "/liveness_check")
    assert (response.status, await response.text()) == (200, "File service is alive")
    response = await osdu.get(BASE + "/readiness_check")
    assert (response.status, await response.text()) == (200, "File service is ready")
    response = await osdu.get(BASE + "/info")
    assert response.status == 200 and (await response.json())["version"]
    for method, path in (("POST", "/nothing"), ("GET", "/getLocation"), ("PUT", "/files/metadata")):
        response = await osdu.request(method, BASE + path, headers=headers(token("ed", "service.file.editors")))
        assert response.status in (404, 405) and "error" in await response.json()
