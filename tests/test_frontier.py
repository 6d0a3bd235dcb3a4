"""The sha256 frontier of staged parts uploads (sagestore/uploads/frontier.py) on its own, with a
real ByteBudget and PartBody buffers: in order, ahead of order, given up, and never holding the
budget longer than its wait."""
from __future__ import annotations

import asyncio
import hashlib
import os

from sagestore.storage import PartBody
from sagestore.uploads.frontier import Sha256Frontiers
from sagestore.uploads.limits import ByteBudget

MiB = 2**20


def body_of(data: bytes) -> PartBody:
    body = PartBody(len(data))
    body.write(data)
    return body


async def test_parts_in_and_out_of_order_give_the_whole_sha256_and_give_the_budget_back():
    budget = ByteBudget(64 * MiB, 1.0)
    frontiers = Sha256Frontiers(budget, max_waiting_bytes=16 * MiB)
    frontiers.start("u")
    parts = [os.urandom(MiB + n) for n in range(4)]
    kept = [await frontiers.offer("u", number, f"etag{number}", body_of(parts[number - 1])) for number in (3, 2)]
    assert kept == [True, True] and budget.used > 0  # ahead of part 1: they wait, on the budget
    assert await frontiers.offer("u", 1, "etag1", body_of(parts[0])) is False
    assert budget.used == 0  # hashed, released
    assert await frontiers.offer("u", 4, "etag4", body_of(parts[3])) is False
    listed = [(number, f"etag{number}") for number in range(1, 5)]
    assert frontiers.sha256("u", listed) == hashlib.sha256(b"".join(parts)).hexdigest()
    assert frontiers.sha256("u", listed[:3]) is None  # not exactly the assembled parts
    assert frontiers.sha256("u", [*listed[:3], (4, "other")]) is None
    assert await frontiers.offer("u", 2, "etag2", body_of(parts[1])) is False  # the same part again: fine
    assert frontiers.sha256("u", listed) is not None
    assert await frontiers.offer("u", 2, "changed", body_of(os.urandom(10))) is False
    assert frontiers.sha256("u", listed) is None  # replaced by other bytes: read back instead


async def test_a_part_that_waits_too_long_or_too_much_gives_the_frontier_up():
    budget = ByteBudget(64 * MiB, 1.0)
    frontiers = Sha256Frontiers(budget, max_waiting_bytes=4 * MiB, max_wait_seconds=0.2)
    frontiers.start("slow")
    assert await frontiers.offer("slow", 2, "e2", body_of(os.urandom(MiB))) is True
    await asyncio.sleep(0.4)  # part 1 never comes here
    assert budget.used == 0
    assert await frontiers.offer("slow", 1, "e1", body_of(os.urandom(MiB))) is False
    assert frontiers.sha256("slow", [(1, "e1"), (2, "e2")]) is None
    frontiers.start("greedy")
    assert await frontiers.offer("greedy", 2, "e2", body_of(os.urandom(3 * MiB))) is True
    assert await frontiers.offer("greedy", 3, "e3", body_of(os.urandom(3 * MiB))) is False  # over 4 MiB
    assert budget.used == 0
    frontiers.start("crowded")
    assert budget.try_take(40 * MiB)  # requests hold most of the budget
    assert await frontiers.offer("crowded", 2, "e2", body_of(os.urandom(MiB))) is False  # half must stay free
    budget.give_back(40 * MiB)
    assert await frontiers.offer("unknown", 1, "e1", body_of(b"x")) is False  # not created here

