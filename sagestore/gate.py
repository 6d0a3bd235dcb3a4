"""The gate: every byte-carrying request passes it, in this order, before the engine or storage.

1. Who is calling (`Caller`): a token's user, a signed URL acting as its creator, an S3 access key
   acting as its user, or anonymous. `caller()`, `signed_caller()`, `Caller.with_access_key()`.
2. What they may do now (`admit()`, `admit_upload()`): the bucket's ACL, read through the ACL cache
   (every change notifies every instance at once; its TTL is the backstop). A signed URL may do what
   its creator may do now: READ for a GET URL, WRITE for a PUT URL; a share link by its creator's
   grants (the bucket's public READ included, while the bucket is public), an OSDU URL by its
   creator's file role in the partition.
3. Limits: one rule for the largest upload (`max_upload_size()`), checked against the declared
   length (`refuse_declared_length()`) and against the bytes as they arrive.
4. The budget: one user's upload requests in flight and this instance's part-buffer memory
   (`streamed()` for a body sent straight to storage; the engine takes both for the bodies it is
   given); the object store takes an S3 transfer slot around every transfer.
5. The body (`body()`, `form()`): refused unless the request was admitted, on a route registered
   as a STREAM door.

Routes are registered through `Routes`: a PUT, PATCH or POST route states how it takes its body,
STREAM (through the gate) or SMALL (read whole, capped by the app's client_max_size), and
`check_routes()` refuses an app that has a route stating neither.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

from aiohttp import MultipartReader, web

from . import context
from .acl import authorize, held_permissions, satisfies
from .auth.identity import ANONYMOUS, Identity, refuse_reserved
from .errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized
from .limits import max_upload_size
from .osdu import EDITOR, VIEWER, role_level
from .storage import PartBody, parse_bucket_id, part_size_for, validate_key

if TYPE_CHECKING:
    from .uploads import Upload
    from .uploads.limits import ByteBudget, Reservation, UserSlots

__all__ = [
    # 1. who is calling
    "Caller", "CALLER", "caller", "identify", "signed_caller",
    # 2. what they may do now
    "Admission", "ADMITTED", "LINK_PERMISSION", "admit", "admit_owned", "admit_target", "admit_upload",
    # 3. limits, 4. budget, 5. body
    "max_upload_size", "refuse_declared_length", "streamed", "body", "form", "GateBypassed",
    # routes
    "Routes", "STREAM", "SMALL", "check_routes", "unguarded_routes",
]

# ------------------------------------------------------------------------------------ 1. who is calling
TOKEN, SIGNED_URL, ACCESS_KEY, NOBODY = "token", "signed-url", "access-key", "anonymous"


@dataclass(frozen=True)
class Caller:
    """Who is calling. `identity` is whose permissions count: the token's or access key's user, or
    a signed URL's creator (with the groups the URL was made with)."""
    identity: Identity
    via: str
    link: dict[str, Any] | None = None  # a signed URL's row in signed_urls

    @property
    def user(self) -> str | None:
        return self.identity.user

    @property
    def anonymous(self) -> bool:
        return self.identity.anonymous

    @classmethod
    def with_access_key(cls, identity: Identity) -> "Caller":
        """An S3 access key acting as its user (the S3 door resolves the key)."""
        return cls(refuse_reserved(identity), ACCESS_KEY)


CALLER: web.RequestKey[Caller] = web.RequestKey("caller", Caller)


def identify(request: web.Request, who: Caller) -> Caller:
    """Record the caller a door established itself (e.g. the S3 door, from an access key)."""
    request[CALLER] = who
    return who


def caller(request: web.Request) -> Caller:
    """The caller of a request: the one a door established (signed URL, access key), else the
    token's user as the auth middleware found it, else anonymous."""
    found = request.get(CALLER)
    if found is not None:
        return found
    identity = request.get(context.IDENTITY, ANONYMOUS)
    return Caller(identity, NOBODY if identity.anonymous else TOKEN)


async def signed_caller(request: web.Request) -> tuple[Caller, str]:
    """(the signed URL's creator as the caller, the key) for a /api/v1/signed/ request, once the
    signature, expiry, method and revocation are checked (400, 403, 405)."""
    bucket_id = parse_bucket_id(request.match_info["id"])
    key = validate_key(request.match_info["key"])
    target = request.app[context.SIGNER].verify(request.method, bucket_id, key, request.query)
    row = await request.app[context.SIGNED_URLS].get(target.url_id)
    if row is None or row["bucket_id"] != bucket_id or row["key"] != key or row["method"] != target.method:
        raise Forbidden("signed URL refused: it is no longer valid")
    if row["revoked_at"] is not None:
        raise Forbidden("signed URL refused: it has been revoked")
    creator = Identity(row["created_by"], frozenset(row["creator_groups"] or ()))
    return identify(request, Caller(creator, SIGNED_URL, row)), key


# ------------------------------------------------------------------------------- 2. what they may do now
@dataclass(frozen=True)
class Admission:
    """What step 2 found: the caller, the bucket row and the permissions held on it."""
    caller: Caller
    bucket: dict[str, Any] | None
    held: frozenset[str]


