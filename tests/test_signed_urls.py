"""sagestore-signed URLs and share links (issue 12): a real app on real PostgreSQL and SeaweedFS.

Share links follow the contract in HELPERS.md; the URLs work with no Authorization header, and
every refusal (tampered, expired, revoked, wrong method, another key) is a JSON error."""
from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import psycopg2
import pytest

from support.api import create_bucket, grant, put_raw, s3_client, s3_keys
from support.apps import AppServer
from support.data import auth
from support.premises import eventually
from sagestore import context
from sagestore.app import create_app

KEY_A = "ka:" + "a" * 40
KEY_B = "kb:" + "b" * 40


async def share(client, bucket_id: str, key: str, method: str = "GET", user: str = "alice",
                expect: int = 201, **extra) -> dict:
    response = await client.post("/api/v1/shares", json={"bucket_id": bucket_id, "key": key, "method": method,
                                                         **extra}, headers=auth(user))
    body = await response.json()
    assert response.status == expect, body
    return body


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


async def anonymous(method: str, url: str, **kwargs) -> tuple[int, dict, bytes]:
    """A request with no Authorization header, as curl would send it."""
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, **kwargs) as response:
            return response.status, response.headers.copy(), await response.read()


def signed_url_row(database_url: str, url_id: str) -> dict:
    with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
        cur.execute("SELECT method, key, created_by, revoked_at IS NOT NULL, uploaded_at IS NOT NULL "
                    "FROM signed_urls WHERE id = %s", (url_id,))
        row = cur.fetchone()
    connection.close()
    return dict(zip(("method", "key", "created_by", "revoked", "uploaded"), row)) if row else None


async def test_a_get_share_link_downloads_with_no_authorization_like_the_sage_download(client, database_url):
    bucket_id = await create_bucket(client)
    data = bytes(range(256)) * 400
    assert (await put_raw(client, bucket_id, "dir/report é.bin", data)).status == 200
    link = await share(client, bucket_id, "dir/report é.bin", expires_in=600)
    assert set(link) == {"id", "url", "method", "bucket_id", "key", "expires_at", "created_by", "created_at"}
    assert (link["method"], link["bucket_id"], link["key"], link["created_by"]) == \
        ("GET", bucket_id, "dir/report é.bin", "alice")
    assert link["url"].startswith(f"http://{client.host}:{client.port}/api/v1/signed/{bucket_id}/dir/")
    assert link["expires_at"].endswith("Z") and link["created_at"].endswith("Z")

    status, headers, body = await anonymous("GET", link["url"])
    assert (status, body) == (200, data)
    assert headers["Content-Disposition"] == \
        "attachment; filename=\"report _.bin\"; filename*=UTF-8''report%20%C3%A9.bin"
    etag = headers["ETag"]
    status, headers, body = await anonymous("HEAD", link["url"])
    assert (status, headers["Content-Length"], headers["ETag"], body) == (200, str(len(data)), etag, b"")
    status, headers, body = await anonymous("GET", link["url"], headers={"Range": "bytes=10-19"})
    assert (status, body, headers["Content-Range"]) == (206, data[10:20], f"bytes 10-19/{len(data)}")
    status, _, body = await anonymous("GET", link["url"], headers={"Range": "bytes=10-19", "If-Range": '"other"'})
    assert (status, body) == (200, data)
    status, _, body = await anonymous("GET", link["url"], headers={"Range": "bytes=10-19", "If-Range": etag})
    assert (status, body) == (206, data[10:20])
    status, _, _ = await anonymous("GET", link["url"], headers={"If-None-Match": etag})
    assert status == 304
    assert signed_url_row(database_url, link["id"]) == {"method": "GET", "key": "dir/report é.bin",
                                                        "created_by": "alice", "revoked": False, "uploaded": False}


