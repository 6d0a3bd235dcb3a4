"""Policy gaps closed (issue 18, Low): appends re-check WRITE and archived state, tus finals
refuse repeated partials. Over HTTP on real PostgreSQL and SeaweedFS."""
from __future__ import annotations

from support.tus import TUS, metadata, stored
from support.data import auth, make_bucket

from sagestore import context

OCTETS = {"Content-Type": "application/offset+octet-stream"}
IETF = {"Upload-Draft-Interop-Version": "6"}


async def test_tus_and_ietf_appends_recheck_write_and_archived(client):
    app = client.server.app
    bucket_id = await make_bucket(app, grants=[("USER", "bob", "READ"), ("USER", "bob", "WRITE")])
    tus = await client.post("/api/v1/tus/", headers={**TUS, **auth("bob"), "Upload-Length": "10",
                                                     "Upload-Metadata": metadata(bucket=bucket_id, key="t.bin")})
    assert tus.status == 201
    tus_url = tus.headers["Location"]
    ietf = await client.post(f"/api/v1/uploads/?bucket={bucket_id}&key=i.bin", data=b"abc",
                             headers={**IETF, **auth("bob"), "Upload-Complete": "?0"})
    assert ietf.status == 201
    ietf_url = ietf.headers["Location"]
    assert (await client.patch(tus_url, data=b"abc", headers={**TUS, **auth("bob"), **OCTETS,
                                                              "Upload-Offset": "0"})).status == 204

    # WRITE revoked: both appends are refused and move no offset
    response = await client.delete(f"/api/v1/objects/{bucket_id}?permissions&grantee=USER:bob:WRITE",
                                   headers=auth("alice"))
    assert response.status == 200, await response.text()
    response = await client.patch(tus_url, data=b"def", headers={**TUS, **auth("bob"), **OCTETS, "Upload-Offset": "3"})
    assert response.status == 403, await response.text()
    response = await client.patch(ietf_url, data=b"def", headers={
        **IETF, **auth("bob"), "Upload-Offset": "3", "Upload-Complete": "?0", "Content-Type": "application/partial-upload"})
    assert response.status == 403, await response.text()
    assert (await client.head(tus_url, headers={**TUS, **auth("bob")})).headers["Upload-Offset"] == "3"
    assert (await client.head(ietf_url, headers={**IETF, **auth("bob")})).headers["Upload-Offset"] == "3"

    # WRITE back, then the bucket archived: read-only, so appends get 404 like every write
    response = await client.put(f"/api/v1/objects/{bucket_id}?permissions", json={
        "granteeType": "USER", "grantee": "bob", "permission": "WRITE"}, headers=auth("alice"))
    assert response.status in (200, 204), await response.text()
    assert (await client.patch(tus_url, data=b"def", headers={**TUS, **auth("bob"), **OCTETS,
                                                              "Upload-Offset": "3"})).status == 204
    response = await client.patch(f"/api/v1/objects/{bucket_id}", json={"archived": True}, headers=auth("alice"))
    assert response.status == 200, await response.text()
    response = await client.patch(tus_url, data=b"ghij", headers={**TUS, **auth("bob"), **OCTETS, "Upload-Offset": "6"})
    assert response.status == 404, await response.text()
    response = await client.patch(ietf_url, data=b"def", headers={
        **IETF, **auth("bob"), "Upload-Offset": "3", "Upload-Complete": "?1", "Content-Type": "application/partial-upload"})
    assert response.status == 404, await response.text()
    assert (await client.head(tus_url, headers={**TUS, **auth("bob")})).headers["Upload-Offset"] == "6"
    assert await stored(app, bucket_id, "t.bin") is None and await stored(app, bucket_id, "i.bin") is None