ADMITTED: web.RequestKey[Admission] = web.RequestKey("admitted", Admission)
LINK_PERMISSION = {"GET": "READ", "PUT": "WRITE"}


async def admit(request: web.Request, bucket_id: str, needed: str, *, writing: bool | None = None) -> Admission:
    """The caller may do `needed` on the bucket now, or 401 (anonymous), 404 (missing, archived for
    a write, or invisible to the caller), 403 (visible but not allowed; a signed URL whose creator no
    longer may). `writing` (default: needed is WRITE) also refuses an archived bucket."""
    who = caller(request)
    writing = needed == "WRITE" if writing is None else writing
    if who.via == SIGNED_URL:
        bucket, held = await _admit_link(request, who, bucket_id, needed, writing)
    else:
        bucket, held = await authorize(request.app[context.ACL], bucket_id, who.identity, needed, writing=writing)
    admission = Admission(who, bucket, held)
    request[ADMITTED] = admission
    return admission


async def _admit_link(request: web.Request, who: Caller, bucket_id: str, needed: str,
                      writing: bool) -> tuple[dict[str, Any], frozenset[str]]:
    """A signed URL does what it was signed for, while its creator may still do it."""
    link = who.link
    assert link is not None
    if bucket_id != link["bucket_id"] or needed != LINK_PERMISSION[link["method"]]:
        raise Forbidden(f"signed URL refused: it is not signed for {needed} on this bucket")
    bucket, grants = await request.app[context.ACL].bucket_with_grants(bucket_id)
    if bucket is None or (writing and bucket["archived"]):
        raise NotFound("bucket not found")
    if link["purpose"] == "osdu":
        held = frozenset({needed}) if _has_osdu_role(request, who, link["partition_id"], bucket_id, needed) \
            else frozenset()
    else:
        held = held_permissions(who.identity, grants)
    if not satisfies(held, needed):
        raise Forbidden(f"signed URL refused: its creator no longer has {needed} permission on the bucket")
    return bucket, held


def _has_osdu_role(request: web.Request, who: Caller, partition: str, bucket_id: str, needed: str) -> bool:
    """An OSDU URL's creator has the file role it needs (editors to upload, viewers to download) in a
    partition this bucket still serves."""
    if request.app[context.OSDU_BUCKETS].get(partition) != bucket_id:
        return False
    level = role_level(who.identity.groups, partition, request.app[context.SETTINGS].osdu_domain)
    return level >= (EDITOR if needed == "WRITE" else VIEWER)


async def admit_target(request: web.Request, bucket_id: Any, key: Any) -> tuple[str, str]:
    """(bucket id, key) of a new file the caller may write: 401 anonymous, 400 a bad bucket id or
    key, then WRITE on the bucket as admit() checks it."""
    if caller(request).anonymous:
        raise Unauthorized("authentication required")
    if not isinstance(key, str):
        raise BadRequest("key is required")
    bucket_id = parse_bucket_id(bucket_id)
    validate_key(key)
    await admit(request, bucket_id, "WRITE")
    return bucket_id, key


async def admit_upload(request: web.Request, upload_id: Any, needed: str | None, *, bucket_id: str | None = None,
                       key: str | None = None, with_parts: bool = True,
                       protocols: tuple[str, ...] | None = None) -> "Upload":
    """The caller's own upload (the one way every door fetches it): 401 anonymous, 400 no id, 404
    another user's, another bucket's or key's, another protocol's, or gone, 410 expired; then
    `needed` on its bucket as admit() checks it (None: the owner's own request that carries no body,
    e.g. a status or an abort). An upload with no bucket yet (a tus partial) is its owner's alone."""
    who = caller(request)
    if who.anonymous:
        raise Unauthorized("authentication required")
    if not isinstance(upload_id, str) or not upload_id:
        raise BadRequest("upload_id is required")
    upload = await request.app[context.ENGINE].get(upload_id, who.user, bucket_id=bucket_id, key=key,
                                                   with_parts=with_parts)
    if protocols is not None and upload.protocol not in protocols:
        raise NotFound("upload not found")
    if needed is not None:
        await admit_owned(request, upload, needed)
    return upload


async def admit_owned(request: web.Request, upload: "Upload", needed: str) -> Admission:
    """An upload of the caller's already in hand (e.g. just created): `needed` on its bucket; with no
    bucket yet (a tus partial upload), its owner alone may."""
    who = caller(request)
    if upload.bucket_id is not None:
        return await admit(request, upload.bucket_id, needed)
    if who.anonymous or who.user != upload.owner:
        raise NotFound("upload not found")
    admission = Admission(who, None, frozenset())
    request[ADMITTED] = admission
    return admission


# ------------------------------------------------------------------------------------------- 3. limits
def refuse_declared_length(request: web.Request, limit: int | None = None) -> int:
    """413 when Content-Length declares more than the limit (default: the largest upload); the limit."""
    limit = max_upload_size(request.app[context.SETTINGS]) if limit is None else limit
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the file is larger than the {limit}-byte limit")
    return limit


