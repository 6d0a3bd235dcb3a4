"""The session's real backends: SeaweedFS (`weed mini`, SigV4 enforced) and PostgreSQL, and
the test settings that point at them."""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import psycopg2


def wait_for(check, timeout: float = 60) -> None:
    """Run the coroutine function `check` until it stops raising; re-raises after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(check())
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def new_database(server_url: str):
    """A database created on the PostgreSQL server at server_url, dropped afterwards; yields its URL."""
    name = f"sagestore_test_{uuid.uuid4().hex[:10]}"

    def run_admin(sql: str) -> None:
        # a fresh connection each time: a session-long one may be cut by the server meanwhile
        admin = psycopg2.connect(server_url)
        admin.autocommit = True
        try:
            with admin.cursor() as cur:
                cur.execute(sql)
        finally:
            admin.close()
    run_admin(f"CREATE DATABASE {name}")
    base, _, _ = server_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        run_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
