"""sagestore's own signed URLs: an HMAC-SHA256 over method, bucket, key, expiry, key id and URL id.

A URL is `/api/v1/signed/<bucket>/<key>?method=&expires=&kid=&id=&sig=`. Everything the signature
covers travels in the URL, so a check needs no database round trip; the URL id names its row in
signed_urls (db/signed_urls.py), which holds revocations. The signature sits in the query string,
which the access log never writes. Keys: `<kid>:<secret>` pairs from SAGESTORE_SIGNING_KEYS (the
first signs, all verify, so keys rotate by prepending a new one), else one generated into
<data-dir>/signing-key.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..config import ConfigError, Settings, parse_signing_keys
from ..digits import is_decimal
from ..errors import ApiError, BadRequest, Forbidden
from .tokens import load_or_create_secret

SIGNED_PREFIX = "/api/v1/signed/"
MAX_EXPIRY = 7 * 86400  # seconds; as S3's SigV4 presign
METHODS = ("GET", "PUT")
PARAMS = ("method", "expires", "kid", "id", "sig")


class MethodNotAllowed(ApiError):
    status = 405


@dataclass(frozen=True)
class SignedTarget:
    """What a valid signature vouches for."""
    method: str
    bucket_id: str
    key: str
    expires: int
    key_id: str
    url_id: str


def load_or_create_key(data_dir: Path) -> list[tuple[str, bytes]]:
    """The embedded default: one random key in <data-dir>/signing-key (mode 0600), created
    atomically like jwt-secret, with a key id derived from it."""
    secret = load_or_create_secret(data_dir, "signing-key")
    kid = "d" + hashlib.sha256(secret.encode()).hexdigest()[:8]  # not secret: names the key
    return [(kid, secret.encode())]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class UrlSigner:
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigError("no signing key")
        self.current = keys[0][0]
        self.keys = dict(keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> "UrlSigner":
        keys = parse_signing_keys(settings.signing_keys) if settings.signing_keys else load_or_create_key(settings.data_path)
        return cls(keys)

    def _mac(self, secret: bytes, method: str, bucket_id: str, key: str, expires: int, kid: str,
             url_id: str) -> str:
        # a JSON array keeps the fields apart whatever the key contains
        message = json.dumps(["sagestore-signed-url-v1", method, bucket_id, key, expires, kid, url_id],
                             separators=(",", ":"), ensure_ascii=False).encode()
        return _b64(hmac.new(secret, message, hashlib.sha256).digest())

    def sign(self, method: str, bucket_id: str, key: str, expires: int, url_id: str) -> str:
        """The path and query of a signed URL (relative to the server's base URL), with the current key."""
        return self.sign_with(self.current, method, bucket_id, key, expires, url_id)

    def sign_with(self, kid: str, method: str, bucket_id: str, key: str, expires: int, url_id: str) -> str:
        assert method in METHODS
        sig = self._mac(self.keys[kid], method, bucket_id, key, expires, kid, url_id)
        return (f"{SIGNED_PREFIX}{bucket_id}/{quote(key, safe='/')}"
                f"?method={method}&expires={expires}&kid={kid}&id={url_id}&sig={sig}")

    def verify(self, request_method: str, bucket_id: str, key: str, query) -> SignedTarget:
        """The target a URL's signature vouches for, or 400 (not a signed URL), 403 (bad
        signature, unknown key, expired) or 405 (signed for another method)."""
        values = {name: query.get(name, "") for name in PARAMS}
        missing = [name for name in PARAMS if not values[name]]
        if missing:
            raise BadRequest(f"not a signed URL: the query lacks {', '.join(missing)}")
        method, kid, url_id, sig = values["method"], values["kid"], values["id"], values["sig"]
        if not is_decimal(values["expires"], 12):
            raise Forbidden("signed URL refused: bad expiry")
        expires = int(values["expires"])
        secret = self.keys.get(kid)
        if secret is None:
            raise Forbidden("signed URL refused: it was signed with a key this server does not have")
        expected = self._mac(secret, method, bucket_id, key, expires, kid, url_id)
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise Forbidden("signed URL refused: the signature does not match")
        if expires < time.time():
            raise Forbidden("signed URL refused: it has expired")
        allowed = {"GET": ("GET", "HEAD"), "PUT": ("PUT",)}.get(method, ())
        if request_method not in allowed:
            raise MethodNotAllowed(f"this URL is signed for {method}, not {request_method}",
                                   headers={"Allow": ", ".join(allowed)})
        try:
            url_id = str(uuid.UUID(url_id))
        except ValueError:  # cannot happen for URLs we signed
            raise Forbidden("signed URL refused: bad id") from None
        return SignedTarget(method, bucket_id, key, expires, kid, url_id)


def redact(url: str) -> str:
    """A signed URL without its signature, for messages and logs."""
    return re.sub(r"([?&]sig=)[^&]*", r"\1REDACTED", url)
