"""Signed URLs as the share and OSDU adapters hand them out (not a route module): where clients reach
this server, and issuing, recording and re-rendering one URL.

Absolute URLs come from configuration, never from the request's Host header: SAGESTORE_PUBLIC_URL,
else http://<address>:<port> of the listening socket the connection reached (the bound address, or
for a wildcard bind the interface address the client connected to).
"""
from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from .. import context
from ..auth.identity import Identity
from ..auth.signing import MAX_EXPIRY
from ..db import signed_urls as url_queries
from ..errors import BadRequest

WILDCARDS = {"", "0.0.0.0", "::"}


def base_url(request: web.Request) -> str:
    """Where clients reach this server (no trailing '/')."""
    settings = request.app[context.SETTINGS]
    if settings.public_url:
        return settings.public_url.rstrip("/")
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    host, port = (sockname[0], sockname[1]) if isinstance(sockname, tuple) and len(sockname) >= 2 \
        else (settings.host, settings.port)
    return f"http://{_url_host(str(host))}:{int(port)}"


def _url_host(host: str) -> str:
    host = host.removeprefix("::ffff:") if host.startswith("::ffff:") and "." in host else host
    if host in WILDCARDS:
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host  # a configured host name
    return f"[{address}]" if address.version == 6 else str(address)


async def issue(request: web.Request, cur: Any, *, method: str, bucket_id: str, key: str, expires_in: int,
                purpose: str, creator: Identity, file_id: str | None = None,
                partition_id: str | None = None) -> tuple[dict[str, Any], str]:
    """Record and sign one URL (inside the caller's transaction); returns (row, absolute URL). The
    URL acts as its creator: the groups it is made with count at each use (gate.admit)."""
    if not 1 <= expires_in <= MAX_EXPIRY:
        raise BadRequest(f"expires_in must be between 1 and {MAX_EXPIRY} seconds (7 days)")
    signer = request.app[context.SIGNER]
    url_id = str(uuid.uuid4())
    expires_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=expires_in)
    row = await url_queries.insert(cur, url_id=url_id, method=method, bucket_id=bucket_id, key=key, purpose=purpose,
                                   created_by=creator.user, creator_groups=list(creator.groups),
                                   expires_at=expires_at, key_id=signer.current, file_id=file_id,
                                   partition_id=partition_id)
    path = signer.sign(method, bucket_id, key, int(expires_at.timestamp()), url_id)
    return row, base_url(request) + path


def url_of(request: web.Request, row: dict[str, Any]) -> str:
    """A URL's text again (the signature is deterministic); "" when its key has been retired."""
    signer = request.app[context.SIGNER]
    if row["key_id"] not in signer.keys:  # signed with a key since retired: it no longer works anyway
        return ""
    return base_url(request) + signer.sign_with(row["key_id"], row["method"], row["bucket_id"], row["key"],
                                                int(row["expires_at"].timestamp()), row["id"])
