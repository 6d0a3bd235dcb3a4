"""Bucket permissions (?permissions): show, grant, revoke, and the Go server's ACL holes closed."""
import pytest

from support.api import create_bucket, grant, grants_in_db, put_raw
from support.data import auth


async def test_show_permissions_has_exactly_three_fields(client):
    bucket_id = await create_bucket(client, public=True)
    for query in ("?permissions", "?permissions=True", "?permissions=1", "?permissions="):
        response = await client.get(f"/api/v1/objects/{bucket_id}{query}", headers=auth("alice"))
        assert response.status == 200, query
        entries = await response.json()
        assert entries == [{"granteeType": "USER", "grantee": "alice", "permission": "FULL_CONTROL"},
                           {"granteeType": "GROUP", "grantee": "AllUsers", "permission": "READ"}]
        assert all(len(entry) == 3 for entry in entries)


async def test_permissions_false_is_a_mistake_not_a_bucket_operation(client, database_url):
    bucket_id = await create_bucket(client)
    for method in ("get", "put", "delete"):
        response = await client.request(method, f"/api/v1/objects/{bucket_id}?permissions=false",
                                        headers=auth("alice"), json={})
        assert response.status == 400, method
        assert "permissions=false" in (await response.json())["error"]
    response = await client.get(f"/api/v1/objects/{bucket_id}?permissions=perhaps", headers=auth("alice"))
    assert response.status == 400
    assert grants_in_db(database_url, bucket_id) == [("USER", "alice", "FULL_CONTROL")]  # the bucket survived


async def test_grant_and_use_a_permission(client, database_url):
    bucket_id = await create_bucket(client)
    assert (await client.get(f"/api/v1/objects/{bucket_id}", headers=auth("otheruser"))).status == 404
    body = '{"granteeType": "USER", "grantee": "otheruser", "permission": "READ"}'
    response = await client.put(f"/api/v1/objects/{bucket_id}?permissions", data=body, headers=auth("alice"))
    assert response.status == 200
    assert await response.json() == {"granteeType": "USER", "grantee": "otheruser", "permission": "READ"}
    assert ("USER", "otheruser", "READ") in grants_in_db(database_url, bucket_id)
    assert (await client.get(f"/api/v1/objects/{bucket_id}", headers=auth("otheruser"))).status == 200
    # granting twice is quietly fine, like the Go server
    response = await client.put(f"/api/v1/objects/{bucket_id}?permissions", data=body, headers=auth("alice"))
    assert response.status == 200
    assert grants_in_db(database_url, bucket_id).count(("USER", "otheruser", "READ")) == 1


async def test_make_public_and_private_again(client):
    """Go TestUploadAndDownload's public part, and sage-cli's `permissions public` / `delete GROUP AllUsers`."""
    bucket_id = await create_bucket(client)
    assert (await put_raw(client, bucket_id, "f.txt", b"test-data")).status == 200
    assert (await client.get(f"/api/v1/objects/{bucket_id}/f.txt")).status == 401
    await grant(client, bucket_id, "GROUP", "AllUsers", "READ")
    response = await client.get(f"/api/v1/objects/{bucket_id}/f.txt")
    assert response.status == 200 and await response.read() == b"test-data"
    response = await client.delete(f"/api/v1/objects/{bucket_id}?permissions&grantee=GROUP:AllUsers",
                                   headers=auth("alice"))
    assert await response.json() == {"deleted": ["GROUP:AllUsers"]}
    assert (await client.get(f"/api/v1/objects/{bucket_id}/f.txt")).status == 401


async def test_public_bucket_gives_anonymous_callers_reads_only(client):
    bucket_id = await create_bucket(client, public=True)
    assert (await put_raw(client, bucket_id, "f.txt")).status == 200
    assert (await client.get(f"/api/v1/objects/{bucket_id}")).status == 200
    assert (await client.get(f"/api/v1/objects/{bucket_id}/")).status == 200
    assert (await client.get(f"/api/v1/objects/{bucket_id}/f.txt")).status == 200
    assert (await client.head(f"/api/v1/objects/{bucket_id}/f.txt")).status == 200
    for method, path in (("GET", "?permissions"), ("PUT", "/g.txt"), ("DELETE", "/f.txt"), ("PATCH", ""),
                         ("DELETE", ""), ("PUT", "?permissions")):
        response = await client.request(method, f"/api/v1/objects/{bucket_id}{path}", json={"name": "x"})
        assert response.status == 401, (method, path)


