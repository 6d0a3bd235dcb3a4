from __future__ import annotations

from typing import Iterable

from ..auth.identity import Identity
from ..db.grants import Grant
from ..errors import BadRequest

PERMISSIONS = ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL")
GRANTEE_TYPES = ("USER", "GROUP")
ALL_USERS = "AllUsers"  # GROUP AllUsers READ makes a bucket public


def applies_to(grant: Grant, identity: Identity) -> bool:
    if grant.grantee_type == "GROUP":
        return grant.grantee == ALL_USERS or grant.grantee in identity.groups
    return identity.user is not None and grant.grantee == identity.user


def held_permissions(identity: Identity, grants: Iterable[Grant]) -> frozenset[str]:
    """Every permission the caller holds on a bucket; FULL_CONTROL expands to all."""
    held = {grant.permission for grant in grants if applies_to(grant, identity)}
    if identity.anonymous:
        held &= {"READ"}  # the public may read, nothing else, whatever the grants say
    if "FULL_CONTROL" in held:
        return frozenset(PERMISSIONS)
    return frozenset(held)


def satisfies(held: frozenset[str], needed: str) -> bool:
    return needed in held


def can_grant(held: frozenset[str], permission: str) -> bool:
    """Granting needs WRITE_ACP, and nobody hands out more than they hold."""
    return "WRITE_ACP" in held and permission in held


def parse_grantee(text: str) -> tuple[str, str, str | None]:
    """'TYPE:NAME[:PERM]' or 'NAME' (USER) from ?grantee=; 400 when malformed."""
    pieces = text.split(":")
    if len(pieces) == 1:
        pieces = ["USER", pieces[0]]
    if len(pieces) not in (2, 3) or not pieces[1]:
        raise BadRequest(f"grantee {text!r} must look like TYPE:NAME or TYPE:NAME:PERMISSION")
    grantee_type = pieces[0].upper()
    if grantee_type not in GRANTEE_TYPES:
        raise BadRequest(f"granteeType {pieces[0]!r} must be USER or GROUP")
    permission = pieces[2].upper() if len(pieces) == 3 else None
    if permission is not None and permission not in PERMISSIONS:
        raise BadRequest(f"permission {pieces[2]!r} must be one of {', '.join(PERMISSIONS)}")
    return grantee_type, pieces[1], permission


def can_revoke(held: frozenset[str], permission: str) -> bool:
    """Revoking mirrors granting: a WRITE_ACP holder cannot strip a co-owner's FULL_CONTROL."""
    return can_grant(held, permission)


def check_grant_change(owner: str, grantee_type: str, grantee: str, permission: str | None) -> None:
    """Rules that hold whoever asks: 400 when a grant (or revocation) is never allowed."""
    if grantee_type == "USER" and grantee == owner:
        raise BadRequest("the owner's permissions cannot be changed")
    if grantee_type == "GROUP" and grantee == ALL_USERS and permission not in (None, "READ"):
        raise BadRequest("group AllUsers can only be granted READ (that makes a bucket public)")
