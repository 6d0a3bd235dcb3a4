"""The ACL cache (sagestore/acl/cache.py): hits skip the database, and every change to a bucket or
its grants reaches every instance at once through LISTEN/NOTIFY, with real apps on one database."""
import asyncio
import time

import psycopg2
import pytest

from support.api import create_bucket, grant
from support.data import auth
from sagestore import context
from sagestore.acl.cache import AclCache
from sagestore.app import create_app
from sagestore.db import create_pool

TTL = 3600.0  # far longer than any deadline below: only an invalidation can explain a change
DEADLINE = 60.0  # generous: the machine is shared; no test measures how long a change took


def acl_cache(client) -> AclCache:
    return client.server.app[context.ACL]


async def until(check, deadline: float = DEADLINE) -> float:
    """Seconds until check() is true; fails after `deadline`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def status_within(client, path: str, user: str, expected: int, deadline: float = DEADLINE) -> float:
    started = time.monotonic()
    while True:
        status = (await client.get(path, headers=auth(user))).status
        if status == expected:
            return time.monotonic() - started
        assert time.monotonic() - started < deadline, f"still {status}, expected {expected}"
        await asyncio.sleep(0.01)


async def read_until_cached(client, path: str, user: str) -> None:
    """GET until one is answered from the cache (a late notification of an earlier change may
    still drop the first fill)."""
    cache = acl_cache(client)
    await asyncio.sleep(0.2)  # let notifications of changes just made arrive
    hits = cache.hits
    for _ in range(1200):
        assert (await client.get(path, headers=auth(user))).status == 200
        if cache.hits > hits:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never answered from the cache")


def run_sql(database_url: str, sql: str, *args) -> None:
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cur:
            cur.execute(sql, args)
    finally:
        connection.close()


@pytest.fixture
async def two_instances(aiohttp_client, settings):
    first = await aiohttp_client(create_app(settings.replace(acl_cache_ttl=TTL)))
    second = await aiohttp_client(create_app(settings.replace(acl_cache_ttl=TTL)))
    for instance in (first, second):
        await until(lambda: acl_cache(instance).enabled)
    return first, second


async def test_a_cache_hit_skips_the_database(two_instances):
    client, _ = two_instances
    cache = acl_cache(client)
    bucket_id = await create_bucket(client)
    await read_until_cached(client, f"/api/v1/objects/{bucket_id}", "alice")
    first = await client.get(f"/api/v1/objects/{bucket_id}", headers=auth("alice"))
    misses, hits = cache.misses, cache.hits
    for _ in range(4):
        response = await client.get(f"/api/v1/objects/{bucket_id}", headers=auth("alice"))
        assert response.status == 200
        assert await response.json() == await first.json()
    assert (cache.misses, cache.hits) == (misses, hits + 4)
    # the cached row is the same for every caller, the decision is per caller
    assert (await client.get(f"/api/v1/objects/{bucket_id}", headers=auth("mallory"))).status == 404
    assert (await client.get(f"/api/v1/objects/{bucket_id}")).status == 401
    assert cache.misses == misses


async def test_the_writers_instance_sees_grant_and_revoke_at_once(two_instances):
    client, _ = two_instances
    bucket_id = await create_bucket(client)
    path = f"/api/v1/objects/{bucket_id}"
    assert (await client.get(path, headers=auth("bob"))).status == 404  # now cached without bob
    await grant(client, bucket_id, "USER", "bob", "READ")
    assert (await client.get(path, headers=auth("bob"))).status == 200
    assert (await client.get(path, headers=auth("bob"))).status == 200  # cached with bob
    response = await client.delete(f"{path}?permissions&grantee=USER:bob", headers=auth("alice"))
    assert response.status == 200
    assert (await client.get(path, headers=auth("bob"))).status == 404
    response = await client.patch(path, json={"archived": True}, headers=auth("alice"))
    assert response.status == 200
    assert (await client.put(f"{path}/file.txt", data=b"x", headers=auth("alice"))).status == 404


async def test_a_revoke_on_one_instance_reaches_the_other_well_before_the_ttl(two_instances):
    first, second = two_instances
    bucket_id = await create_bucket(first)
    path = f"/api/v1/objects/{bucket_id}"
    await grant(first, bucket_id, "USER", "bob", "READ")
    await read_until_cached(second, path, "bob")  # the second instance answers from its cache
    response = await first.delete(f"{path}?permissions&grantee=USER:bob", headers=auth("alice"))
    assert response.status == 200
    await status_within(second, path, "bob", 404)
    # and a grant travels the same way
    await grant(first, bucket_id, "GROUP", "team", "READ")
    assert (await second.get(path, headers=auth("carol"))).status == 404  # warm the cache again
    started = time.monotonic()
    while (await second.get(path, headers=auth("carol", ("team",)))).status != 200:
        assert time.monotonic() - started < DEADLINE
        await asyncio.sleep(0.01)


async def test_changes_made_directly_in_the_database_invalidate_too(two_instances, database_url):
    """The triggers fire for any writer, not only for sagestore's handlers."""
    first, second = two_instances
    bucket_id = await create_bucket(first)
    path = f"/api/v1/objects/{bucket_id}"
    await grant(first, bucket_id, "USER", "bob", "READ")
    for instance in two_instances:
        await read_until_cached(instance, path, "bob")
    run_sql(database_url, "DELETE FROM grants WHERE bucket_id = %s AND grantee = 'bob'", bucket_id)
    for instance in two_instances:
        await status_within(instance, path, "bob", 404)
    run_sql(database_url, "UPDATE buckets SET owner = 'dave' WHERE id = %s", bucket_id)
    for instance in two_instances:
        response = await instance.get(path, headers=auth("alice"))
        started = time.monotonic()
        while (await response.json()).get("owner") != "dave":
            assert time.monotonic() - started < DEADLINE
            await asyncio.sleep(0.01)
            response = await instance.get(path, headers=auth("alice"))