async def test_tampered_urls_are_refused_with_json(client):
    bucket_id = await create_bucket(client)
    await put_raw(client, bucket_id, "a.txt", b"secret a")
    await put_raw(client, bucket_id, "b.txt", b"secret b")
    link = await share(client, bucket_id, "a.txt")
    url = link["url"]
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    other_bucket = await create_bucket(client)
    await put_raw(client, other_bucket, "a.txt", b"other")
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    tampered = [
        with_query(url, sig=flipped),
        with_query(url, expires=str(int(parse_qs(urlsplit(url).query)["expires"][0]) + 3600)),
        with_query(url, method="PUT"),
        with_query(url, id="00000000-0000-4000-8000-000000000000"),
        with_path(url, f"/api/v1/signed/{bucket_id}/b.txt"),
        with_path(url, f"/api/v1/signed/{other_bucket}/a.txt"),
    ]
    for bad in tampered:
        status, headers, body = await anonymous("GET", bad)
        assert status == 403 and headers["Content-Type"].startswith("application/json"), (bad, status, body)
        assert b"secret" not in body and b"other" not in body
    status, _, body = await anonymous("GET", with_query(url, kid="nope"))
    assert status == 403 and b"key this server does not have" in body
    for missing in ("sig", "expires", "kid", "id", "method"):
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items() if k != missing}
        status, _, body = await anonymous("GET", urlunsplit(urlsplit(url)._replace(query=urlencode(query))))
        assert status == 400 and missing.encode() in body
    status, _, body = await anonymous("GET", url)
    assert (status, body) == (200, b"secret a")  # the untouched URL still works


async def test_an_expired_url_is_refused(client):
    bucket_id = await create_bucket(client)
    await put_raw(client, bucket_id, "a.txt", b"data")
    link = await share(client, bucket_id, "a.txt", expires_in=1)
    deadline = time.monotonic() + 30
    while True:
        status, _, body = await anonymous("GET", link["url"])
        if status != 200:
            break
        assert body == b"data" and time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert status == 403 and b"expired" in body


async def test_the_wrong_method_is_405(client):
    bucket_id = await create_bucket(client)
    await put_raw(client, bucket_id, "a.txt", b"data")
    get_link = await share(client, bucket_id, "a.txt")
    put_link = await share(client, bucket_id, "new.txt", method="PUT")
    status, headers, _ = await anonymous("PUT", get_link["url"], data=b"overwrite")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")
    status, headers, _ = await anonymous("DELETE", get_link["url"])
    assert status == 405
    status, headers, _ = await anonymous("GET", put_link["url"])
    assert (status, headers["Allow"]) == (405, "PUT")
    response = await client.get(f"/api/v1/objects/{bucket_id}/a.txt", headers=auth("alice"))
    assert await response.read() == b"data"


async def test_share_link_input_and_permissions(client):
    bucket_id = await create_bucket(client)
    await put_raw(client, bucket_id, "a.txt", b"data")
    response = await client.post("/api/v1/shares", json={"bucket_id": bucket_id, "key": "a.txt"})
    assert response.status == 401
    for body, words in [
        ({"bucket_id": bucket_id, "key": "a.txt", "expires_in": 0}, "expires_in"),
        ({"bucket_id": bucket_id, "key": "a.txt", "expires_in": 604801}, "expires_in"),
        ({"bucket_id": bucket_id, "key": "a.txt", "expires_in": "60"}, "expires_in"),
        ({"bucket_id": bucket_id, "key": "a.txt", "expires_in": True}, "expires_in"),
        ({"bucket_id": bucket_id, "key": "a.txt", "method": "DELETE"}, "method"),
        ({"bucket_id": bucket_id, "key": "a.txt", "colour": "red"}, "colour"),
        ({"bucket_id": bucket_id, "key": "dir/"}, "folder"),
        ({"bucket_id": bucket_id, "key": "../x"}, ".."),
        ({"bucket_id": "nope", "key": "a.txt"}, "UUID"),
        ({"key": "a.txt"}, "bucket_id"),
        ({"bucket_id": bucket_id}, "key"),
    ]:
        response = await client.post("/api/v1/shares", json=body, headers=auth("alice"))
        assert response.status == 400, body
        assert words in (await response.json())["error"]
    response = await client.post("/api/v1/shares", data=b"{not json", headers=auth("alice"))
    assert response.status == 400
    default = await share(client, bucket_id, "a.txt", expires_in=604800)
    assert default["method"] == "GET"
    await share(client, bucket_id, "a.txt", user="bob", expect=404)  # cannot see the bucket
    await grant(client, bucket_id, "USER", "bob", "READ")
    await share(client, bucket_id, "a.txt", user="bob")
    await share(client, bucket_id, "b.txt", method="PUT", user="bob", expect=403)  # READ is not WRITE
    await grant(client, bucket_id, "USER", "bob", "WRITE")
    await share(client, bucket_id, "b.txt", method="PUT", user="bob")


