"""Policy gaps closed (issue 18, Low): appends re-check WRITE and archived state, tus finals
refuse repeated partials. Over HTTP on real PostgreSQL and SeaweedFS."""
from __future__ import annotations

from conftest import auth
from tus_helpers import TUS, make_bucket, metadata, stored

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
