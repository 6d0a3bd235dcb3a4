"""Token checking in three modes: noauth (development), introspect (the Go server's
token_info call) and jwt (pyjwt). Tokens are never logged."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import aiohttp
import jwt

from ..config import Settings
from ..errors import BackendUnavailable, Unauthorized
from .identity import ANONYMOUS, Identity, is_reserved

log = logging.getLogger("sagestore.auth")
# seconds a token is still accepted after its exp (and before its nbf/iat): clock skew between the
# token's issuer and this server. Tokens from `sagestore token` share this machine's clock; an
# external issuer's clock is NTP-synchronised to well under a second. 5 s absorbs a lagging VM or
# container clock without keeping an expired token useful for long.
CLOCK_SKEW_LEEWAY = 5
# what each pyjwt rejection means, in words (the class names mean nothing to a user)
JWT_PROBLEMS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "its signature does not match this server's key (was it made for another "
                                "server or data dir? `sagestore token` must run with the server's data dir)"),
    (jwt.DecodeError, "it is not a JWT (three base64url parts separated by dots)"),
    (jwt.InvalidAlgorithmError, "it is signed with an algorithm this server does not accept"),
    (jwt.ImmatureSignatureError, "it is not valid yet (nbf or iat in the future: check the clocks)"),
    (jwt.InvalidAudienceError, "it is for another audience (aud)"),
    (jwt.InvalidIssuerError, "another issuer made it (iss)"),
    (jwt.MissingRequiredClaimError, "a required claim is missing"),
)


def jwt_problem(error: Exception) -> str:
    for kind, words in JWT_PROBLEMS:
        if isinstance(error, kind):
            if isinstance(error, jwt.MissingRequiredClaimError):
                return f"its {error.claim!r} claim is missing"
            return words
    return "it cannot be checked"
MAX_REJECTED = 10_000  # rejected-token cache entries (sha256 keys, ~200 bytes each)
MAX_VERIFIED = 4096  # verified-JWT cache entries (sha256 keys, ~250 bytes each)


def parse_authorization(header: str | None) -> str | None:
    """The token from 'sage <token>' or 'Bearer <token>'; None when there is no header."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() not in ("sage", "bearer") or not token or " " in token:
        raise Unauthorized("malformed Authorization header: use 'sage <token>' or 'Bearer <token>'")
    return token


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Identity: ...

    async def close(self) -> None: ...


class NoAuth:
    """TESTING_NOAUTH of the Go server: the token 'user:<name>' names the user."""

    async def authenticate(self, token: str) -> Identity:
        if not token.startswith("user:") or len(token) <= 5:
            raise Unauthorized("noauth mode expects the token 'user:<name>'")
        user = token[5:]
        # 'user:alice;groups=a,b' lets tests act as group members
        user, _, group_part = user.partition(";groups=")
        return Identity(user, frozenset(g for g in group_part.split(",") if g))

    async def close(self) -> None:
        pass


