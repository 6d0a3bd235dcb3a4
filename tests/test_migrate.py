"""Migrations: `sagestore migrate`, idempotence, version tracking, and two instances at once."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import psycopg2
import pytest

from sagestore.db import create_pool
from sagestore.db.migrate import available_migrations, current_version, migrate
from support.server import clean_env


@pytest.fixture
def fresh_database(database_url):
    """A new, empty database on the test server, dropped afterwards."""
    server_url = database_url.rsplit("/", 1)[0] + "/postgres"
    name = f"sagestore_migrate_{uuid.uuid4().hex[:10]}"

    def admin(sql: str) -> None:
        conn = psycopg2.connect(server_url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()
    admin(f"CREATE DATABASE {name}")
    yield database_url.rsplit("/", 1)[0] + "/" + name
    admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def recorded(url: str) -> list[tuple[int, str]]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        return cur.fetchall()


def run_migrate(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sagestore", "migrate", "--database-url", url],
                          capture_output=True, text=True, env=clean_env(), timeout=120)


def test_migrate_command_applies_once_and_tracks_versions(fresh_database):
    migrations = available_migrations()
    assert migrations, "sagestore/migrations holds the numbered SQL files"
    versions = [version for version, _, _ in migrations]
    assert versions == sorted(set(versions)), "versions are unique and ordered"
    latest = versions[-1]

    first = run_migrate(fresh_database)
    assert first.returncode == 0, first.stderr
    assert f"applied {len(migrations)} migrations; schema version {latest}" in first.stdout
    assert recorded(fresh_database) == [(version, name) for version, name, _ in migrations]

    second = run_migrate(fresh_database)
    assert second.returncode == 0, second.stderr
    assert f"applied 0 migrations; schema version {latest}" in second.stdout
    assert recorded(fresh_database) == [(version, name) for version, name, _ in migrations]
    with psycopg2.connect(fresh_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('buckets'), to_regclass('grants')")
        assert cur.fetchone() == ("buckets", "grants")


def test_migrate_command_on_unreachable_database_is_one_line():
    result = run_migrate("postgresql://postgres:hidden-pw@127.0.0.1:1/nothing")
    assert result.returncode == 2
    assert result.stderr.startswith("sagestore: error: cannot use PostgreSQL")
    assert len(result.stderr.splitlines()) == 1 and "hidden-pw" not in result.stderr


async def test_two_instances_migrating_at_once_apply_each_migration_once(fresh_database):
    pools = [await create_pool(fresh_database, 2) for _ in range(3)]
    try:
        assert await current_version(pools[0]) == 0
        results = await asyncio.gather(*(migrate(pool) for pool in pools))
        everything = [version for version, _, _ in available_migrations()]
        applied = sorted(version for result in results for version in result)
        assert applied == everything, f"each migration applied exactly once, got {results}"
        assert await current_version(pools[1]) == everything[-1]
        assert await asyncio.gather(*(migrate(pool) for pool in pools)) == [[], [], []]
    finally:
        for pool in pools:
            pool.close()
            await pool.wait_closed()
    assert [version for version, _ in recorded(fresh_database)] == everything


def test_two_migrate_commands_at_once(fresh_database):
    commands = [subprocess.Popen([sys.executable, "-m", "sagestore", "migrate", "--database-url", fresh_database],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
                for _ in range(2)]
    outputs = [command.communicate(timeout=120) for command in commands]
    assert [command.returncode for command in commands] == [0, 0], outputs
    counts = sorted(int(out.split("applied ")[1].split()[0]) for out, _ in outputs)
    assert counts == [0, len(available_migrations())]