async def test_the_owners_grant_cannot_be_changed(client, database_url):
    bucket_id = await create_bucket(client)
    await grant(client, bucket_id, "USER", "co-owner", "FULL_CONTROL")
    for caller in ("alice", "co-owner"):
        response = await client.put(f"/api/v1/objects/{bucket_id}?permissions", headers=auth(caller),
                                    json={"granteeType": "USER", "grantee": "alice", "permission": "READ"})
        assert response.status == 400
        assert "owner" in (await response.json())["error"]
        for spec in ("USER:alice", "USER:alice:FULL_CONTROL", "alice"):
            response = await client.delete(f"/api/v1/objects/{bucket_id}?permissions", params={"grantee": spec},
                                           headers=auth(caller))
            assert response.status == 400, spec
    assert ("USER", "alice", "FULL_CONTROL") in grants_in_db(database_url, bucket_id)
    # a GROUP that happens to carry the owner's name is not the owner
    await grant(client, bucket_id, "GROUP", "alice", "READ")


@pytest.mark.parametrize("permission", ["WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"])
async def test_all_users_may_only_get_read(client, database_url, permission):
    bucket_id = await create_bucket(client)
    response = await client.put(f"/api/v1/objects/{bucket_id}?permissions", headers=auth("alice"),
                                json={"granteeType": "GROUP", "grantee": "AllUsers", "permission": permission})
    assert response.status == 400
    assert "AllUsers" in (await response.json())["error"]
    assert grants_in_db(database_url, bucket_id) == [("USER", "alice", "FULL_CONTROL")]


async def test_nobody_grants_more_than_they_hold(client, database_url):
    """The Go server let a WRITE_ACP holder grant itself FULL_CONTROL."""
    bucket_id = await create_bucket(client)
    await grant(client, bucket_id, "USER", "acp", "WRITE_ACP")
    await grant(client, bucket_id, "USER", "acp", "READ")
    for grantee, permission in (("acp", "FULL_CONTROL"), ("acp", "WRITE"), ("friend", "READ_ACP"),
                                ("friend", "FULL_CONTROL")):
        response = await client.put(f"/api/v1/objects/{bucket_id}?permissions", headers=auth("acp"),
                                    json={"granteeType": "USER", "grantee": grantee, "permission": permission})
        assert response.status == 403, (grantee, permission)
        assert f"cannot grant {permission}" in (await response.json())["error"]
    # what it holds it may pass on
    for permission in ("READ", "WRITE_ACP"):
        response = await client.put(f"/api/v1/objects/{bucket_id}?permissions", headers=auth("acp"),
                                    json={"granteeType": "USER", "grantee": "friend", "permission": permission})
        assert response.status == 200
    assert sorted(grants_in_db(database_url, bucket_id)) == sorted([
        ("USER", "alice", "FULL_CONTROL"), ("USER", "acp", "READ"), ("USER", "acp", "WRITE_ACP"),
        ("USER", "friend", "READ"), ("USER", "friend", "WRITE_ACP")])
    # a FULL_CONTROL holder may grant everything
    await grant(client, bucket_id, "USER", "admin", "FULL_CONTROL")
    for permission in ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"):
        await grant(client, bucket_id, "USER", "friend", permission, user="admin")


async def test_nobody_revokes_more_than_they_hold(client, database_url):
    bucket_id = await create_bucket(client)
    await grant(client, bucket_id, "USER", "acp", "WRITE_ACP")
    await grant(client, bucket_id, "USER", "acp", "READ")
    await grant(client, bucket_id, "USER", "admin", "FULL_CONTROL")
    await grant(client, bucket_id, "USER", "writer", "WRITE")
    for spec in ("USER:admin", "USER:admin:FULL_CONTROL", "USER:writer"):
        response = await client.delete(f"/api/v1/objects/{bucket_id}?permissions", params={"grantee": spec},
                                       headers=auth("acp"))
        assert response.status == 403, spec
    # one refused spec refuses the whole request
    response = await client.delete(f"/api/v1/objects/{bucket_id}?permissions&grantee=USER:acp:READ"
                                   "&grantee=USER:admin", headers=auth("acp"))
    assert response.status == 403
    assert len(grants_in_db(database_url, bucket_id)) == 5


async def test_revoke_permissions(client, database_url):
    bucket_id = await create_bucket(client)
    for permission in ("READ", "WRITE", "READ_ACP"):
        await grant(client, bucket_id, "USER", "otheruser", permission)
    await grant(client, bucket_id, "GROUP", "team", "READ")
    response = await client.delete(f"/api/v1/objects/{bucket_id}?permissions&grantee=USER:otheruser:READ",
                                   headers=auth("alice"))
    assert response.status == 200
    assert await response.json() == {"deleted": ["USER:otheruser:READ"]}
    assert ("USER", "otheruser", "READ") not in grants_in_db(database_url, bucket_id)
    assert ("USER", "otheruser", "WRITE") in grants_in_db(database_url, bucket_id)
    # repeatable; a bare name means USER; TYPE:NAME removes all of the grantee's rows; unknown ones are skipped
    response = await client.delete(f"/api/v1/objects/{bucket_id}?permissions=True&grantee=otheruser"
                                   "&grantee=GROUP:team&grantee=USER:nobody", headers=auth("alice"))
    assert response.status == 200
    assert await response.json() == {"deleted": ["USER:otheruser", "GROUP:team"]}
    assert grants_in_db(database_url, bucket_id) == [("USER", "alice", "FULL_CONTROL")]
    assert (await client.get(f"/api/v1/objects/{bucket_id}", headers=auth("otheruser"))).status == 404


