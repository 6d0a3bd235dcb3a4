"""Who is calling: the Authorization header becomes an Identity (or anonymous)."""
from .identity import ANONYMOUS, Identity
from .tokens import Authenticator, build_authenticator, parse_authorization

__all__ = ["ANONYMOUS", "Identity", "Authenticator", "build_authenticator", "parse_authorization"]
