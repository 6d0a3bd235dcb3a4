"""Apply numbered SQL files from sagestore/migrations, once each, in order.

Small on purpose: a session-level advisory lock serialises instances that start
at the same time, each file runs in its own transaction, and schema_migrations
records what ran.
"""
from __future__ import annotations

import logging
import re
from importlib import resources

import aiopg

log = logging.getLogger("sagestore.migrate")
MIGRATION_LOCK_ID = 0x5A6E5701  # arbitrary constant shared by every instance
MIGRATION_TIMEOUT = 600.0  # seconds; start-up waits this long for a migration, not a request


def available_migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every NNNN_name.sql file, sorted by version."""
    found = []
    for entry in resources.files("sagestore.migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_([\w-]+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


async def migrate(pool: aiopg.Pool) -> list[int]:
    """Apply missing migrations; returns the versions applied by this call."""
    applied_now = []
    async with pool.acquire() as conn:
        async with conn.cursor() as cur:
            # a migration (or waiting for another instance's) may take longer than the bound
            # of a request's statement; RESET returns to the pool's statement_timeout
            await cur.execute("SET statement_timeout = 0")
            await cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,), timeout=MIGRATION_TIMEOUT)
            try:
                await cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())")
                await cur.execute("SELECT version FROM schema_migrations")
                done = {row["version"] for row in await cur.fetchall()}
                for version, name, sql in available_migrations():
                    if version in done:
                        continue
                    async with cur.begin():
                        await cur.execute(sql, timeout=MIGRATION_TIMEOUT)
                        await cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                                          (version, name))
                    log.info("applied migration %04d_%s", version, name)
                    applied_now.append(version)
            finally:
                await cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
                await cur.execute("RESET statement_timeout")
    return applied_now


async def current_version(pool: aiopg.Pool) -> int:
    async with pool.acquire() as conn:
        async with conn.cursor() as cur:
            await cur.execute("SELECT to_regclass('schema_migrations') AS t")
            if (await cur.fetchone())["t"] is None:
                return 0
            await cur.execute("SELECT coalesce(max(version), 0) AS v FROM schema_migrations")
            return (await cur.fetchone())["v"]
