"""PostgreSQL access through one aiopg pool, and the statements of each table.

One module per table holds every statement on it: buckets.py, grants.py, signed_urls.py (and
the OSDU files' module). The three upload tables (uploads, upload_parts, upload_part_leases) are
the upload engine's: their statements, the upload state machine, live in sagestore/uploads/table.py
and nowhere else (tests/test_house_rules.py checks it). migrate.py runs the numbered migrations
in sagestore/migrations/; notified.py keeps caches fresh through LISTEN/NOTIFY.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import aiopg
import psycopg2.extras

from ..errors import BackendUnavailable

DEFAULT_TIMEOUT = 10.0


async def create_pool(database_url: str, maxsize: int = 10, timeout: float = DEFAULT_TIMEOUT) -> aiopg.Pool:
    """The pool, with `timeout` as the bound of every wait on PostgreSQL: connecting, each
    statement (client side by aiopg, server side by statement_timeout, so a query abandoned
    by the client does not keep running and holding locks) and acquire() below."""
    return await aiopg.create_pool(database_url, minsize=1, maxsize=maxsize, timeout=timeout,
                                   options=f"-c statement_timeout={int(timeout * 1000)}",
                                   cursor_factory=psycopg2.extras.RealDictCursor)


@contextlib.asynccontextmanager
async def acquire(pool: aiopg.Pool) -> AsyncIterator[aiopg.Connection]:
    """A connection from the pool, waiting at most the pool's timeout: with every connection
    held by requests stuck on a frozen server, the next request gets 503, not a queue."""
    try:
        conn = await asyncio.wait_for(pool.acquire(), pool.timeout)
    except asyncio.TimeoutError:
        raise BackendUnavailable("database busy or unreachable, try again later") from None
    try:
        yield conn
    finally:
        await pool.release(conn)


@contextlib.asynccontextmanager
async def cursor(pool: aiopg.Pool) -> AsyncIterator[aiopg.Cursor]:
    """A cursor in autocommit mode, for single statements."""
    async with acquire(pool) as conn:
        async with conn.cursor() as cur:
            yield cur


@contextlib.asynccontextmanager
async def transaction(pool: aiopg.Pool) -> AsyncIterator[aiopg.Cursor]:
    """A cursor inside BEGIN ... COMMIT; an exception rolls everything back."""
    async with acquire(pool) as conn:
        async with conn.cursor() as cur:
            async with cur.begin():
                yield cur


async def ping(pool: aiopg.Pool) -> None:
    """One round trip: PostgreSQL answers a query."""
    async with cursor(pool) as cur:
        await cur.execute("SELECT 1")


async def close_pool(pool: aiopg.Pool, timeout: float = 10.0) -> None:
    """Close the pool; connections still held after `timeout` (a request that never
    returned its connection) are terminated, so shutdown can never hang."""
    import asyncio
    import logging
    pool.close()
    try:
        await asyncio.wait_for(asyncio.shield(pool.wait_closed()), timeout)
    except asyncio.TimeoutError:
        logging.getLogger("sagestore.db").warning("database connections still in use after %.0fs; closing them",
                                                  timeout)
        pool.terminate()
        await asyncio.wait_for(pool.wait_closed(), timeout)