async def test_a_bucket_deleted_on_one_instance_is_gone_on_the_other(two_instances):
    first, second = two_instances
    bucket_id = await create_bucket(first)
    path = f"/api/v1/objects/{bucket_id}"
    await read_until_cached(second, path, "alice")
    assert (await first.delete(path, headers=auth("alice"))).status == 200
    assert (await first.get(path, headers=auth("alice"))).status == 404  # the writer: at once
    await status_within(second, path, "alice", 404)
    assert (await second.put(f"{path}/file.txt", data=b"x", headers=auth("alice"))).status == 404


async def test_a_lost_listener_empties_and_disables_the_cache_until_it_reconnects(two_instances, database_url):
    first, second = two_instances
    cache = acl_cache(second)
    bucket_id = await create_bucket(first)
    path = f"/api/v1/objects/{bucket_id}"
    await grant(first, bucket_id, "USER", "bob", "READ")
    await read_until_cached(second, path, "bob")
    assert bucket_id in cache.entries
    old_pid, losses = cache.listener_pid, cache.losses
    # cut the listener and revoke in the same breath: the notification may never reach `second`
    run_sql(database_url, "SELECT pg_terminate_backend(%s)", old_pid)
    run_sql(database_url, "DELETE FROM grants WHERE bucket_id = %s AND grantee = 'bob'", bucket_id)
    await status_within(second, path, "bob", 404)
    await until(lambda: cache.losses == losses + 1)
    await until(lambda: cache.enabled and cache.listener_pid not in (None, old_pid))
    # back on: entries are cached again and invalidated again
    await grant(first, bucket_id, "USER", "bob", "READ")
    await status_within(second, path, "bob", 200)
    await read_until_cached(second, path, "bob")
    response = await first.delete(f"{path}?permissions&grantee=USER:bob", headers=auth("alice"))
    assert response.status == 200
    await status_within(second, path, "bob", 404)


async def test_without_a_listener_every_check_reads_the_database(settings):
    """A listener that cannot connect leaves the cache off: correct, just uncached."""
    pool = await create_pool(settings.database_url)
    cache = AclCache(pool, ttl=TTL)
    listener = asyncio.create_task(cache.listen("postgresql://postgres@127.0.0.1:1/nowhere"))
    try:
        await until(lambda: cache.losses >= 1)
        assert not cache.enabled
        bucket_id = "00000000-0000-4000-8000-000000000001"
        run_sql(settings.database_url, "INSERT INTO buckets (id, type, owner) VALUES (%s, 'none', 'alice')",
                bucket_id)
        for _ in range(3):
            bucket, grants = await cache.bucket_with_grants(bucket_id)
            assert bucket["owner"] == "alice" and grants == []
        assert (cache.hits, cache.misses, len(cache.entries)) == (0, 3, 0)
        run_sql(settings.database_url, "DELETE FROM buckets WHERE id = %s", bucket_id)
        assert await cache.bucket_with_grants(bucket_id) == (None, [])
    finally:
        listener.cancel()
        pool.close()
        await pool.wait_closed()