async def _limited(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"the file is larger than the {limit}-byte limit")
        yield chunk


# ------------------------------------------------------------------------------------------- 4. budget
def _budget(app: web.Application) -> tuple["ByteBudget", "UserSlots"]:
    """This instance's part-buffer budget and per-user upload cap: the engine holds them, and the
    bodies it is given take them there."""
    engine = app[context.ENGINE]
    return engine.memory, engine.slots


@contextlib.asynccontextmanager
async def streamed(request: web.Request, chunks: AsyncIterator[bytes] | None = None, *,
                   limit: int | None = None) -> AsyncIterator[AsyncIterator[bytes]]:
    """A body sent straight to storage (ObjectStore.put_stream), under the admitted caller's
    upload slot and the part-buffer budget, cut off past the limit (default: the largest upload).
    `chunks`: the bytes to send (default: the request body), e.g. one field of a form."""
    admission = _admitted(request)
    store = request.app[context.STORE]
    limit = max_upload_size(request.app[context.SETTINGS]) if limit is None else limit
    memory, slots = _budget(request.app)
    source = body(request) if chunks is None else chunks
    async with slots.hold(admission.caller.user):
        async with memory.reserve() as reservation:
            yield _budgeted(_limited(source, limit), reservation, store.part_size, store.parts_in_flight)


async def _budgeted(chunks: AsyncIterator[bytes], reservation: "Reservation", part_size: int,
                    parts_in_flight: int) -> AsyncIterator[bytes]:
    """The chunks, each once the budget covers what put_stream may then hold: the bytes received
    (in PartBody blocks), never more than its parts in flight and the part being filled."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        blocks = -(-received // PartBody.BLOCK) * PartBody.BLOCK
        if received >= part_size:  # several part buffers, each rounded up to a block
            blocks += parts_in_flight * PartBody.BLOCK
        largest_part = part_size_for(1 + received // part_size, part_size)  # parts grow for huge bodies
        await reservation.grow_to(min(blocks, (parts_in_flight + 1) * largest_part))
        yield chunk


# --------------------------------------------------------------------------------------------- 5. body
class GateBypassed(RuntimeError):
    """A request body read without passing the gate: a programming error, never a client's."""


def _admitted(request: web.Request) -> Admission:
    route = getattr(request.match_info, "handler", None)
    if getattr(route, MARK, None) != STREAM:
        raise GateBypassed(f"{request.method} {request.path}: the route is not registered as a STREAM door")
    admission = request.get(ADMITTED)
    if admission is None:
        raise GateBypassed(f"{request.method} {request.path}: the body is read before the gate admitted the caller")
    return admission


def body(request: web.Request) -> AsyncIterator[bytes]:
    """The admitted request's body, piece by piece as aiohttp received it."""
    _admitted(request)
    return _pieces(request)


async def _pieces(request: web.Request) -> AsyncIterator[bytes]:
    # Not iter_chunked(n), which joins the pieces into n-byte chunks (one more copy of every byte),
    # nor iter_chunks(): it ends only on (b"", False), and aiohttp's shared empty-body reader answers
    # (b"", True) forever after its first use, without awaiting: the event loop would spin.
    content = request.content
    while True:
        piece, _ = await content.readchunk()
        if piece:
            yield piece
        elif content.at_eof():
            return


async def form(request: web.Request) -> MultipartReader:
    """The admitted request's multipart/form-data body, as a reader of its parts."""
    _admitted(request)
    return await request.multipart()


# ------------------------------------------------------------------------------------------- routes
STREAM, SMALL = "stream", "small"
MARK = "sagestore_gate_body"
BODY_METHODS = frozenset({"PUT", "PATCH", "POST", "*"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Routes(web.RouteTableDef):
    """A route table whose PUT, PATCH, POST (and any-method) routes state how they take their body:
    body=STREAM, read through the gate, or body=SMALL, read whole (JSON; capped by client_max_size)."""

    def route(self, method: str, path: str, *, body: str | None = None, **kwargs: Any) -> Callable[[Handler], Handler]:
        if method.upper() in BODY_METHODS and body not in (STREAM, SMALL):
            raise TypeError(f"{method} {path}: state how the route takes its body: body=gate.STREAM (streamed "
                            "through the gate) or body=gate.SMALL (read whole)")
        register = super().route(method, path, **kwargs)

        def decorate(handler: Handler) -> Handler:
            if body is not None:
                setattr(handler, MARK, body)
            return register(handler)
        return decorate


def unguarded_routes(app: web.Application) -> list[str]:
    """The routes that may take a request body but were not registered through Routes."""
    return [f"{route.method} {route.resource.canonical if route.resource else '?'}"
            for route in app.router.routes()
            if route.method.upper() in BODY_METHODS and getattr(route.handler, MARK, None) not in (STREAM, SMALL)]


def check_routes(app: web.Application) -> None:
    """Refuse an app with a body-taking route that did not say how it takes its body."""
    unguarded = unguarded_routes(app)
    if unguarded:
        raise RuntimeError("routes that take a body must be registered through gate.Routes: " + ", ".join(unguarded))