async def test_listing_and_revoking_share_links(client, database_url):
    alice = f"alice-{uuid.uuid4().hex[:8]}"  # the session's database holds other tests' links too
    bucket_id = await create_bucket(client, alice)
    other = await create_bucket(client, alice)
    await put_raw(client, bucket_id, "a.txt", b"data", user=alice)
    first = await share(client, bucket_id, "a.txt", user=alice)
    second = await share(client, other, "x.txt", method="PUT", user=alice)
    await grant(client, bucket_id, "USER", "bob", "READ", user=alice)
    bobs = await share(client, bucket_id, "a.txt", user="bob")

    response = await client.get("/api/v1/shares", headers=auth(alice))
    listed = (await response.json())["shares"]
    assert [item["id"] for item in listed] == [first["id"], second["id"]]
    assert listed[0] == {**first, "revoked": False}
    response = await client.get("/api/v1/shares", params={"bucket_id": other}, headers=auth(alice))
    assert [item["id"] for item in (await response.json())["shares"]] == [second["id"]]
    assert (await client.get("/api/v1/shares", params={"bucket_id": "x"}, headers=auth(alice))).status == 400
    assert (await client.get("/api/v1/shares")).status == 401

    # bob holds READ only: he cannot revoke alice's link; unknown or malformed ids
    assert (await client.delete(f"/api/v1/shares/{first['id']}", headers=auth("bob"))).status == 403
    assert (await client.delete(f"/api/v1/shares/{first['id']}", headers=auth("carol"))).status == 404
    assert (await client.delete(f"/api/v1/shares/{first['id']}")).status == 401
    assert (await client.delete("/api/v1/shares/not-a-uuid", headers=auth(alice))).status == 400
    assert (await client.delete("/api/v1/shares/00000000-0000-4000-8000-000000000000",
                                headers=auth(alice))).status == 404
    assert (await anonymous("GET", first["url"]))[0] == 200

    assert (await client.delete(f"/api/v1/shares/{first['id']}", headers=auth(alice))).status == 204
    status, _, body = await anonymous("GET", first["url"])
    assert status == 403 and b"revoked" in body
    assert (await anonymous("HEAD", first["url"]))[0] == 403
    assert signed_url_row(database_url, first["id"])["revoked"] is True
    response = await client.get("/api/v1/shares", headers=auth(alice))
    assert [item["revoked"] for item in (await response.json())["shares"]] == [True, False]

    # the bucket's owner (FULL_CONTROL) may revoke bob's link
    assert (await anonymous("GET", bobs["url"]))[0] == 200
    assert (await client.delete(f"/api/v1/shares/{bobs['id']}", headers=auth(alice))).status == 204
    assert (await anonymous("GET", bobs["url"]))[0] == 403


