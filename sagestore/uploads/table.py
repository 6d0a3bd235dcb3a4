"""The upload state machine's one home: every statement on `uploads`, `upload_parts` and
`upload_part_leases` is here, and nowhere else.

An upload is open, completing, completed, aborted or expired. TRANSITIONS names every change of
an upload row and the states it may start from; a transition from any other state raises:
IllegalTransition (409) from a live state (open, completing, completed), NotFound from aborted,
expired or a missing row (to a client such an upload no longer exists). Each writing method is
one transition and checks it in the same statement that writes (`state = ANY(sources)`); when
that statement finds no row, the table reads the state to tell an illegal transition from a
condition of the caller's that no longer holds (a lease taken over, an offset moved on), which it
reports as None or False.

The writer lease columns (writer, writer_instance, writer_until) and upload_part_leases hold the
one-writer-per-upload rule across instances (leases.py explains the liveness they rely on).
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiopg

from ..db import cursor, transaction
from ..errors import Conflict, Gone, Locked, NotFound
from ..storage import MAX_PARTS
from .common import LeaseLost
from .model import ABORTED, COMPLETED, COMPLETING, EXPIRED, OPEN, Part, Upload

# first key of the two-int advisory lock that marks a live engine instance (leases.InstanceLiveness)
INSTANCE_LOCK_NAMESPACE = 0x5A6E5702


def writer_alive(column: str) -> str:
    """SQL: the instance in `column` still holds its liveness lock."""
    return (f"EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
            f" AND l.classid = {INSTANCE_LOCK_NAMESPACE}::oid AND l.objid = {column}::oid AND l.objsubid = 2)")


def lease_held(prefix: str = "") -> str:
    """SQL: the lease in columns {prefix}writer* is held by a live writer."""
    return (f"({prefix}writer IS NOT NULL AND {prefix}writer_until > now()"
            f" AND {writer_alive(prefix + 'writer_instance')})")


@dataclass(frozen=True)
class Transition:
    name: str
    sources: tuple[str, ...]  # the states it may start from
    target: str | None        # the state it leads to; None: the state does not change
    what: str


TRANSITIONS: dict[str, Transition] = {t.name: t for t in (
    Transition("create", (), OPEN, "a new upload"),
    Transition("start_append", (OPEN,), OPEN, "a request takes the upload's writer lease to append"),
    Transition("commit_append", (OPEN,), OPEN, "offset, staged tail and new parts, while holding the lease"),
    Transition("record_part", (OPEN,), OPEN, "one part of an indexed or multipart upload"),
    Transition("advance_hash", (OPEN,), OPEN, "a chunk hashed in order moves the hashed offset"),
    Transition("clear_writer", (OPEN,), OPEN, "a newer request fences off the writer (take over)"),
    Transition("mark_completing", (OPEN, COMPLETING), COMPLETING,
               "completion takes the lease (again, after a crash in the middle of one)"),
    Transition("record_assembly", (COMPLETING,), COMPLETING, "the object is assembled: its length and ETag"),
    Transition("reopen", (COMPLETING,), OPEN, "completion failed before anything was published"),
    Transition("complete", (COMPLETING,), COMPLETED, "published"),
    Transition("record_result", (COMPLETING, COMPLETED), None, "a sha256 read back, or another publication"),
    Transition("abort", (OPEN, COMPLETED), ABORTED, "cancelled; its storage is released"),
    Transition("expire", (OPEN, COMPLETING, COMPLETED), EXPIRED, "past its expiry, claimed by the reaper"),
)}

_STATE_MESSAGES = {OPEN: "upload is still open", COMPLETING: "upload is being completed",
                   COMPLETED: "upload is already complete"}


class IllegalTransition(Conflict):
    """The state of a live upload does not allow the transition."""

    def __init__(self, transition: str, state: str, **extra: Any) -> None:
        super().__init__(_STATE_MESSAGES[state], **extra)
        self.transition, self.state = transition, state


def check(transition: str, state: str | None, **extra: Any) -> None:
    """Raise unless `transition` may leave `state` (None: no such row)."""
    if state is None or state in (ABORTED, EXPIRED):
        raise NotFound("upload not found")
    if state not in TRANSITIONS[transition].sources:
        raise IllegalTransition(transition, state, **extra)


# an upload row, whether its expiry has passed, and (PARTS) its parts in one statement
_ROW = "u.*, u.expires_at < now() AS is_expired"
_PARTS = """(SELECT coalesce(json_agg(json_build_object('part_number', p.part_number, 'size', p.size, 'etag', p.etag,
                                                      'checksum', p.checksum, 'md5', p.md5)
                                    ORDER BY p.part_number), '[]')
            FROM upload_parts p WHERE p.upload_id = u.id) AS part_list"""

# the rows of `parts` as five arrays (_part_columns): one statement for any number of parts
_GIVEN_PARTS = ("unnest(%s::integer[], %s::bigint[], %s::text[], %s::text[], %s::text[])"
                " AS p (part_number, size, etag, checksum, md5)")
# a part written again replaces the row of the earlier one
_PART_UPSERT = """ON CONFLICT (upload_id, part_number) DO UPDATE SET size = EXCLUDED.size, etag = EXCLUDED.etag,
                      checksum = EXCLUDED.checksum, md5 = EXCLUDED.md5, created_at = now()"""
# a part lease is taken when no live request holds it, or when this one already does
_PART_LEASE_TAKEN = f"""ON CONFLICT (upload_id, part_number) DO UPDATE SET writer = EXCLUDED.writer,
                            writer_instance = EXCLUDED.writer_instance, writer_until = EXCLUDED.writer_until
                        WHERE upload_part_leases.writer = EXCLUDED.writer OR NOT {lease_held('upload_part_leases.')}"""


def _part_columns(parts: list[Part]) -> tuple[list[Any], ...]:
    return ([part.part_number for part in parts], [part.size for part in parts], [part.etag for part in parts],
            [part.checksum for part in parts], [part.md5 for part in parts])


class UploadTable:
    """The statements, grouped by what they serve. Methods open their own connection or
    transaction; those taking `cur` run inside the caller's."""

    def __init__(self, pool: aiopg.Pool, *, ttl: float, lease_seconds: float) -> None:
        self.pool = pool
        self.ttl = ttl  # an upload expires this long after its last write
        self.lease_seconds = lease_seconds

    # ------------------------------------------------------------------ reading
    async def find(self, upload_id: str, *, with_parts: bool = True) -> Upload | None:
        async with cursor(self.pool) as cur:
            await cur.execute(f"SELECT {_ROW}{', ' + _PARTS if with_parts else ''} FROM uploads u WHERE u.id = %s",
                              (upload_id,))
            row = await cur.fetchone()
        return Upload.from_row(row) if row is not None else None

    async def find_unless_written(self, upload_id: str) -> tuple[Upload | None, bool]:
        """The upload with its parts, and whether a live request holds its lease while it is open."""
        async with cursor(self.pool) as cur:
            await cur.execute(f"SELECT {_ROW}, {_PARTS}, u.state = 'open' AND {lease_held('u.')} AS held"
                              " FROM uploads u WHERE u.id = %s", (upload_id,))
            row = await cur.fetchone()
        return (Upload.from_row(row), row["held"]) if row is not None else (None, False)

    async def unfinished(self, owner: str, *, bucket_id: str | None, key: str | None, limit: int) -> list[Upload]:
        """The owner's open, unexpired uploads (newest first), with their parts."""
        conditions, values = ["u.owner = %s", "u.state = 'open'", "u.expires_at > now()"], [owner]
        if bucket_id is not None:
            conditions.append("u.bucket_id = %s")
            values.append(bucket_id)
        if key is not None:
            conditions.append("u.key = %s")
            values.append(key)
        async with cursor(self.pool) as cur:
            await cur.execute(f"SELECT {_ROW}, {_PARTS} FROM uploads u WHERE {' AND '.join(conditions)} "
                              "ORDER BY u.created_at DESC LIMIT %s", (*values, limit))
            return [Upload.from_row(row) for row in await cur.fetchall()]

    async def finals_waiting_for(self, source_id: str) -> list[Upload]:
        """Open uploads whose metadata's concat_sources name `source_id` (tus final uploads)."""
        async with cursor(self.pool) as cur:
            await cur.execute(f"SELECT {_ROW} FROM uploads u WHERE u.state = 'open'"
                              " AND u.metadata -> 'concat_sources' ? %s", (str(source_id),))
            return [Upload.from_row(row) for row in await cur.fetchall()]

    async def live_in_bucket(self, bucket_id: str) -> list[Upload]:
        """The bucket's uploads that hold storage an abort releases (open and completed ones)."""
        async with cursor(self.pool) as cur:
            await cur.execute(f"SELECT {_ROW} FROM uploads u WHERE u.bucket_id = %s"
                              " AND u.state IN ('open', 'completed')", (bucket_id,))
            return [Upload.from_row(row) for row in await cur.fetchall()]

    async def parts_total_except(self, upload_id: str, part_number: int) -> int:
        async with cursor(self.pool) as cur:
            await cur.execute("SELECT coalesce(sum(size), 0) AS total FROM upload_parts"
                              " WHERE upload_id = %s AND part_number <> %s", (upload_id, part_number))
            return int((await cur.fetchone())["total"])

    async def part_numbers(self, upload_id: str) -> set[int]:
        async with cursor(self.pool) as cur:
            await cur.execute("SELECT part_number FROM upload_parts WHERE upload_id = %s", (upload_id,))
            return {row["part_number"] for row in await cur.fetchall()}

    # ------------------------------------------------------------------ creating
    async def create(self, **columns: Any) -> Upload:
        """The `create` transition: a new open upload, expiring ttl seconds from now."""
        columns["metadata"] = json.dumps(columns.get("metadata") or {})
        names = list(columns)
        async with transaction(self.pool) as cur:
            await cur.execute(
                f"""INSERT INTO uploads ({', '.join(names)}, state, expires_at)
                    VALUES ({', '.join(['%s'] * len(names))}, %s, now() + %s * interval '1 second')
                    RETURNING *, expires_at < now() AS is_expired""",
                (*columns.values(), TRANSITIONS["create"].target, self.ttl))
            return Upload.from_row(await cur.fetchone())

    # ------------------------------------------------------------------ the writer lease
    async def take_lease(self, upload_id: str, token: str, instance_id: int, *, steal: bool,
                         completing: bool, next_part: bool = False) -> tuple[Upload, str | None, int | None]:
        """`start_append` (or `mark_completing`): the upload lease, with its parts; the token of the
        writer it replaced; with next_part, also the lease of the part after the last one when it
        is free (its number, else None), so a body that fills it can go to S3 at once. 410 when
        expired, 423 while another live request holds it (unless steal), and for completion also
        while parts are being written."""
        name = "mark_completing" if completing else "start_append"
        transition = TRANSITIONS[name]
        # one statement (one round trip): lock the row, take the lease when the rules allow it, and
        # return what was there before, which says why when the lease was not taken
        async with cursor(self.pool) as cur:
            await cur.execute(
                f"""WITH old AS (
                        SELECT u.id, u.state, u.acknowledged_offset, u.writer, u.expires_at < now() AS is_expired,
                               {lease_held('u.')} AS held,
                               %s AND EXISTS (SELECT 1 FROM upload_part_leases p WHERE p.upload_id = u.id
                                              AND {lease_held('p.')}) AS parts_held
                        FROM uploads u WHERE u.id = %s FOR UPDATE OF u),
                    taken AS (
                        UPDATE uploads u SET writer = %s, writer_instance = %s,
                            writer_until = now() + %s * interval '1 second', state = %s
                        FROM old WHERE u.id = old.id AND old.state = ANY(%s) AND NOT old.is_expired
                            AND (%s OR NOT old.held) AND NOT old.parts_held
                        RETURNING {_ROW}, {_PARTS}),
                    part_lease AS (
                        INSERT INTO upload_part_leases (upload_id, part_number, writer, writer_instance, writer_until)
                        SELECT taken.id, following.number, %s, %s, now() + %s * interval '1 second'
                        FROM taken, LATERAL (SELECT coalesce(max(p.part_number), 0) + 1 AS number
                                             FROM upload_parts p WHERE p.upload_id = taken.id) following
                        WHERE %s AND following.number <= %s
                        {_PART_LEASE_TAKEN}
                        RETURNING part_number)
                    SELECT old.state AS old_state, old.acknowledged_offset AS old_offset, old.writer AS previous,
                           old.is_expired AS old_expired, old.held AS old_held, old.parts_held AS old_parts_held,
                           (SELECT part_number FROM part_lease) AS leased_part, taken.*
                    FROM old LEFT JOIN taken ON true""",
                (completing, upload_id, token, instance_id, self.lease_seconds, transition.target,
                 list(transition.sources), steal, token, instance_id, self.lease_seconds, next_part, MAX_PARTS))
            row = await cur.fetchone()
        state = row["old_state"] if row is not None else None
        if state not in (None, ABORTED, EXPIRED) and row["old_expired"]:
            raise Gone("upload expired")
        check(name, state, offset=row["old_offset"] if row is not None else 0)
        if row["old_held"] and not steal:
            raise Locked("another request is writing this upload; retry later", headers={"Retry-After": "1"})
        if row["old_parts_held"]:
            raise Locked("parts of this upload are still being written; retry when they are done",
                         headers={"Retry-After": "1"})
        return Upload.from_row(row), row["previous"], row["leased_part"]

    async def renew(self, upload_id: str, token: str, *, holds_upload: bool) -> bool:
        """Extend a request's leases; False when its upload lease was taken from it."""
        async with cursor(self.pool) as cur:
            if holds_upload:
                await cur.execute("UPDATE uploads SET writer_until = now() + %s * interval '1 second'"
                                  " WHERE id = %s AND writer = %s", (self.lease_seconds, upload_id, token))
                if cur.rowcount == 0:
                    return False
            await cur.execute("UPDATE upload_part_leases SET writer_until = now() + %s * interval '1 second'"
                              " WHERE upload_id = %s AND writer = %s", (self.lease_seconds, upload_id, token))
        return True

    async def release(self, upload_id: str, token: str, *, holds_upload: bool) -> None:
        """Give up a request's upload lease (if it still has it) and its part leases."""
        if not holds_upload:  # a part writer's: one statement
            async with cursor(self.pool) as cur:
                await cur.execute("DELETE FROM upload_part_leases WHERE upload_id = %s AND writer = %s",
                                  (upload_id, token))
            return
        # the upload row first, then the part leases, the order of every other statement here (an
        # unreferenced WITH would run after the DELETE, and the reverse order can deadlock with a
        # request taking one of these parts' leases); a request's commit usually releases both
        async with transaction(self.pool) as cur:
            await cur.execute("UPDATE uploads SET writer = NULL, writer_instance = NULL, writer_until = NULL"
                              " WHERE id = %s AND writer = %s", (upload_id, token))
            await cur.execute("DELETE FROM upload_part_leases WHERE upload_id = %s AND writer = %s",
                              (upload_id, token))

    async def writer_held(self, upload_id: str) -> bool:
        """A live request holds the lease of this open upload."""
        async with cursor(self.pool) as cur:
            await cur.execute(f"SELECT state = 'open' AND {lease_held()} AS held FROM uploads WHERE id = %s",
                              (upload_id,))
            row = await cur.fetchone()
        return row is not None and row["held"]

    async def clear_writer(self, upload_id: str) -> str | None:
        """`clear_writer`: whoever writes this open upload loses its lease; returns its token."""
        async with transaction(self.pool) as cur:
            await cur.execute("SELECT state, writer FROM uploads WHERE id = %s FOR UPDATE", (upload_id,))
            row = await cur.fetchone()
            check("clear_writer", row["state"] if row is not None else None)
            if row["writer"] is None:
                return None
            await cur.execute("UPDATE uploads SET writer = NULL, writer_instance = NULL, writer_until = NULL"
                              " WHERE id = %s", (upload_id,))
            return row["writer"]

    # ------------------------------------------------------------------ part leases
    async def take_part_lease(self, upload_id: str, part_number: int, token: str, instance_id: int, *,
                              holds_upload: bool) -> bool:
        """The lease of one part number: True when taken (or already ours), False while another live
        request holds it. 404/410 for a gone upload, LeaseLost when a request writing under the
        upload lease lost it, IllegalTransition once the upload is no longer open."""
        # one statement: a SELECT ... FOR UPDATE would lock nothing while no lease row exists yet, so
        # two first writers of a part would both take it; ON CONFLICT serialises them. The upload row
        # is read FOR SHARE in the same statement, so no transition of it runs in between.
        async with cursor(self.pool) as cur:
            await cur.execute(
                f"""WITH u AS (SELECT state, writer, expires_at < now() AS is_expired FROM uploads WHERE id = %s
                               FOR SHARE),
                         taken AS (
                        INSERT INTO upload_part_leases (upload_id, part_number, writer, writer_instance, writer_until)
                        SELECT %s, %s, %s, %s, now() + %s * interval '1 second' FROM u
                        WHERE u.state = ANY(%s) AND NOT u.is_expired AND (NOT %s OR u.writer = %s)
                        {_PART_LEASE_TAKEN}
                        RETURNING 1)
                    SELECT u.state, u.writer, u.is_expired, EXISTS (SELECT 1 FROM taken) AS taken FROM u""",
                (upload_id, upload_id, part_number, token, instance_id, self.lease_seconds,
                 list(TRANSITIONS["record_part"].sources), holds_upload, token))
            row = await cur.fetchone()
        state = row["state"] if row is not None else None
        if state not in (None, ABORTED, EXPIRED) and row["is_expired"]:
            raise Gone("upload expired")
        if state not in (None, ABORTED, EXPIRED) and holds_upload and row["writer"] != token:
            raise LeaseLost("another request took over this upload")
        check("record_part", state)
        return row["taken"]

    async def release_part_lease(self, upload_id: str, part_number: int, token: str) -> None:
        async with cursor(self.pool) as cur:
            await cur.execute("DELETE FROM upload_part_leases WHERE upload_id = %s AND part_number = %s"
                              " AND writer = %s", (upload_id, part_number, token))

    # ------------------------------------------------------------------ bytes received
    async def commit_append(self, upload: Upload, token: str, *, offset: int, length: int | None,
                            tail_key: str | None, tail_size: int, parts: list[Part],
                            sha256: tuple[bytes | None, str | None], release: bool) -> Upload:
        """`commit_append`: received bytes, only while `token` holds the lease and the offset is still
        the one the request started at (else LeaseLost, or the upload's state raises: nothing is
        kept). The expiry moves on. With
        release the same statement gives up the upload and part leases. Returns the upload as
        committed, with its parts."""
        # one statement: the row, its new parts and (with release) the part leases go together or not at all
        async with cursor(self.pool) as cur:
            await cur.execute(
                f"""WITH committed AS (
                        UPDATE uploads SET acknowledged_offset = %s, tail_key = %s, tail_size = %s, length = %s,
                            sha256_state = %s, sha256_so_far = %s,
                            updated_at = now(), expires_at = now() + %s * interval '1 second',
                            writer = CASE WHEN %s THEN NULL ELSE writer END,
                            writer_instance = CASE WHEN %s THEN NULL ELSE writer_instance END,
                            writer_until = CASE WHEN %s THEN NULL ELSE writer_until END
                        WHERE id = %s AND writer = %s AND state = ANY(%s) AND acknowledged_offset = %s
                        RETURNING *, expires_at < now() AS is_expired),
                    new_parts AS (
                        INSERT INTO upload_parts (upload_id, part_number, size, etag, checksum, md5)
                        SELECT committed.id, p.* FROM committed, {_GIVEN_PARTS}
                        {_PART_UPSERT}),
                    released AS (
                        DELETE FROM upload_part_leases l USING committed
                        WHERE %s AND l.upload_id = committed.id AND l.writer = %s)
                    SELECT * FROM committed""",
                (offset, tail_key, tail_size, length, *sha256, self.ttl, release, release, release, upload.id, token,
                 list(TRANSITIONS["commit_append"].sources), upload.offset, *_part_columns(parts), release, token))
            row = await cur.fetchone()
            if row is None:
                await self._explain(cur, "commit_append", upload.id)
                raise LeaseLost("another request took over this upload; this request kept nothing")
        committed = Upload.from_row(row)
        committed.parts = sorted({part.part_number: part for part in [*upload.parts, *parts]}.values(),
                                 key=lambda part: part.part_number)
        return committed

    @staticmethod
    async def upsert_parts(cur: aiopg.Cursor, upload_id: str, parts: list[Part]) -> None:
        """The parts' rows, in one statement."""
        if parts:
            await cur.execute(f"INSERT INTO upload_parts (upload_id, part_number, size, etag, checksum, md5)"
                              f" SELECT %s::uuid, p.* FROM {_GIVEN_PARTS} {_PART_UPSERT}",
                              (upload_id, *_part_columns(parts)))

    async def record_part(self, upload_id: str, part: Part, token: str, *,
                          in_order: tuple[int, bytes, str] | None = None) -> None:
        """`record_part`: one part, only while `token` holds its part lease (else LeaseLost) and the
        upload is open (else the state raises): otherwise the part is not kept. The expiry moves on.
        in_order: (offset before the part, hash state after it, digest so far) of a chunk hashed in
        order, committed with it."""
        hashed = in_order is not None
        start, state, digest = in_order if hashed else (0, None, None)
        # one statement: the row locked (NO KEY UPDATE: the statement updates it) and the part lease
        # checked, then the part, the expiry and (in order) the hashed frontier, or nothing at all
        async with cursor(self.pool) as cur:
            await cur.execute(
                f"""WITH u AS (SELECT state, acknowledged_offset FROM uploads WHERE id = %(id)s FOR NO KEY UPDATE),
                        lease AS (SELECT 1 FROM upload_part_leases WHERE upload_id = %(id)s
                                  AND part_number = %(number)s AND writer = %(token)s FOR UPDATE),
                        allowed AS (SELECT 1 FROM u WHERE u.state = ANY(%(sources)s) AND EXISTS (SELECT 1 FROM lease)
                                    AND (NOT %(hashed)s OR u.acknowledged_offset = %(start)s)),
                        new_part AS (
                            INSERT INTO upload_parts (upload_id, part_number, size, etag, checksum, md5, sha256_state)
                            SELECT %(id)s, %(number)s, %(size)s, %(etag)s, %(checksum)s, %(md5)s, %(state)s
                            FROM allowed
                            {_PART_UPSERT}, sha256_state = CASE WHEN %(hashed)s THEN EXCLUDED.sha256_state
                                                                ELSE upload_parts.sha256_state END),
                        touched AS (
                            UPDATE uploads SET updated_at = now(), expires_at = now() + %(ttl)s * interval '1 second',
                                acknowledged_offset = CASE WHEN %(hashed)s THEN %(end)s ELSE acknowledged_offset END,
                                sha256_state = CASE WHEN %(hashed)s THEN %(state)s ELSE sha256_state END,
                                sha256_so_far = CASE WHEN %(hashed)s THEN %(digest)s ELSE sha256_so_far END
                            FROM allowed WHERE id = %(id)s)
                   SELECT u.state, EXISTS (SELECT 1 FROM lease) AS leased, EXISTS (SELECT 1 FROM allowed) AS recorded
                   FROM u""",
                {"id": upload_id, "number": part.part_number, "token": token, "hashed": hashed, "start": start,
                 "end": start + part.size, "state": state, "digest": digest, "size": part.size, "etag": part.etag,
                 "checksum": part.checksum, "md5": part.md5, "ttl": self.ttl,
                 "sources": list(TRANSITIONS["record_part"].sources)})
            row = await cur.fetchone()
        check("record_part", row["state"] if row is not None else None)
        if not row["leased"]:
            raise LeaseLost(f"part {part.part_number} was taken over; it was not kept")
        if not row["recorded"]:
            raise LeaseLost(f"part {part.part_number} was hashed elsewhere meanwhile; it was not kept")

    async def register_part(self, upload_id: str, part: Part) -> None:
        """`record_part` of a part the client stored itself (a presigned URL): no part lease."""
        async with transaction(self.pool) as cur:
            await cur.execute("SELECT state FROM uploads WHERE id = %s FOR SHARE", (upload_id,))
            row = await cur.fetchone()
            check("record_part", row["state"] if row is not None else None)
            await self.upsert_parts(cur, upload_id, [part])

    # ------------------------------------------------------------------ chunks hashed in order (ordered.py)
    async def hash_frontier(self, upload_id: str) -> dict[str, Any] | None:
        """The state, hashed offset and hash state of an upload, and whether a live request holds the
        lease of the chunk at the head of the line."""
        async with cursor(self.pool) as cur:
            await cur.execute(
                f"""SELECT u.state, u.acknowledged_offset, u.sha256_state, EXISTS (
                        SELECT 1 FROM upload_part_leases p WHERE p.upload_id = u.id
                        AND p.part_number = u.acknowledged_offset / u.part_size + 1 AND {lease_held('p.')})
                        AS head_in_flight
                    FROM uploads u WHERE u.id = %s""", (upload_id,))
            return await cur.fetchone()

    async def hashed_parts(self, upload_id: str, numbers: tuple[int, ...]) -> dict[int, dict[str, Any]]:
        """Parts (with the hash state after each, NULL when not hashed) by number."""
        async with cursor(self.pool) as cur:
            await cur.execute("SELECT part_number, size, etag, checksum, md5, sha256_state FROM upload_parts"
                              " WHERE upload_id = %s AND part_number = ANY(%s)", (upload_id, list(numbers)))
            return {row["part_number"]: row for row in await cur.fetchall()}

    async def unhashed_part(self, upload_id: str, part_number: int) -> dict[str, Any] | None:
        """The recorded part `part_number` if it was not hashed (a parked chunk)."""
        async with cursor(self.pool) as cur:
            await cur.execute("SELECT size, etag FROM upload_parts WHERE upload_id = %s AND part_number = %s"
                              " AND sha256_state IS NULL", (upload_id, part_number))
            return await cur.fetchone()

    async def advance_hash(self, upload_id: str, part_number: int, start: int, size: int, state: bytes,
                           digest: str) -> bool:
        """`advance_hash` for a parked chunk hashed later; False when the frontier is no longer at `start`."""
        async with transaction(self.pool) as cur:
            return await self._advance_hash(cur, upload_id, part_number, start, size, state, digest)

    async def _advance_hash(self, cur: aiopg.Cursor, upload_id: str, part_number: int, start: int, size: int,
                            state: bytes, digest: str) -> bool:
        """Move the hashed frontier from `start` past this chunk and keep its state on its part.
        False (nothing changed) when the frontier is no longer at `start`."""
        await cur.execute("UPDATE uploads SET acknowledged_offset = %s, sha256_state = %s, sha256_so_far = %s"
                          " WHERE id = %s AND acknowledged_offset = %s AND state = ANY(%s)",
                          (start + size, state, digest, upload_id, start, list(TRANSITIONS["advance_hash"].sources)))
        if cur.rowcount != 1:
            await self._explain(cur, "advance_hash", upload_id)
            return False
        await cur.execute("UPDATE upload_parts SET sha256_state = %s WHERE upload_id = %s AND part_number = %s",
                          (state, upload_id, part_number))
        return True

    # ------------------------------------------------------------------ completion
    async def record_assembly(self, upload_id: str, token: str, parts: list[Part], length: int,
                              result: dict[str, Any]) -> None:
        """`record_assembly`: the parts CompleteMultipartUpload took, the length and the result."""
        async with transaction(self.pool) as cur:
            await self.upsert_parts(cur, upload_id, parts)
            await self._transition(cur, "record_assembly", upload_id, "length = %s, result = %s, updated_at = now()",
                                   (length, json.dumps(result)), writer=token)

    async def reopen(self, upload_id: str, token: str) -> None:
        """`reopen`: a completion that published nothing gives the upload back (while holding its lease)."""
        async with cursor(self.pool) as cur:
            await self._transition(cur, "reopen", upload_id, "", (), writer=token)

    async def complete(self, upload_id: str, token: str, result: dict[str, Any]) -> None:
        """`complete`: published; the staged tail is gone with the staging objects."""
        async with cursor(self.pool) as cur:
            await self._transition(cur, "complete", upload_id,
                                   "result = %s, tail_key = NULL, tail_size = 0, updated_at = now()",
                                   (json.dumps(result),), writer=token)

    async def record_result(self, upload_id: str, result: dict[str, Any], *, touch: bool = True) -> None:
        """`record_result`: a completing or completed upload's result changes (the sha256 read back,
        another publication: `touch` marks the upload updated)."""
        async with cursor(self.pool) as cur:
            await self._transition(cur, "record_result", upload_id,
                                   "result = %s" + (", updated_at = now()" if touch else ""), (json.dumps(result),))

    # ------------------------------------------------------------------ the end of an upload
    async def abort(self, upload_id: str) -> Upload:
        """`abort`: every lease goes (a writer in flight finds it lost). Returns the upload as aborted."""
        async with transaction(self.pool) as cur:
            row = await self._transition(cur, "abort", upload_id,
                                         "writer = NULL, writer_instance = NULL, writer_until = NULL, "
                                         "updated_at = now()", ())
            await cur.execute("DELETE FROM upload_part_leases WHERE upload_id = %s", (upload_id,))
        return Upload.from_row(row)

    @contextlib.asynccontextmanager
    async def expired_batch(self, batch: int) -> AsyncIterator["ExpiredBatch"]:
        """Up to `batch` uploads past their expiry, claimed (FOR UPDATE SKIP LOCKED: instances share
        the work) until the block ends; ExpiredBatch.expire marks each one, in the same transaction."""
        async with transaction(self.pool) as cur:
            await cur.execute(
                f"""SELECT {_ROW} FROM uploads u WHERE u.expires_at < now() AND u.state = ANY(%s)
                    ORDER BY u.expires_at LIMIT %s FOR UPDATE SKIP LOCKED""",
                (list(TRANSITIONS["expire"].sources), batch))
            yield ExpiredBatch(self, cur, [Upload.from_row(row) for row in await cur.fetchall()])

    async def known_s3_uploads(self, s3_upload_ids: list[str]) -> set[str]:
        """Which of these S3 multipart upload ids belong to an upload still being written."""
        async with cursor(self.pool) as cur:
            await cur.execute("SELECT s3_upload_id FROM uploads WHERE s3_upload_id = ANY(%s)"
                              " AND state IN ('open', 'completing')", (s3_upload_ids,))
            return {row["s3_upload_id"] for row in await cur.fetchall()}

    async def live_ids(self, upload_ids: list[str]) -> set[str]:
        """Which of these upload ids are open, completing or completed (their staging may be in use)."""
        async with cursor(self.pool) as cur:
            await cur.execute("SELECT id::text AS id FROM uploads WHERE id = ANY(%s::uuid[])"
                              " AND state IN ('open', 'completing', 'completed')", (upload_ids,))
            return {row["id"] for row in await cur.fetchall()}

    async def purge_dead(self) -> None:
        """Rows of uploads aborted or expired a week ago go."""
        async with cursor(self.pool) as cur:
            await cur.execute("DELETE FROM uploads WHERE state IN ('aborted', 'expired')"
                              " AND updated_at < now() - interval '7 days'")

    # ------------------------------------------------------------------ inside
    async def _transition(self, cur: aiopg.Cursor, name: str, upload_id: str, assignments: str, values: tuple,
                          *, writer: str | None = None) -> dict[str, Any] | None:
        """UPDATE the row for transition `name`: its state must be one of the transition's sources
        (else it raises), and with `writer` that request must hold the lease (else None)."""
        transition = TRANSITIONS[name]
        if transition.target is not None:
            assignments = ", ".join(filter(None, [assignments, "state = %s"]))
            values = (*values, transition.target)
        condition = " AND writer = %s" if writer is not None else ""
        await cur.execute(f"UPDATE uploads SET {assignments} WHERE id = %s AND state = ANY(%s){condition}"
                          " RETURNING *, expires_at < now() AS is_expired",
                          (*values, upload_id, list(transition.sources), *([writer] if writer is not None else [])))
        row = await cur.fetchone()
        if row is None:
            await self._explain(cur, name, upload_id)
        return row

    @staticmethod
    async def _explain(cur: aiopg.Cursor, name: str, upload_id: str) -> None:
        """A transition's statement found no row: raise when the upload's state is why."""
        await cur.execute("SELECT state FROM uploads WHERE id = %s", (upload_id,))
        row = await cur.fetchone()
        check(name, row["state"] if row is not None else None)


class ExpiredBatch:
    """Uploads the reaper has claimed; each is marked `expire`d once its storage is released."""

    def __init__(self, table: UploadTable, cur: aiopg.Cursor, uploads: list[Upload]) -> None:
        self._table, self._cur, self.uploads = table, cur, uploads

    async def expire(self, upload: Upload) -> None:
        await self._table._transition(self._cur, "expire", upload.id, "writer = NULL, writer_instance = NULL, "
                                      "writer_until = NULL, updated_at = now()", ())
        await self._cur.execute("DELETE FROM upload_part_leases WHERE upload_id = %s", (upload.id,))