async def test_tus_final_refuses_a_partial_listed_twice(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    response = await client.post("/api/v1/tus/", data=b"0123456789", headers={
        **TUS, **auth("alice"), **OCTETS, "Upload-Length": "10", "Upload-Concat": "partial"})
    assert response.status == 201, await response.text()
    partial = response.headers["Location"]
    for listed in (f"{partial} {partial}", f"{partial} {partial.upper().replace('/API/V1/TUS/', '/api/v1/tus/')}"):
        response = await client.post("/api/v1/tus/", headers={
            **TUS, **auth("alice"), "Upload-Concat": f"final;{listed}",
            "Upload-Metadata": metadata(bucket=bucket_id, key="twice.bin")})
        assert response.status == 400, await response.text()
        assert "more than once" in (await response.json())["error"]
    assert await stored(app, bucket_id, "twice.bin") is None
    response = await client.post("/api/v1/tus/", headers={
        **TUS, **auth("alice"), "Upload-Concat": f"final;{partial}",
        "Upload-Metadata": metadata(bucket=bucket_id, key="once.bin")})
    assert response.status == 201
    assert await stored(app, bucket_id, "once.bin") == b"0123456789"


async def test_bidi_controls_in_keys_are_refused(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    for key in ("invoice\u202efdp.exe", "a\u2066b.txt", "x\u200f.bin"):
        response = await client.put(f"/api/v1/objects/{bucket_id}/{key}", data=b"MZ", headers=auth("alice"))
        assert response.status == 400, await response.text()
        assert "bidirectional" in (await response.json())["error"]
        response = await client.post("/api/v1/tus/", headers={**TUS, **auth("alice"), "Upload-Length": "2",
                                                              "Upload-Metadata": metadata(bucket=bucket_id, key=key)})
        assert response.status == 400, await response.text()
    listing = await (await client.get(f"/api/v1/objects/{bucket_id}/?recursive", headers=auth("alice"))).json()
    assert listing["Contents"] is None


async def test_a_non_ascii_user_name_works_with_every_resumable_api(client):
    app = client.server.app
    user = "J\u00fcrgen"
    bucket_id = await make_bucket(app, owner=user)
    headers = {"Authorization": f"sage user:{user}"}  # UTF-8 bytes on the wire
    response = await client.post("/api/v1/tus/", data=b"tus-bytes", headers={
        **TUS, **headers, **OCTETS, "Upload-Length": "9", "Upload-Metadata": metadata(bucket=bucket_id, key="t.bin")})
    assert response.status == 201, await response.text()
    response = await client.post(f"/api/v1/uploads/?bucket={bucket_id}&key=i.bin", data=b"ietf-bytes",
                                 headers={**IETF, **headers, "Upload-Complete": "?1"})
    assert response.status in (200, 201), await response.text()
    response = await client.put(f"/api/v1/upload?bucket_id={bucket_id}&key=o.bin", data=b"offset", headers=headers)
    assert response.status == 201, await response.text()
    upload_id = (await response.json())["upload_id"]
    response = await client.post("/api/v1/import_upload", json={"upload_id": upload_id}, headers=headers)
    assert response.status == 201, await response.text()
    response = await client.post("/api/v1/multipart/", json={"object_type": "file", "object_id": bucket_id,
                                                             "key": "m.bin"}, headers=headers)
    assert response.status == 201, await response.text()
    upload_id = (await response.json())["upload_id"]
    response = await client.put(f"/api/v1/multipart/{upload_id}/parts/1", data=b"multipart", headers=headers)
    assert response.status == 200, await response.text()
    etag = (await response.json())["etag"]
    response = await client.post("/api/v1/multipart/complete/", json={
        "object_type": "file", "object_id": bucket_id, "upload_id": upload_id,
        "parts": [{"part_number": 1, "etag": etag}]}, headers=headers)
    assert response.status == 201, await response.text()
    assert await stored(app, bucket_id, "t.bin") == b"tus-bytes"
    assert await stored(app, bucket_id, "i.bin") == b"ietf-bytes"
    assert await stored(app, bucket_id, "o.bin") == b"offset"
    assert await stored(app, bucket_id, "m.bin") == b"multipart"
    response = await client.get(f"/api/v1/objects/{bucket_id}/t.bin", headers=headers)
    assert response.status == 200 and await response.read() == b"tus-bytes"


async def test_upload_content_types_are_validated_and_downloads_say_nosniff(client):
    app = client.server.app
    bucket_id = await make_bucket(app)
    alice = auth("alice")
    for bad in ("text/plain\r\nX-Injected: 1", "not a media type", "text/html\x00", "a" * 300 + "/b"):
        response = await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": "o.bin",
                                                               "content_type": bad}, data=b"x", headers=alice)
        assert response.status == 400, await response.text()
        response = await client.post("/api/v1/multipart/", json={"object_type": "file", "object_id": bucket_id,
                                                                 "key": "m.bin", "content_type": bad}, headers=alice)
        assert response.status == 400, await response.text()
        response = await client.post("/api/v1/attachment/initiate", json={
            "bucket_id": bucket_id, "fileName": "s.bin", "fileSize": 1, "contentType": bad, "sha256": "0" * 64},
            headers=alice)
        assert response.status == 400, await response.text()
        # a NUL is refused by the JSON body check before the media-type check sees it
        assert ("NUL" if "\x00" in bad else "media type") in (await response.json())["error"]
    async with app[context.DB].acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT count(*) AS n FROM uploads WHERE bucket_id = %s", (bucket_id,))
        assert (await cur.fetchone())["n"] == 0
    # a valid one is kept, and the download tells browsers not to sniff
    response = await client.put("/api/v1/upload", params={"bucket_id": bucket_id, "key": "page.html",
                                                           "content_type": "text/html; charset=utf-8"},
                                data=b"<script>alert(1)</script>", headers=alice)
    assert response.status == 201, await response.text()
    response = await client.post("/api/v1/import_upload", json={"upload_id": (await response.json())["upload_id"]},
                                 headers=alice)
    assert response.status == 201, await response.text()
    for method in ("GET", "HEAD"):
        response = await client.request(method, f"/api/v1/objects/{bucket_id}/page.html", headers=alice)
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Disposition"].startswith("attachment;")


