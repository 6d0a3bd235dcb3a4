"""What callers may do: the SAGE permission model as pure functions, plus the one
database-backed check that every bucket route goes through."""
from .model import (ALL_USERS, GRANTEE_TYPES, PERMISSIONS, Grant, can_grant, held_permissions, parse_grantee,
                    satisfies)
from .check import authorize

__all__ = ["ALL_USERS", "GRANTEE_TYPES", "PERMISSIONS", "Grant", "can_grant", "held_permissions", "parse_grantee",
           "satisfies", "authorize"]
