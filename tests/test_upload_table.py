"""The upload state machine (sagestore/uploads/table.py) against PostgreSQL: every transition of
TRANSITIONS, tried from every state. From a state it may leave it works and leaves the row in its
target state; from any other it raises (IllegalTransition from a live state, NotFound from an
aborted or expired one) and changes nothing."""
from __future__ import annotations

import uuid

import pytest

from sagestore.db import create_pool, cursor, transaction
from sagestore.db.migrate import migrate
from sagestore.errors import NotFound
from sagestore.uploads import ABORTED, COMPLETED, COMPLETING, EXPIRED, OPEN, TRANSITIONS, IllegalTransition, Part
from sagestore.uploads.table import ExpiredBatch, UploadTable

STATES = (OPEN, COMPLETING, COMPLETED, ABORTED, EXPIRED)
TOKEN = "w" * 32  # the writer that holds the upload's lease (and part 1's) in every row below


@pytest.fixture
async def table(database_url):
    pool = await create_pool(database_url, 2)
    await migrate(pool)
    yield UploadTable(pool, ttl=3600.0, lease_seconds=30.0)
    pool.close()
    await pool.wait_closed()


async def new_upload(table: UploadTable):
    upload_id = str(uuid.uuid4())
    return await table.create(
        id=upload_id, protocol="tus", bucket_id=None, key=None, owner="alice", content_type="application/x-test",
        metadata={}, length=None, part_size=5 * 2**20, part_size_grows=True, s3_bucket="b", s3_key=f"k/{upload_id}",
        s3_upload_id="mpu", staged=True, retain=False, checksum_algorithm=None, sha256=None, sha256_state=None,
        sha256_so_far=None)


async def put_in(table: UploadTable, upload_id: str, state: str) -> None:
    """Set the row's state directly, with TOKEN as its writer and as the writer of part 1."""
    async with transaction(table.pool) as cur:
        await cur.execute("UPDATE uploads SET state = %s, writer = %s, writer_instance = 0,"
                          " writer_until = now() + interval '1 hour'"
                          " WHERE id = %s", (state, TOKEN, upload_id))
        await cur.execute("INSERT INTO upload_part_leases (upload_id, part_number, writer, writer_instance,"
                          " writer_until) VALUES (%s, 1, %s, 0, now() + interval '1 hour')", (upload_id, TOKEN))


async def state_of(table: UploadTable, upload_id: str) -> str:
    async with cursor(table.pool) as cur:
        await cur.execute("SELECT state FROM uploads WHERE id = %s", (upload_id,))
        return (await cur.fetchone())["state"]


async def expire(table: UploadTable, upload) -> None:
    async with transaction(table.pool) as cur:
        await ExpiredBatch(table, cur, [upload]).expire(upload)


# each transition, done by TOKEN where it needs the lease
RUNS = {
    "start_append": lambda table, u: table.take_lease(u.id, "t" * 32, 0, steal=False, completing=False),
    "commit_append": lambda table, u: table.commit_append(u, TOKEN, offset=10, length=None, tail_key=None,
                                                          tail_size=10, parts=[], sha256=(None, None), release=True),
    "record_part": lambda table, u: table.record_part(u.id, Part(1, 10, '"etag"'), TOKEN),
    "advance_hash": lambda table, u: table.advance_hash(u.id, 1, 0, 10, b"s" * 112, "digest"),
    "clear_writer": lambda table, u: table.clear_writer(u.id),
    "mark_completing": lambda table, u: table.take_lease(u.id, "t" * 32, 0, steal=False, completing=True),
    "record_assembly": lambda table, u: table.record_assembly(u.id, TOKEN, [Part(1, 10, '"etag"')], 10,
                                                              {"assembled": {"size": 10, "etag": '"etag"'}}),
    "reopen": lambda table, u: table.reopen(u.id, TOKEN),
    "complete": lambda table, u: table.complete(u.id, TOKEN, {"file": {"size": 10}}),
    "record_result": lambda table, u: table.record_result(u.id, {"file": {"size": 10}}),
    "abort": lambda table, u: table.abort(u.id),
    "expire": expire,
}


def test_every_transition_is_tried():
    assert set(RUNS) | {"create"} == set(TRANSITIONS)


async def test_create_opens(table):
    upload = await new_upload(table)
    assert upload.state == TRANSITIONS["create"].target == OPEN
    assert await state_of(table, upload.id) == OPEN


@pytest.mark.parametrize("name", sorted(RUNS))
async def test_a_transition_works_from_its_sources_and_raises_from_every_other_state(table, name):
    transition = TRANSITIONS[name]
    for state in STATES:
        upload = await new_upload(table)
        await put_in(table, upload.id, state)
        if state in transition.sources:
            await RUNS[name](table, upload)
            assert await state_of(table, upload.id) == (transition.target or state), (name, state)
        else:
            with pytest.raises(NotFound if state in (ABORTED, EXPIRED) else IllegalTransition):
                await RUNS[name](table, upload)
            assert await state_of(table, upload.id) == state, (name, state)


async def test_a_lease_taken_over_keeps_a_legal_transition_from_happening_without_raising_it_illegal(table):
    """Transitions that need the lease change nothing for a request that lost it; that is not an
    illegal transition (the upload's state allowed it)."""
    upload = await new_upload(table)
    await put_in(table, upload.id, COMPLETING)
    await table.complete(upload.id, "someone else", {"file": {}})
    await table.reopen(upload.id, "someone else")
    assert await state_of(table, upload.id) == COMPLETING