async def test_a_put_link_uploads_once_and_cannot_overwrite(client, s3_backend, settings, database_url):
    bucket_id = await create_bucket(client)
    link = await share(client, bucket_id, "up/data.bin", method="PUT")
    data = b"0123456789" * 100_000
    status, _, body = await anonymous("PUT", link["url"], data=data, headers={"Content-Type": "text/plain"})
    assert status == 201, body
    response = await client.get(f"/api/v1/objects/{bucket_id}/up/data.bin", headers=auth("alice"))
    assert await response.read() == data and response.headers["Content-Type"] == "text/plain"
    s3 = s3_client(s3_backend)
    from support.api import s3_location
    s3_bucket, s3_key = s3_location(settings, bucket_id, "up/data.bin")
    assert s3.head_object(Bucket=s3_bucket, Key=s3_key)["Metadata"] == {
        "owner": "alice", "sha256": hashlib.sha256(data).hexdigest()}
    status, _, body = await anonymous("PUT", link["url"], data=b"overwrite")
    assert status == 409 and b"cannot overwrite" in body
    response = await client.get(f"/api/v1/objects/{bucket_id}/up/data.bin", headers=auth("alice"))
    assert await response.read() == data
    assert signed_url_row(database_url, link["id"])["uploaded"] is True

    # a revoked PUT link stores nothing
    revoked = await share(client, bucket_id, "up/never.bin", method="PUT")
    assert (await client.delete(f"/api/v1/shares/{revoked['id']}", headers=auth("alice"))).status == 204
    assert (await anonymous("PUT", revoked["url"], data=b"x"))[0] == 403
    # a declared digest that does not match stores nothing, and the link stays usable
    digest_link = await share(client, bucket_id, "up/digest.bin", method="PUT")
    status, _, _ = await anonymous("PUT", digest_link["url"], data=b"abc",
                                   headers={"Repr-Digest": "sha-256=:" + "A" * 43 + "=:"})
    assert status == 400
    assert sorted(s3_keys(s3, settings, bucket_id)) == [f"{bucket_id}/up/data.bin"]
    assert (await anonymous("PUT", digest_link["url"], data=b"abc"))[0] == 201


async def test_a_cut_off_signed_put_stores_nothing_and_the_link_can_be_retried(client, s3_backend, settings):
    bucket_id = await create_bucket(client)
    link = await share(client, bucket_id, "cut.bin", method="PUT")
    target = urlsplit(link["url"])
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = (f"PUT {target.path}?{target.query} HTTP/1.1\r\nHost: {client.host}\r\n"
            f"Content-Length: {40 * 2**20}\r\n\r\n")
    writer.write(head.encode() + b"x" * (20 * 2**20))  # more than a part: a multipart upload was started
    await writer.drain()
    writer.close()
    s3 = s3_client(s3_backend)
    data = b"whole body"
    deadline = time.monotonic() + 60
    while True:  # the cut request gives its lease back once the server noticed the cut
        status, _, body = await anonymous("PUT", link["url"], data=data)
        if status != 423:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert status == 201, body
    assert s3_keys(s3, settings, bucket_id) == [f"{bucket_id}/cut.bin"]
    response = await client.get(f"/api/v1/objects/{bucket_id}/cut.bin", headers=auth("alice"))
    assert await response.read() == data


async def test_an_archived_or_deleted_bucket_refuses_its_links(client):
    bucket_id = await create_bucket(client)
    await put_raw(client, bucket_id, "a.txt", b"data")
    get_link = await share(client, bucket_id, "a.txt")
    put_link = await share(client, bucket_id, "b.txt", method="PUT")
    response = await client.patch(f"/api/v1/objects/{bucket_id}", json={"archived": True}, headers=auth("alice"))
    assert response.status == 200
    assert (await anonymous("PUT", put_link["url"], data=b"x"))[0] == 404
    assert (await anonymous("GET", get_link["url"]))[0] == 200  # archived buckets stay readable
    await client.patch(f"/api/v1/objects/{bucket_id}", json={"archived": False}, headers=auth("alice"))
    assert (await client.delete(f"/api/v1/objects/{bucket_id}", headers=auth("alice"))).status == 200

    # The deletion removes the link's row; the row may still sit in this instance's signed-URL
    # cache until the deletion's notification arrives (asynchronously): meanwhile the gone
    # bucket answers 404. Every answer refuses; once the notification is in, the link itself is
    # reported as no longer valid.
    async def refused_as_invalid() -> bool:
        status = (await anonymous("GET", get_link["url"]))[0]
        assert status in (403, 404), status
        return status == 403
    await eventually(refused_as_invalid, "the deleted bucket's link is refused as no longer valid")


