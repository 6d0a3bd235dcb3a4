from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Unauthorized

# Users that exist inside sagestore only: the OSDU File service's partition buckets belong to this
# one. No token, in any auth mode, may name it (and `sagestore token` does not mint one for it).
OSDU_SERVICE_USER = "osdu-file-service"
RESERVED_USERS = frozenset({OSDU_SERVICE_USER})


@dataclass(frozen=True)
class Identity:
    """A caller. user is None for anonymous callers. expires_at: when the credential the caller
    presented stops being valid (Unix seconds), when it says so (a JWT's exp); None otherwise."""
    user: str | None
    groups: frozenset[str] = frozenset()
    expires_at: float | None = field(default=None, compare=False)  # not part of who it is

    @property
    def anonymous(self) -> bool:
        return self.user is None


ANONYMOUS = Identity(None)


def is_reserved(user: str | None) -> bool:
    return user is not None and user.strip().lower() in RESERVED_USERS


def refuse_reserved(identity: Identity) -> Identity:
    """The identity a token (or an access key) names, unless it names a reserved user: 401."""
    if is_reserved(identity.user):
        raise Unauthorized(f"the user name {identity.user!r} is reserved for sagestore itself")
    return identity
