"""PostgreSQL access through one aiopg pool; queries live in one module per table."""
from __future__ import annotations

import contextlib
from typing import AsyncIterator

import aiopg
import psycopg2.extras


async def create_pool(database_url: str, maxsize: int = 10) -> aiopg.Pool:
    # timeout bounds every query, so an outage surfaces as an error, not a hang
    return await aiopg.create_pool(database_url, minsize=1, maxsize=maxsize, timeout=30,
                                   cursor_factory=psycopg2.extras.RealDictCursor)


@contextlib.asynccontextmanager
async def cursor(pool: aiopg.Pool) -> AsyncIterator[aiopg.Cursor]:
    """A cursor in autocommit mode, for single statements."""
    async with pool.acquire() as conn:
        async with conn.cursor() as cur:
            yield cur


@contextlib.asynccontextmanager
async def transaction(pool: aiopg.Pool) -> AsyncIterator[aiopg.Cursor]:
    """A cursor inside BEGIN ... COMMIT; an exception rolls everything back."""
    async with pool.acquire() as conn:
        async with conn.cursor() as cur:
            async with cur.begin():
                yield cur


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
