"""Buckets: create, show, list, patch, delete (the Go handlers_test.go bucket tests and the Go bugs fixed)."""
import asyncio
import re
import uuid

import pytest

from support.api import (agen, bucket_in_db, create_bucket, file_keys, grant, grants_in_db, put_raw, s3_client,
                         s3_keys, s3_location)
from support.data import auth

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_bucket_creation(client, database_url):
    """Go TestBucketCreation, plus the owner's grant and the creation counter."""
    before = metric(await (await client.get("/metrics")).text(), "bucket_creation_total")
    response = await client.post("/api/v1/objects?type=training-data&name=mybucket", headers=auth("testuser"))
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"id", "name", "owner", "type", "time_created", "time_last_updated", "archived"}
    assert len(body["id"]) == 36 and str(uuid.UUID(body["id"])) == body["id"]
    assert (body["name"], body["type"], body["owner"], body["archived"]) == ("mybucket", "training-data",
                                                                              "testuser", False)
    assert TIME.match(body["time_created"]) and TIME.match(body["time_last_updated"])
    assert grants_in_db(database_url, body["id"]) == [("USER", "testuser", "FULL_CONTROL")]
    after = metric(await (await client.get("/metrics")).text(), "bucket_creation_total")
    assert after == before + 1


@pytest.mark.parametrize("bucket_type", ["model", "training-data", "profile", "none"])
async def test_every_bucket_type_can_be_created(client, bucket_type):
    response = await client.post("/api/v1/objects", params={"type": bucket_type}, headers=auth("alice"))
    assert response.status == 200
    assert (await response.json())["type"] == bucket_type


async def test_public_bucket_creation_grants_all_users_read(client, database_url):
    """Go TestBucketPublic: public=true makes the bucket readable anonymously."""
    for flag in ("true", "1"):
        response = await client.post("/api/v1/objects", params={"type": "model", "public": flag},
                                     headers=auth("alice"))
        bucket_id = (await response.json())["id"]
        assert ("GROUP", "AllUsers", "READ") in grants_in_db(database_url, bucket_id)
        response = await client.get(f"/api/v1/objects/{bucket_id}")
        assert response.status == 200
        assert (await response.json())["id"] == bucket_id


@pytest.mark.parametrize("query, message", [
    ({}, "type is required"),
    ({"type": ""}, "type is required"),
    ({"type": "movies"}, "'movies' is not one of"),
    ({"type": "model", "public": "maybe"}, "'public' must be true or false"),
    ({"type": "model", "name": "x" * 257}, "longer than 256"),
    ({"type": "model", "name": "a\x01b"}, "control characters"),
])
async def test_bad_bucket_creation_is_400_and_creates_nothing(client, database_url, query, message):
    owner = f"nobody-{uuid.uuid4().hex[:8]}"
    response = await client.post("/api/v1/objects", params=query, headers=auth(owner))
    assert response.status == 400
    assert message in (await response.json())["error"]
    listed = await client.get("/api/v1/objects", params={"owner": owner}, headers=auth(owner))
    assert await listed.json() == []
    assert "sage_bucket_creation_errors_total{error=\"bad_request\"}" in await (await client.get("/metrics")).text()


async def test_anonymous_cannot_create_a_bucket(client):
    response = await client.post("/api/v1/objects?type=model")
    assert response.status == 401
    assert "error" in await response.json()


async def test_get_bucket(client):
    """Go TestGetBucket."""
    bucket_id = await create_bucket(client, "testuser", name="testing-bucket1")
    response = await client.get(f"/api/v1/objects/{bucket_id}", headers=auth("testuser"))
    assert response.status == 200
    body = await response.json()
    assert (body["id"], body["name"], body["type"], body["owner"]) == (bucket_id, "testing-bucket1",
                                                                        "training-data", "testuser")


async def test_missing_bucket_is_404_and_bad_id_is_400(client):
    missing = uuid.uuid4()
    for path in (f"/api/v1/objects/{missing}", f"/api/v1/objects/{missing}?permissions",
                 f"/api/v1/objects/{missing}/", f"/api/v1/objects/{missing}/file.txt"):
        response = await client.get(path, headers=auth("alice"))
        assert response.status == 404, path
        assert "not found" in (await response.json())["error"]
    response = await client.get("/api/v1/objects/not-a-uuid", headers=auth("alice"))
    assert response.status == 400
    assert "not a valid UUID" in (await response.json())["error"]
    # the UUID is canonicalised: upper case names the same bucket
    bucket_id = await create_bucket(client)
    response = await client.get(f"/api/v1/objects/{bucket_id.upper()}", headers=auth("alice"))
    assert response.status == 200 and (await response.json())["id"] == bucket_id


