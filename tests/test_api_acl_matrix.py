"""THE ACL matrix: every endpoint x every kind of caller x private/public bucket, from one table.

Callers: the owner; a USER grantee holding exactly one of the five permissions; a member
of a GROUP granted READ+WRITE (noauth token 'user:m-bob;groups=m-team'); a stranger; an
anonymous caller. Cells are HTTP statuses, except list_buckets where they say whether the
bucket is in the caller's list. Every refused write is checked to have changed nothing.
"""
from __future__ import annotations

import pytest

from support.api import create_bucket, grant, put_raw
from support.backends import new_database
from support.data import auth

MATRIX = """
operation       bucket   owner  READ  WRITE  READ_ACP  WRITE_ACP  FULL_CONTROL  group  stranger  anonymous
list_buckets    private  yes    yes   no     no        no         yes           yes    no        no
list_buckets    public   yes    yes   yes    yes       yes        yes           yes    yes       yes
create_bucket   private  200    200   200    200       200        200           200    200       401
create_bucket   public   200    200   200    200       200        200           200    200       401
show_bucket     private  200    200   404    404       404        200           200    404       401
show_bucket     public   200    200   200    200       200        200           200    200       200
patch_bucket    private  200    403   404    404       404        200           403    404       401
patch_bucket    public   200    403   403    403       403        200           403    403       401
delete_bucket   private  200    403   404    404       404        200           403    404       401
delete_bucket   public   200    403   403    403       403        200           403    403       401
show_perms      private  200    403   404    200       404        200           403    404       401
show_perms      public   200    403   403    200       403        200           403    403       401
grant_read      private  200    403   404    404       403        200           403    404       401
grant_read      public   200    403   403    403       200        200           403    403       401
revoke_read     private  200    403   404    404       403        200           403    404       401
revoke_read     public   200    403   403    403       200        200           403    403       401
list_files      private  200    200   404    404       404        200           200    404       401
list_files      public   200    200   200    200       200        200           200    200       200
upload          private  200    403   200    404       404        200           200    404       401
upload          public   200    403   200    403       403        200           200    403       401
download        private  200    200   404    404       404        200           200    404       401
download        public   200    200   200    200       200        200           200    200       200
head            private  200    200   404    404       404        200           200    404       401
head            public   200    200   200    200       200        200           200    200       200
delete_file     private  200    403   200    404       404        200           200    404       401
delete_file     public   200    403   200    403       403        200           200    403       401
"""

OWNER = "m-owner"
CALLERS = {  # column -> (user, groups)
    "owner": (OWNER, ()),
    "READ": ("m-read", ()), "WRITE": ("m-write", ()), "READ_ACP": ("m-read-acp", ()),
    "WRITE_ACP": ("m-write-acp", ()), "FULL_CONTROL": ("m-full", ()),
    "group": ("m-bob", ("m-team",)),
    "stranger": ("m-stranger", ()),
    "anonymous": (None, ()),
}
CAROL = "m-carol"  # the third party that grant/revoke cells act on
CONTENT = b"matrix-content"