@pytest.mark.parametrize("query, message", [
    ("?permissions", "'grantee' is required"),
    ("?permissions&grantee=", "must look like"),
    ("?permissions&grantee=USER:", "must look like"),
    ("?permissions&grantee=ROBOT:x", "USER or GROUP"),
    ("?permissions&grantee=USER:x:ALL", "permission 'ALL'"),
    ("?permissions&grantee=USER:x:READ:more", "must look like"),
])
async def test_bad_revocations_are_400_and_change_nothing(client, database_url, query, message):
    bucket_id = await create_bucket(client)
    await grant(client, bucket_id, "USER", "x", "READ")
    response = await client.delete(f"/api/v1/objects/{bucket_id}{query}", headers=auth("alice"))
    assert response.status == 400
    assert message in (await response.json())["error"]
    assert len(grants_in_db(database_url, bucket_id)) == 2


@pytest.mark.parametrize("body, message", [
    ({"granteeType": "USER", "grantee": "bob"}, "missing field(s): permission"),
    ({"granteeType": "ROBOT", "grantee": "bob", "permission": "READ"}, "granteeType must be"),
    ({"granteeType": "USER", "grantee": "bob", "permission": "ALL"}, "permission must be"),
    ({"granteeType": "USER", "grantee": "", "permission": "READ"}, "non-empty"),
    ({"granteeType": "USER", "grantee": 7, "permission": "READ"}, "non-empty"),
    ({"granteeType": "USER", "grantee": "a:b", "permission": "READ"}, "must not contain ':'"),
    ({"granteeType": "USER", "grantee": "x" * 300, "permission": "READ"}, "longer than"),
    ({"granteeType": "USER", "grantee": "bob", "permission": "READ", "owner": "me"}, "unknown field(s): owner"),
    ("[]", "must be a JSON object"),
    ("{", "not valid JSON"),
])
async def test_bad_grants_are_400_and_change_nothing(client, database_url, body, message):
    bucket_id = await create_bucket(client)
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    response = await client.put(f"/api/v1/objects/{bucket_id}?permissions", headers=auth("alice"), **kwargs)
    assert response.status == 400
    assert message in (await response.json())["error"]
    assert grants_in_db(database_url, bucket_id) == [("USER", "alice", "FULL_CONTROL")]


async def test_put_on_a_bucket_needs_permissions_query(client):
    bucket_id = await create_bucket(client)
    response = await client.put(f"/api/v1/objects/{bucket_id}", headers=auth("alice"),
                                json={"granteeType": "USER", "grantee": "bob", "permission": "READ"})
    assert response.status == 400
    assert "?permissions" in (await response.json())["error"]


async def test_lower_case_types_and_permissions_are_normalised(client, database_url):
    bucket_id = await create_bucket(client)
    response = await client.put(f"/api/v1/objects/{bucket_id}?permissions", headers=auth("alice"),
                                json={"granteeType": "user", "grantee": "bob", "permission": "read"})
    assert await response.json() == {"granteeType": "USER", "grantee": "bob", "permission": "READ"}
    response = await client.delete(f"/api/v1/objects/{bucket_id}?permissions&grantee=user:bob:read",
                                   headers=auth("alice"))
    assert await response.json() == {"deleted": ["USER:bob:READ"]}


async def test_group_grants_match_the_groups_in_the_token(client):
    """The Go server never matched groups other than AllUsers."""
    bucket_id = await create_bucket(client)
    await grant(client, bucket_id, "GROUP", "team", "READ")
    await grant(client, bucket_id, "GROUP", "team", "WRITE")
    member, outsider = auth("bob", ("lab", "team")), auth("bob", ("lab",))
    assert (await client.get(f"/api/v1/objects/{bucket_id}", headers=member)).status == 200
    assert (await client.get(f"/api/v1/objects/{bucket_id}", headers=outsider)).status == 404
    response = await client.put(f"/api/v1/objects/{bucket_id}/by-group.txt", data=b"g", headers=member)
    assert response.status == 200
    response = await client.get(f"/api/v1/objects/{bucket_id}/by-group.txt", headers=auth("alice"))
    assert await response.read() == b"g"
    # a user named like the group gets nothing from the GROUP grant
    assert (await client.get(f"/api/v1/objects/{bucket_id}", headers=auth("team"))).status == 404