async def test_a_url_signed_with_another_key_is_refused_and_old_keys_still_verify(aiohttp_client, settings):
    first = await aiohttp_client(AppServer(create_app(settings.replace(signing_keys=KEY_A))))
    other = await aiohttp_client(AppServer(create_app(settings.replace(signing_keys=KEY_B))))
    rotated = await aiohttp_client(AppServer(create_app(settings.replace(signing_keys=f"{KEY_B},{KEY_A}"))))
    bucket_id = await create_bucket(first)
    await put_raw(first, bucket_id, "a.txt", b"data")
    link = await share(first, bucket_id, "a.txt")
    assert parse_qs(urlsplit(link["url"]).query)["kid"] == ["ka"]
    path = urlsplit(link["url"])
    on = lambda server: f"http://{server.host}:{server.port}{path.path}?{path.query}"  # noqa: E731
    assert (await anonymous("GET", on(first)))[0] == 200
    status, _, body = await anonymous("GET", on(other))  # kb only: does not know ka
    assert status == 403 and b"key this server does not have" in body
    # the same key id with another secret: the signature does not match
    swapped = await aiohttp_client(AppServer(create_app(settings.replace(signing_keys="ka:" + "z" * 40))))
    status, _, body = await anonymous("GET", on(swapped))
    assert status == 403 and b"signature" in body
    # rotation: kb signs new URLs, ka still verifies the old ones
    assert (await anonymous("GET", on(rotated)))[0] == 200
    assert parse_qs(urlsplit((await share(rotated, bucket_id, "a.txt"))["url"]).query)["kid"] == ["kb"]


async def test_a_revocation_on_one_instance_is_refused_on_another(aiohttp_client, settings):
    ttl = 300.0  # far longer than the test: only the notification can make the other instance refuse
    first = await aiohttp_client(AppServer(create_app(settings.replace(signing_keys=KEY_A, acl_cache_ttl=ttl))))
    second = await aiohttp_client(AppServer(create_app(settings.replace(signing_keys=KEY_A, acl_cache_ttl=ttl))))
    for instance in (first, second):
        cache = instance.server.app[context.SIGNED_URLS]
        deadline = time.monotonic() + 10
        while not cache.enabled:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    bucket_id = await create_bucket(first)
    await put_raw(first, bucket_id, "a.txt", b"data")
    link = await share(first, bucket_id, "a.txt")
    path = urlsplit(link["url"])
    on_second = f"http://{second.host}:{second.port}{path.path}?{path.query}"
    cache = second.server.app[context.SIGNED_URLS]
    hits = cache.hits
    assert (await anonymous("GET", on_second))[0] == 200
    assert (await anonymous("GET", on_second))[0] == 200
    assert cache.hits > hits and link["id"] in cache.entries  # the second instance answers from its cache
    assert (await first.delete(f"/api/v1/shares/{link['id']}", headers=auth("alice"))).status == 204
    deadline = time.monotonic() + 10
    while (status := (await anonymous("GET", on_second))[0]) == 200:
        assert time.monotonic() < deadline, "the revocation never reached the second instance"
        await asyncio.sleep(0.01)
    assert status == 403


@pytest.mark.parametrize("query", ["", "?method=GET"])
async def test_the_signed_route_without_a_signature_is_400(client, query):
    bucket_id = await create_bucket(client)
    await put_raw(client, bucket_id, "a.txt", b"data")
    response = await client.get(f"/api/v1/signed/{bucket_id}/a.txt{query}", headers=auth("alice"))
    assert response.status == 400 and "not a signed URL" in (await response.json())["error"]