async def test_list_buckets(client):
    """Go TestListSageBucketRequest, plus what the list may and may not show."""
    user, other = f"lister-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    team = f"team-{uuid.uuid4().hex[:6]}"
    own = [await create_bucket(client, user, name=f"New_Bucket{i}") for i in range(10)]
    shared = await create_bucket(client, other, name="shared")
    await grant(client, shared, "USER", user, "READ", user=other)
    via_group = await create_bucket(client, other, name="group")
    await grant(client, via_group, "GROUP", team, "READ", user=other)
    public = await create_bucket(client, other, name="public", public=True)
    private = await create_bucket(client, other, name="private")
    write_only = await create_bucket(client, other, name="write-only")
    await grant(client, write_only, "USER", user, "WRITE", user=other)

    response = await client.get("/api/v1/objects", headers=auth(user, (team,)))
    assert response.status == 200
    listed = await response.json()
    ids = [item["id"] for item in listed]
    assert all(set(item) == {"id", "name", "owner", "type"} for item in listed)
    for expected in own + [shared, via_group, public]:
        assert expected in ids
    assert private not in ids and write_only not in ids
    assert [i for i in ids if i in own] == own  # oldest first, stable
    assert len(ids) == len(set(ids))

    without_group = [item["id"] for item in await (await client.get("/api/v1/objects", headers=auth(user))).json()]
    assert via_group not in without_group and shared in without_group

    by_owner = await (await client.get("/api/v1/objects", params={"owner": user}, headers=auth(user))).json()
    assert [item["id"] for item in by_owner] == own
    by_name = await (await client.get("/api/v1/objects", params={"name": "New_Bucket3"}, headers=auth(user))).json()
    assert [item["id"] for item in by_name] == [own[3]]

    anonymous = [item["id"] for item in await (await client.get("/api/v1/objects")).json()]
    assert public in anonymous and shared not in anonymous and own[0] not in anonymous


async def test_rename_bucket(client, database_url):
    """Go TestRenameBucket / TestPatchBucket, plus type and archived."""
    bucket_id = await create_bucket(client, "testuser", name="testing-bucket1")
    response = await client.patch(f"/api/v1/objects/{bucket_id}", data='{"name":"new-bucket-name"}',
                                  headers=auth("testuser"))
    assert response.status == 200
    body = await response.json()
    assert body["name"] == "new-bucket-name" and body["id"] == bucket_id
    response = await client.patch(f"/api/v1/objects/{bucket_id}", json={"type": "model", "name": "Changed"},
                                  headers=auth("testuser"))
    assert response.status == 200
    assert (await response.json())["type"] == "model"
    row = bucket_in_db(database_url, bucket_id)
    assert (row["name"], row["type"]) == ("Changed", "model")


@pytest.mark.parametrize("body, message", [
    ('{"owner": "mallory"}', "only name, type and archived"),
    ('{"name": 5}', "name must be a string"),
    ('{"type": "movies"}', "'movies' is not one of"),
    ('{"archived": "yes"}', "archived must be true or false"),
    ("{}", "nothing to change"),
    ("[1]", "must be a JSON object"),
    ("not json", "not valid JSON"),
    ('{"name": "ok", "id": "x"}', "cannot change id"),
])
async def test_bad_patch_is_400_and_changes_nothing(client, database_url, body, message):
    bucket_id = await create_bucket(client, name="before")
    response = await client.patch(f"/api/v1/objects/{bucket_id}", data=body, headers=auth("alice"))
    assert response.status == 400
    assert message in (await response.json())["error"]
    row = bucket_in_db(database_url, bucket_id)
    assert (row["name"], row["type"], row["owner"], row["archived"]) == ("before", "training-data", "alice", False)


async def test_archived_bucket_is_read_only(client, s3_backend, settings):
    bucket_id = await create_bucket(client)
    assert (await put_raw(client, bucket_id, "kept.txt", b"kept")).status == 200
    response = await client.patch(f"/api/v1/objects/{bucket_id}", json={"archived": True}, headers=auth("alice"))
    assert response.status == 200 and (await response.json())["archived"] is True

    assert (await put_raw(client, bucket_id, "new.txt")).status == 404
    assert (await client.delete(f"/api/v1/objects/{bucket_id}/kept.txt", headers=auth("alice"))).status == 404
    response = await client.delete(f"/api/v1/objects/{bucket_id}", headers=auth("alice"))
    assert response.status == 409 and "archived" in (await response.json())["error"]
    # reads still work
    assert await (await client.get(f"/api/v1/objects/{bucket_id}/kept.txt", headers=auth("alice"))).read() == b"kept"
    assert await file_keys(client, bucket_id) == ["kept.txt"]
    assert s3_keys(s3_client(s3_backend), settings, bucket_id) == [f"{bucket_id}/kept.txt"]

    response = await client.patch(f"/api/v1/objects/{bucket_id}", json={"archived": False}, headers=auth("alice"))
    assert response.status == 200
    assert (await put_raw(client, bucket_id, "new.txt")).status == 200