class JwtAuth:
    """Verifies JWTs with pyjwt. A token that verified is remembered by its sha256 (at most
    MAX_VERIFIED of them, the least recently used dropped first) until its own exp, never longer
    (pyjwt's leeway is not extended): a client sends the same token with every request, and the
    signature check and claim validation cost more than the rest of a small request. Until its
    exp a verified token verifies again (nbf and iat only grow more satisfied; aud, iss and the
    key do not change while the process runs), so the cache answers as _verify would; failures
    are not cached."""

    def __init__(self, settings: Settings, secret: str) -> None:
        self.algorithms = list(settings.jwt_algorithms)
        self.key = Path(settings.jwt_public_key_file).read_text() if settings.jwt_public_key_file else secret
        self.audience = settings.jwt_audience or None
        self.issuer = settings.jwt_issuer or None
        self.username_claim = settings.jwt_username_claim
        self.groups_claim = settings.jwt_groups_claim
        self.verified: OrderedDict[bytes, tuple[float, Identity]] = OrderedDict()  # least recently used first
        self.max_verified = MAX_VERIFIED
        self.decodes = 0  # signature checks made (observable in tests)

    async def authenticate(self, token: str) -> Identity:
        cache_key = hashlib.sha256(token.encode()).digest()
        cached = self.verified.get(cache_key)
        if cached is not None:
            if time.time() < cached[0]:
                self.verified.move_to_end(cache_key)
                return cached[1]
            del self.verified[cache_key]
        identity, exp = self._verify(token)
        if exp > time.time():  # (within pyjwt's leeway a token past its exp still verifies, uncached)
            self.verified[cache_key] = (exp, identity)  # wall-clock seconds, like exp
            if len(self.verified) > self.max_verified:
                self.verified.popitem(last=False)
        return identity

    def _verify(self, token: str) -> tuple[Identity, float]:
        """The token's identity and exp, or Unauthorized."""
        self.decodes += 1
        required = ["exp", self.username_claim] + (["aud"] if self.audience else []) + (["iss"] if self.issuer else [])
        try:
            # aud is verified only when configured; pyjwt would otherwise reject every token that has one
            claims = jwt.decode(token, self.key, algorithms=self.algorithms, audience=self.audience,
                                issuer=self.issuer, leeway=CLOCK_SKEW_LEEWAY,
                                options={"require": required, "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError:
            raise Unauthorized(f"token expired (a token is accepted up to {CLOCK_SKEW_LEEWAY} s after its exp): "
                               "get a new one") from None
        except jwt.InvalidTokenError as error:
            raise Unauthorized(f"the token is not valid for this server: {jwt_problem(error)}") from None
        user = claims.get(self.username_claim)
        groups = claims.get(self.groups_claim) or []
        if not isinstance(user, str) or not user or not isinstance(groups, list):
            raise Unauthorized("the token is not valid for this server: its user or groups claim is malformed")
        exp = float(claims["exp"])  # a required claim, and pyjwt has checked it is a number
        return Identity(user, frozenset(str(g) for g in groups), exp), exp

    async def close(self) -> None:
        pass


class IntrospectAuth:
    """POST token=<token> with basic auth to the token_info endpoint (the Go server's call).

    Positive answers are cached by token hash for token_info_cache_ttl (never past the token's
    own exp); rejections (401) for token_info_negative_cache_ttl, at most MAX_REJECTED of them,
    so that a client repeating a bad token cannot make a token-service call per request;
    failures (503) are not cached. Concurrent requests with the same
    uncached token share one call. A token service that times out, cannot be reached or
    answers 5xx is an outage: 503, the client may retry. Any other non-200 answer, or
    active false, is 401 (as in the Go server).
    """

    def __init__(self, settings: Settings) -> None:
        self.url = settings.token_info_url
        self.basic = aiohttp.BasicAuth(settings.token_info_user, settings.token_info_password) \
            if settings.token_info_user else None
        self.timeout = aiohttp.ClientTimeout(total=settings.token_info_timeout)
        self.ttl = settings.token_info_cache_ttl
        self.cache: dict[str, tuple[float, Identity]] = {}
        self.negative_ttl = settings.token_info_negative_cache_ttl
        self.rejected: OrderedDict[str, tuple[float, str]] = OrderedDict()  # oldest first
        self.max_rejected = MAX_REJECTED
        self.in_flight: dict[str, asyncio.Future[Identity]] = {}
        self.session: aiohttp.ClientSession | None = None
        self.calls = 0  # observable in tests and metrics

    async def authenticate(self, token: str) -> Identity:
        cache_key = hashlib.sha256(token.encode()).hexdigest()
        cached = self.cache.get(cache_key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        rejected = self.rejected.get(cache_key)
        if rejected is not None:
            if rejected[0] > time.monotonic():
                raise Unauthorized(rejected[1])
            del self.rejected[cache_key]
        running = self.in_flight.get(cache_key)
        if running is not None:
            return await asyncio.shield(running)
        lookup = asyncio.ensure_future(self._lookup(token, cache_key))
        self.in_flight[cache_key] = lookup
        try:
            return await asyncio.shield(lookup)
        finally:
            if lookup.done():
                self.in_flight.pop(cache_key, None)
            else:  # this caller went away; the lookup finishes for the others
                lookup.add_done_callback(lambda done: self._forget(cache_key, done))

    def _forget(self, cache_key: str, lookup: asyncio.Future) -> None:
        self.in_flight.pop(cache_key, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved, so asyncio does not warn when nobody waits any more

    async def _lookup(self, token: str, cache_key: str) -> Identity:
        try:
            return await self._ask(token, cache_key)
        except Unauthorized as rejection:
            if self.negative_ttl > 0:
                self.rejected[cache_key] = (time.monotonic() + self.negative_ttl, rejection.message)
                while len(self.rejected) > self.max_rejected:
                    self.rejected.popitem(last=False)
            raise

    async def _ask(self, token: str, cache_key: str) -> Identity:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        self.calls += 1
        started = time.monotonic()
        try:
            async with self.session.post(self.url, data={"token": token}, auth=self.basic, timeout=self.timeout,
                                         headers={"Accept": "application/json"}) as response:
                if response.status >= 500:
                    log.warning("token service answered %d", response.status)
                    raise BackendUnavailable("token service unavailable, try again later")
                if response.status != 200:
                    raise Unauthorized("token rejected by the token service")
                body = await response.json(content_type=None)
        except (asyncio.TimeoutError, aiohttp.ClientError) as error:
            log.warning("token service call failed: %s", type(error).__name__)
            raise BackendUnavailable("token service unavailable, try again later") from None
        except ValueError:
            raise Unauthorized("token service gave an unreadable answer") from None
        if not isinstance(body, dict) or body.get("active") is not True or not body.get("username"):
            raise Unauthorized("token is not active")
        groups = body.get("groups")
        groups = groups if isinstance(groups, list) else []
        exp = body.get("exp")
        exp = float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None
        identity = Identity(str(body["username"]), frozenset(str(g) for g in groups), exp)
        expires = started + self.ttl
        if isinstance(body.get("exp"), (int, float)):
            expires = min(expires, started + max(0.0, body["exp"] - time.time()))
        if self.ttl > 0:
            if len(self.cache) > 100_000:
                self.cache.clear()
            self.cache[cache_key] = (expires, identity)
        return identity

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def load_or_create_secret(data_dir: Path, name: str = "jwt-secret") -> str:
    """An embedded default secret (the JWT secret, the URL-signing key): random, kept in
    <data-dir>/<name>, mode 0600.

    Created atomically (written aside, then hard-linked into place), so a server and a
    `sagestore token` starting at the same moment agree on one secret."""
    import os
    import secrets

    from ..config import ConfigError
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch = data_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            try:
                os.link(scratch, path)
            except FileExistsError:
                pass  # somebody else won; use theirs
        finally:
            scratch.unlink(missing_ok=True)
    secret = path.read_text().strip()
    if len(secret) < 32:  # an empty key would make every token "valid"
        raise ConfigError(f"{path} is empty or too short; delete it to generate a new secret")
    return secret


def jwt_secret_for(settings: Settings) -> str:
    return settings.jwt_secret or load_or_create_secret(settings.data_path)


def build_authenticator(settings: Settings) -> Authenticator:
    if settings.auth_mode == "noauth":
        log.warning("*** AUTH IS OFF (noauth mode): anybody can act as any user with 'Authorization: "
                    "sage user:<name>'. For tests and development only; never run this in production. ***")
        return NoAuth()
    if settings.auth_mode == "introspect":
        return IntrospectAuth(settings)
    secret = "" if settings.jwt_public_key_file else jwt_secret_for(settings)
    return JwtAuth(settings, secret)


def refuse_reserved_name(user: str) -> None:
    """No token names a reserved user (the OSDU service user): ConfigError, said in words."""
    if is_reserved(user):
        from ..config import ConfigError
        raise ConfigError(f"the user name {user!r} is reserved for sagestore itself; no token names it")


def mint_token(settings: Settings, user: str, groups: list[str], ttl_seconds: float) -> str:
    """An HS256 token the server on this data dir / secret accepts (never for a reserved user)."""
    refuse_reserved_name(user)
    now = int(time.time())
    claims = {settings.jwt_username_claim: user, settings.jwt_groups_claim: groups,
              "iat": now, "nbf": now, "exp": now + int(ttl_seconds)}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, jwt_secret_for(settings), algorithm="HS256")


__all__ = ["ANONYMOUS", "Identity", "Authenticator", "NoAuth", "JwtAuth", "IntrospectAuth",
           "parse_authorization", "build_authenticator", "mint_token", "load_or_create_secret"]