async def test_the_cache_is_bounded_and_a_zero_ttl_turns_it_off(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.replace(acl_cache_ttl=0)))
    cache = acl_cache(client)
    bucket_id = await create_bucket(client)
    for _ in range(3):
        assert (await client.get(f"/api/v1/objects/{bucket_id}", headers=auth("alice"))).status == 200
    assert (cache.enabled, cache.hits, len(cache.entries)) == (False, 0, 0)

    bounded = AclCache(cache.pool, ttl=TTL, max_entries=2)
    bounded.enable()  # no listener needed to check the bound
    buckets = [await create_bucket(client) for _ in range(3)]
    for each in buckets:
        await bounded.bucket_with_grants(each)
    assert list(bounded.entries) == buckets[1:]  # the least recently used went
    await bounded.bucket_with_grants(buckets[1])
    await bounded.bucket_with_grants(buckets[0])
    assert list(bounded.entries) == [buckets[1], buckets[0]]


def run_sql_unnoticed(database_url: str, sql: str, *args) -> None:
    """A change whose notification never comes: with session_replication_role = replica the
    triggers of migration 0003 do not fire for this session (a missed NOTIFY, as a listener
    that reconnects in between could miss one)."""
    run_sql(database_url, "SET session_replication_role = replica; " + sql, *args)


async def test_a_missed_notification_is_served_until_the_ttl_backstop(aiohttp_client, settings):
    """SAGESTORE_ACL_CACHE_TTL (5 s by default) bounds how long a missed invalidation is served."""
    client = await aiohttp_client(create_app(settings))
    cache = acl_cache(client)
    assert cache.ttl == 5.0
    await until(lambda: cache.enabled)
    bucket_id = await create_bucket(client)
    path = f"/api/v1/objects/{bucket_id}"
    await grant(client, bucket_id, "USER", "bob", "READ")
    await read_until_cached(client, path, "bob")
    expires = cache.entries[bucket_id][0]
    assert expires <= time.monotonic() + 5.0
    run_sql_unnoticed(settings.database_url, "DELETE FROM grants WHERE bucket_id = %s AND grantee = 'bob'",
                      bucket_id)
    hits = cache.hits
    response = await client.get(path, headers=auth("bob"))
    # the premise: inside the entry's life the missed change is not seen (served from the cache)
    assert time.monotonic() < expires, "the check came after the entry expired: no stale answer to see"
    assert response.status == 200 and cache.hits == hits + 1
    await status_within(client, path, "bob", 404)
    assert time.monotonic() >= expires  # it was the TTL, nothing else, that ended it


async def test_grant_revoke_patch_and_delete_decide_on_fresh_rows(two_instances, database_url):
    """bob's FULL_CONTROL is revoked behind the cache's back: his cached entry still reads 200,
    but every ACL-changing or destructive call reads the rows again and refuses him (404: he
    holds nothing on the bucket)."""
    first, _ = two_instances
    cache = acl_cache(first)
    bucket_id = await create_bucket(first)
    path = f"/api/v1/objects/{bucket_id}"
    await grant(first, bucket_id, "USER", "bob", "FULL_CONTROL")
    await grant(first, bucket_id, "USER", "carol", "READ")
    await read_until_cached(first, path, "bob")
    run_sql_unnoticed(database_url, "DELETE FROM grants WHERE bucket_id = %s AND grantee = 'bob'", bucket_id)
    hits = cache.hits
    assert (await first.get(path, headers=auth("bob"))).status == 200 and cache.hits == hits + 1  # stale
    attempts = [
        ("grant", first.put(f"{path}?permissions", headers=auth("bob"),
                            json={"granteeType": "USER", "grantee": "dave", "permission": "READ"})),
        ("revoke", first.delete(f"{path}?permissions&grantee=USER:carol", headers=auth("bob"))),
        ("patch", first.patch(path, json={"archived": True}, headers=auth("bob"))),
        ("delete", first.delete(path, headers=auth("bob"))),
    ]
    for what, attempt in attempts:
        response = await attempt
        assert response.status == 404, (what, await response.text())
    # nothing changed: carol still reads, dave does not, the bucket is there and not archived
    assert (await first.get(path, headers=auth("carol"))).status == 200
    assert (await first.get(path, headers=auth("dave"))).status == 404
    bucket = await (await first.get(path, headers=auth("alice"))).json()
    assert bucket["archived"] is False
    assert bucket_id in cache.entries  # the stale entry was there all along: the rows decided