async def test_delete_bucket_removes_files_and_grants(client, database_url, s3_backend, settings):
    bucket_id = await create_bucket(client, public=True)
    await grant(client, bucket_id, "USER", "bob", "FULL_CONTROL")
    for key in ("a.txt", "dir/b.txt", "dir/sub/c.txt"):
        assert (await put_raw(client, bucket_id, key)).status == 200
    response = await client.delete(f"/api/v1/objects/{bucket_id}", headers=auth("alice"))
    assert response.status == 200
    assert await response.json() == {"deleted": [bucket_id]}
    assert bucket_in_db(database_url, bucket_id) is None
    assert grants_in_db(database_url, bucket_id) == []  # the Go server left these rows: orphans kept access
    assert s3_keys(s3_client(s3_backend), settings, bucket_id) == []
    for user in ("alice", "bob", None):
        response = await client.get(f"/api/v1/objects/{bucket_id}/a.txt", headers=auth(user))
        assert response.status == (401 if user is None else 404)
    response = await client.delete(f"/api/v1/objects/{bucket_id}", headers=auth("alice"))
    assert response.status == 404


async def test_delete_bucket_needs_full_control(client, database_url):
    """The Go server let any WRITE holder delete a bucket."""
    bucket_id = await create_bucket(client)
    await grant(client, bucket_id, "USER", "writer", "WRITE")
    await grant(client, bucket_id, "USER", "writer", "READ")
    response = await client.delete(f"/api/v1/objects/{bucket_id}", headers=auth("writer"))
    assert response.status == 403
    assert "FULL_CONTROL" in (await response.json())["error"]
    assert bucket_in_db(database_url, bucket_id) is not None


async def test_delete_big_bucket_paginated(client, s3_backend, settings):
    """Go TestDeleteBigBucket: 100 files, counted through pages of 10, then all gone."""
    bucket_id = await create_bucket(client, "testuser", name="BUCKET_TO_BE_DELETED")
    for i in range(100):
        assert (await put_raw(client, bucket_id, f"mytestfile_{i}.txt", user="testuser")).status == 200
    count, token = 0, None
    while True:
        params = {"limit": "10", **({"ContinuationToken": token} if token else {})}
        page = await (await client.get(f"/api/v1/objects/{bucket_id}/", params=params,
                                       headers=auth("testuser"))).json()
        assert len(page["Contents"]) <= 10
        count += len(page["Contents"])
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert count == 100
    response = await client.delete(f"/api/v1/objects/{bucket_id}", headers=auth("testuser"))
    assert await response.json() == {"deleted": [bucket_id]}
    assert s3_keys(s3_client(s3_backend), settings, bucket_id) == []


async def test_delete_bucket_with_1001_files(client, s3_backend, settings, database_url):
    """Past S3's 1000-key pages (listing and DeleteObjects): every file goes, and only this bucket's."""
    bucket_id = await create_bucket(client)
    neighbour = await create_bucket(client)
    assert (await put_raw(client, neighbour, "stays.txt")).status == 200
    semaphore = asyncio.Semaphore(32)

    async def upload(i: int) -> None:
        async with semaphore:
            response = await put_raw(client, bucket_id, f"d{i % 7}/file-{i:05d}.txt", f"{i}".encode())
            assert response.status == 200, await response.text()
    await asyncio.gather(*(upload(i) for i in range(1001)))
    s3 = s3_client(s3_backend)
    assert len(s3_keys(s3, settings, bucket_id)) == 1001

    response = await client.delete(f"/api/v1/objects/{bucket_id}", headers=auth("alice"))
    assert response.status == 200
    assert await response.json() == {"deleted": [bucket_id]}
    assert s3_keys(s3, settings, bucket_id) == []
    assert bucket_in_db(database_url, bucket_id) is None and grants_in_db(database_url, bucket_id) == []
    assert s3_keys(s3, settings, neighbour) == [f"{neighbour}/stays.txt"]


async def test_delete_bucket_aborts_its_unfinished_uploads(client, s3_backend, settings, database_url):
    """Resumable uploads into the bucket (engine rows, S3 multipart uploads, staged tails) go with it."""
    from sagestore import context
    bucket_id = await create_bucket(client)
    engine = client.app[context.ENGINE]
    upload = await engine.create("tus", bucket_id, "half.bin", "alice")
    await engine.append(upload, 0, agen([b"x" * (6 * 2**20)]))
    s3 = s3_client(s3_backend)
    s3_bucket = s3_location(settings, bucket_id, "")[0]

    def open_mpus() -> list[str]:
        return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])]
    assert upload.s3_upload_id in open_mpus()

    response = await client.delete(f"/api/v1/objects/{bucket_id}", headers=auth("alice"))
    assert response.status == 200
    assert upload.s3_upload_id not in open_mpus()
    import psycopg2
    with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM uploads WHERE bucket_id = %s", (bucket_id,))
        assert cur.fetchone()[0] == 0
    connection.close()