async def test_anonymous_bucket_listing_is_paged_in_the_old_shape(client):
    import uuid as uuid_module

    from sagestore.db import buckets as bucket_queries
    from sagestore.db import transaction
    app = client.server.app
    name = "paged-" + uuid_module.uuid4().hex[:8]
    async with transaction(app[context.DB]) as cur:
        for _ in range(1005):
            await bucket_queries.create(cur, str(uuid_module.uuid4()), name, "model", "alice", True)
    response = await client.get("/api/v1/objects", params={"name": name})
    assert response.status == 200
    first = await response.json()
    assert isinstance(first, list) and len(first) == 1000 and all(item["name"] == name for item in first)
    assert 'rel="next"' in response.headers["Link"]
    next_url = response.headers["Link"].split(">")[0].lstrip("<")
    response = await client.get(next_url)
    rest = await response.json()
    assert response.status == 200 and len(rest) == 5 and "Link" not in response.headers
    assert len({item["id"] for item in first + rest}) == 1005
    for bad in ({"limit": "1001"}, {"after": "not-a-token"}):
        response = await client.get("/api/v1/objects", params={"name": name, **bad})
        assert response.status == 400, await response.text()
    # a signed-in caller still gets the whole list in one answer unless it asks for a page
    response = await client.get("/api/v1/objects", params={"name": name}, headers=auth("bob"))
    assert len(await response.json()) == 1005 and "Link" not in response.headers
    response = await client.get("/api/v1/objects", params={"name": name, "limit": "10"}, headers=auth("bob"))
    assert len(await response.json()) == 10 and 'rel="next"' in response.headers["Link"]