def parse_matrix() -> list[tuple[str, str, str, str]]:
    lines = [line.split() for line in MATRIX.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    assert header[2:] == list(CALLERS)
    return [(row[0], row[1], caller, expected) for row in rows for caller, expected in zip(header[2:], row[2:])]


async def new_bucket(client, visibility: str) -> str:
    bucket_id = await create_bucket(client, OWNER, public=visibility == "public", name="matrix")
    for column in ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"):
        await grant(client, bucket_id, "USER", CALLERS[column][0], column, user=OWNER)
    await grant(client, bucket_id, "GROUP", "m-team", "READ", user=OWNER)
    await grant(client, bucket_id, "GROUP", "m-team", "WRITE", user=OWNER)
    assert (await put_raw(client, bucket_id, "existing.txt", CONTENT, user=OWNER)).status == 200
    return bucket_id


async def as_owner(client, method: str, path: str, **kwargs):
    return await client.request(method, path, headers=auth(OWNER), **kwargs)


async def carol_grants(client, bucket_id: str) -> list[dict]:
    response = await as_owner(client, "GET", f"/api/v1/objects/{bucket_id}?permissions")
    return [entry for entry in await response.json() if entry["grantee"] == CAROL]


async def run_cell(client, operation: str, bucket_id: str, visibility: str, caller: str) -> str:
    """Perform one operation as one caller; returns the cell value. Refusals must change nothing."""
    user, groups = CALLERS[caller]
    headers = auth(user, groups)
    base = f"/api/v1/objects/{bucket_id}"

    if operation == "list_buckets":
        response = await client.get("/api/v1/objects", headers=headers)
        assert response.status == 200
        return "yes" if bucket_id in [b["id"] for b in await response.json()] else "no"
    if operation == "create_bucket":
        response = await client.post("/api/v1/objects?type=model", headers=headers)
        return str(response.status)
    if operation == "show_bucket":
        response = await client.get(base, headers=headers)
        if response.status == 200:
            assert (await response.json())["id"] == bucket_id
        return str(response.status)
    if operation == "patch_bucket":
        response = await client.patch(base, json={"name": f"patched-by-{caller}"}, headers=headers)
        name = (await (await as_owner(client, "GET", base)).json())["name"]
        assert (name == f"patched-by-{caller}") == (response.status == 200)
        return str(response.status)
    if operation == "delete_bucket":
        victim = await new_bucket(client, visibility)
        response = await client.delete(f"/api/v1/objects/{victim}", headers=headers)
        still_there = (await as_owner(client, "GET", f"/api/v1/objects/{victim}")).status == 200
        assert still_there == (response.status != 200)
        return str(response.status)
    if operation == "show_perms":
        response = await client.get(f"{base}?permissions", headers=headers)
        if response.status == 200:
            assert {"granteeType": "USER", "grantee": OWNER, "permission": "FULL_CONTROL"} in await response.json()
        return str(response.status)
    if operation == "grant_read":
        await as_owner(client, "DELETE", f"{base}?permissions&grantee=USER:{CAROL}")
        response = await client.put(f"{base}?permissions", headers=headers,
                                    json={"granteeType": "USER", "grantee": CAROL, "permission": "READ"})
        assert bool(await carol_grants(client, bucket_id)) == (response.status == 200)
        return str(response.status)
    if operation == "revoke_read":
        await grant(client, bucket_id, "USER", CAROL, "READ", user=OWNER)
        response = await client.delete(f"{base}?permissions&grantee=USER:{CAROL}:READ", headers=headers)
        assert bool(await carol_grants(client, bucket_id)) == (response.status != 200)
        return str(response.status)
    if operation == "list_files":
        response = await client.get(f"{base}/", headers=headers)
        if response.status == 200:
            assert [item["Key"] for item in (await response.json())["Contents"]][0] == "existing.txt"
        return str(response.status)
    if operation == "upload":
        key = f"upload-by-{caller}.txt"
        response = await client.put(f"{base}/{key}", data=b"new", headers=headers)
        exists = (await as_owner(client, "HEAD", f"{base}/{key}")).status == 200
        assert exists == (response.status == 200)
        return str(response.status)
    if operation == "download":
        response = await client.get(f"{base}/existing.txt", headers=headers)
        if response.status == 200:
            assert await response.read() == CONTENT
        return str(response.status)
    if operation == "head":
        response = await client.head(f"{base}/existing.txt", headers=headers)
        if response.status == 200:
            assert response.headers["Content-Length"] == str(len(CONTENT))
        return str(response.status)
    if operation == "delete_file":
        assert (await put_raw(client, bucket_id, "victim.txt", b"v", user=OWNER)).status == 200
        response = await client.delete(f"{base}/victim.txt", headers=headers)
        exists = (await as_owner(client, "HEAD", f"{base}/victim.txt")).status == 200
        assert exists == (response.status != 200)
        return str(response.status)
    raise AssertionError(f"no runner for operation {operation!r}")


@pytest.fixture(scope="module")
def matrix_database_url(database_server_url):
    """A database of the module's own: an anonymous listing shows the first 1000 public buckets,
    and the session's database holds more than that once other tests have run."""
    with new_database(database_server_url) as url:
        yield url


@pytest.fixture
def settings(base_settings, matrix_database_url):
    return base_settings.replace(database_url=matrix_database_url)


async def test_acl_matrix(client):
    cells = parse_matrix()
    operations = {operation for operation, _, _, _ in cells}
    assert len(cells) == len(operations) * 2 * len(CALLERS)
    buckets = {visibility: await new_bucket(client, visibility) for visibility in ("private", "public")}
    mismatches = []
    for operation, visibility, caller, expected in cells:
        actual = await run_cell(client, operation, buckets[visibility], visibility, caller)
        if actual != expected:
            mismatches.append(f"{operation:14} {visibility:8} {caller:13} expected {expected}, got {actual}")
    assert not mismatches, "\n" + "\n".join(mismatches)
