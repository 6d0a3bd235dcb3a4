"""One Settings object, built from flags, then env vars, then embedded defaults.

Every option lives in OPTIONS once; argparse flags, env var names, `--help`
and the table in docs/configuration.md all come from that list, so they cannot drift apart.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


class ConfigError(Exception):
    """A bad or missing setting; the CLI prints it as one line and exits 2."""


def _duration(text: str) -> float:
    """Seconds from '90', '90s', '15m', '48h' or '7d'."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 48h, 7d)")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * scale


def _size(text: str) -> int:
    """Bytes from '1048576', '8MiB', '150MB', '5GiB'."""
    match = re.fullmatch(r"\s*(\d+)\s*(|B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)\s*", str(text), re.I)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 8MiB, 150MB)")
    units = {"": 1, "b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20,
             "gb": 10**9, "gib": 2**30, "tb": 10**12, "tib": 2**40}
    return int(match.group(1)) * units[match.group(2).lower()]


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def _int(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ValueError(f"not an integer: {text!r}") from None


def _port(text: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise ValueError(f"port out of range 0-65535: {value}")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return text
    parse.choices = allowed  # type: ignore[attr-defined]  # shown by --help and docs/configuration.md
    return parse


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in str(text).split(",") if item.strip())


def _format_size(value: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10),
                        ("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if value and value % scale == 0:
            return f"{value // scale}{unit}"
    return str(value)


def _format_duration(value: float) -> str:
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if value and value % scale == 0:
            return f"{value / scale:g}{unit}"
    return f"{value:g}s"


_METAVARS: list[tuple[Callable[[str], Any], str]] = [
    (_port, "PORT"), (int, "N"), (_int, "N"), (_size, "SIZE"), (_duration, "DURATION"), (_bool, "BOOL"),
    (_csv, "LIST"),
]


SIGNING_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MIN_SIGNING_SECRET_LENGTH = 32


def parse_signing_keys(text: str) -> list[tuple[str, bytes]]:
    """SAGESTORE_SIGNING_KEYS 'kid:secret,kid2:secret2' -> [(kid, secret bytes)], the first being the
    signing key. ConfigError names what is wrong, never a secret."""
    keys: list[tuple[str, bytes]] = []
    for item in (piece.strip() for piece in text.split(",")):
        if not item:
            continue
        kid, sep, secret = item.partition(":")
        if not sep or not SIGNING_KEY_ID.match(kid):
            raise ConfigError("signing keys must look like <key id>:<secret>, key ids of letters, digits, "
                              "'.', '_' or '-'")
        if len(secret) < MIN_SIGNING_SECRET_LENGTH:
            raise ConfigError(f"signing key {kid!r} is shorter than {MIN_SIGNING_SECRET_LENGTH} characters")
        if kid in dict(keys):
            raise ConfigError(f"signing key id {kid!r} appears twice")
        keys.append((kid, secret.encode()))
    return keys


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    parse: Callable[[str], Any]
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return "SAGESTORE_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def metavar(self) -> str:
        """What --help and docs/configuration.md show as the value, derived from the parser."""
        if hasattr(self.parse, "choices"):
            return "|".join(self.parse.choices)
        for parser, shown in _METAVARS:
            if self.parse is parser:
                return shown
        for suffix, shown in (("_url", "URL"), ("_endpoint", "URL"), ("_dir", "DIR"), ("_file", "FILE"),
                              ("_key", "KEY"), ("_secret", "SECRET"), ("_password", "PASSWORD")):
            if self.name.endswith(suffix):
                return shown
        return "TEXT"

    def convert(self, raw: str) -> Any:
        """The typed value of a flag or env var; ValueError with a readable message."""
        return (_int if self.parse is int else self.parse)(raw)

    def shown_default(self) -> str:
        default = self.default
        if isinstance(default, tuple):
            return ",".join(default)
        if isinstance(default, bool):
            return str(default).lower()
        if self.parse is _size and isinstance(default, int):
            return _format_size(default)
        if self.parse is _duration and isinstance(default, float):
            return _format_duration(default)
        return str(default)


OPTIONS: list[Option] = [
    Option("data_dir", "./sagestore-data", str, "directory for embedded PostgreSQL, SeaweedFS and generated secrets"),
    Option("host", "127.0.0.1", str, "address the HTTP server binds to"),
    Option("port", 8080, _port, "port the HTTP server listens on"),
    Option("s3_api_port", 9000, _port,
           "port of the S3-compatible API, on the same host as the main API (path-style addressing, and "
           "virtual-hosted-style with --s3-domain; 0 turns it off)"),
    Option("s3_domain", "", str,
           "also serve virtual-hosted-style S3 requests, Host <bucket>.<this domain> (e.g. s3.example.org, with "
           "a wildcard DNS record): the default of the AWS SDKs for JavaScript, Go and Java and of DuckDB; "
           "empty: path-style only"),
    Option("s3_key_max_lifetime", 90 * 86400.0, _duration,
           "longest lifetime of an S3 access key (a key also never outlives the SAGE token it was made with)"),
    Option("request_trailers", True, _bool,
           "parse requests with aiohttp's pure-Python parser, which keeps chunked-body trailers (tus "
           "checksum-trailer); false uses its C parser: a tenth more small requests per second, no checksum-trailer"),
    Option("log_level", "info", _choice("debug", "info", "warning", "error"), "log level"),
    Option("database_url", "", str, "PostgreSQL URL; empty starts embedded PostgreSQL in the data dir", secret=True),
    Option("db_pool_size", 10, int, "maximum PostgreSQL connections per instance"),
    Option("db_timeout", 10.0, _duration,
           "bound of every wait on PostgreSQL: connecting, each statement (also its server-side "
           "statement_timeout) and waiting for a pooled connection; past it the request gets 503 + Retry-After"),
    Option("acl_cache_ttl", 5.0, _duration,
           "seconds a bucket's ACL stays cached (a backstop: changes invalidate it at once; 0 disables the cache)"),
    Option("storage_backend", "s3", _choice("s3", "memory"),
           "where the bytes live: s3 (the S3 endpoint below, or embedded SeaweedFS), or memory (this process's "
           "memory, lost when it exits: for tests and development; no presigned URLs)"),
    Option("s3_endpoint", "", str, "S3 endpoint URL; empty starts embedded SeaweedFS in the data dir"),
    Option("s3_access_key", "", str, "S3 access key (required with --s3-endpoint)", secret=True),
    Option("s3_secret_key", "", str, "S3 secret key (required with --s3-endpoint)", secret=True),
    Option("s3_region", "us-east-1", str, "S3 region used for signing"),
    Option("s3_bucket_prefix", "sagedata-", str, "prefix of the hashed S3 bucket names"),
    Option("s3_bucket_count", 256, int, "number of hashed S3 buckets (1-256); bucket = prefix + 2 hex digits"),
    Option("s3_single_bucket", "", str, "put everything in this one S3 bucket instead of hashed buckets"),
    Option("s3_create_buckets", True, _bool, "create missing S3 buckets at start-up"),
    Option("s3_part_size", 16 * 2**20, _size, "part size for streamed uploads (>= 5MiB)"),
    Option("s3_parts_in_flight", 4, int, "parts uploaded concurrently per streamed upload"),
    Option("s3_transfers_in_flight", 16, int,
           "part and object uploads this instance sends to S3 at once; more wait here, holding their "
           "buffered bytes, for at most s3_read_timeout x s3_max_attempts (then 503)"),
    Option("s3_single_copy_limit", 5 * 2**30, _size,
           "largest object copied with one CopyObject (AWS: 5GiB; embedded SeaweedFS: unlimited, it copies metadata only)"),
    Option("s3_sign_payload", False, _bool,
           "SigV4-sign every byte sent to S3 (sha256, ~1/3 of upload CPU); false sends UNSIGNED-PAYLOAD "
           "and protects each part and PUT with a signed x-amz-checksum-crc32c (or the upload's own checksum)"),
    Option("s3_connect_timeout", 5.0, _duration, "bound of connecting to S3, per attempt"),
    Option("s3_read_timeout", 15.0, _duration,
           "how long S3 may stay silent after a request, or leave sent bytes unacknowledged (TCP_USER_TIMEOUT), "
           "per attempt; then the call fails and the request gets 503 + Retry-After"),
    Option("s3_max_attempts", 2, int, "attempts per S3 call (botocore standard retries; 1 = no retry)"),
    Option("s3_stream_parts", True, _bool,
           "send an appended part (tus, IETF, offset chunks) to S3 while its bytes arrive, without the "
           "CRC32C known only at its end (integrity from TCP/TLS); false receives each part whole first"),
    Option("auth_mode", "jwt", _choice("jwt", "introspect", "noauth"), "how tokens are checked"),
    Option("jwt_secret", "", str, "HS256 secret; empty uses <data-dir>/jwt-secret, generated on first start", secret=True),
    Option("jwt_public_key_file", "", str, "PEM public key for RS*/ES* tokens (instead of a secret)"),
    Option("jwt_algorithms", ("HS256",), _csv, "comma-separated allowed JWT algorithms"),
    Option("jwt_audience", "sagestore", str, "required 'aud' claim (empty: not checked)"),
    Option("jwt_issuer", "sagestore", str, "required 'iss' claim (empty: not checked)"),
    Option("jwt_username_claim", "sub", str, "claim holding the user name"),
    Option("jwt_groups_claim", "groups", str, "claim holding the list of groups"),
    Option("token_info_url", "", str, "introspection endpoint (auth mode introspect)"),
    Option("token_info_user", "", str, "basic-auth user for the introspection endpoint"),
    Option("token_info_password", "", str, "basic-auth password for the introspection endpoint", secret=True),
    Option("token_info_timeout", 5.0, _duration, "timeout of one introspection call"),
    Option("token_info_cache_ttl", 60.0, _duration, "how long an introspection answer is cached"),
    Option("token_info_negative_cache_ttl", 10.0, _duration,
           "how long a rejected token stays rejected without asking the token service again (0: not cached)"),
    Option("upload_ttl", 48 * 3600.0, _duration, "lifetime of an unfinished upload"),
    Option("max_chunk_size", 150 * 10**6, _size, "largest chunk accepted by chunked upload APIs"),
    Option("max_upload_size", 5 * 2**40, _size, "largest file accepted"),
    Option("part_buffer_budget", 2 * 2**30, _size,
           "bytes all request bodies being buffered (parts, appends, plain PUTs) may hold at once in this instance; "
           "a request reserves its bytes as they arrive"),
    Option("budget_wait", 10.0, _duration,
           "longest a request waits for part-buffer budget (then 503) or for one of its user's uploads to end "
           "(then 429), both with Retry-After"),
    Option("uploads_per_user", 8, int,
           "body-carrying upload requests (parts, chunks, appends, plain PUTs) one user may have in flight per "
           "instance; more wait up to budget-wait for one to end, then get 429 with Retry-After"),
    Option("request_head_timeout", 20.0, _duration,
           "a request line and headers must arrive within this time once their first byte has (0: no limit)"),
    Option("keepalive_timeout", 75.0, _duration,
           "an idle connection (no request in progress) is closed after this long"),
    Option("body_grace", 20.0, _duration,
           "a request body may take this long plus 1/body-min-rate seconds per byte received; a slower one is cut "
           "off (408, or for an append the bytes received are kept)"),
    Option("body_min_rate", 500, _size,
           "the slowest request body accepted, in bytes per second on average after body-grace (0: no limit)"),
    Option("reaper_interval", 300.0, _duration, "seconds between reaper passes (0 disables the background reaper)"),
    Option("cors_origins", (), _csv, "comma-separated allowed CORS origins ('*' for any)"),
    Option("public_url", "", str,
           "base URL clients reach this server at, for every absolute URL it generates (share links, OSDU "
           "locations); empty: http://<address>:<port> the connection reached, never the Host header"),
    Option("signing_keys", "", str,
           "signed-URL keys as comma-separated <key id>:<secret> (>= 32 characters); the first signs, all "
           "verify; empty uses <data-dir>/signing-key, generated on first start", secret=True),
    Option("osdu_partitions", ("default-partition",), _csv,
           "OSDU File service data partitions; each is backed by one SAGE bucket, created at start-up"),
    Option("osdu_domain", "", str,
           "OSDU Entitlements domain: a group <role>@<partition>.<domain> is a file role in that partition "
           "(besides <role>@<partition> and a bare <role>); empty: no domain form"),
]
OPTION_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Settings:
    data_dir: str = "./sagestore-data"
    host: str = "127.0.0.1"
    port: int = 8080
    s3_api_port: int = 9000
    s3_domain: str = ""
    s3_key_max_lifetime: float = 90 * 86400.0
    request_trailers: bool = True
    log_level: str = "info"
    database_url: str = field(default="", repr=False)
    db_pool_size: int = 10
    db_timeout: float = 10.0
    acl_cache_ttl: float = 5.0
    storage_backend: str = "s3"
    s3_endpoint: str = ""
    s3_access_key: str = field(default="", repr=False)
    s3_secret_key: str = field(default="", repr=False)
    s3_region: str = "us-east-1"
    s3_bucket_prefix: str = "sagedata-"
    s3_bucket_count: int = 256
    s3_single_bucket: str = ""
    s3_create_buckets: bool = True
    s3_part_size: int = 16 * 2**20
    s3_parts_in_flight: int = 4
    s3_transfers_in_flight: int = 16
    s3_single_copy_limit: int = 5 * 2**30
    s3_sign_payload: bool = False
    s3_connect_timeout: float = 5.0
    s3_read_timeout: float = 15.0
    s3_max_attempts: int = 2
    s3_stream_parts: bool = True
    auth_mode: str = "jwt"
    jwt_secret: str = field(default="", repr=False)
    jwt_public_key_file: str = ""
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_audience: str = "sagestore"
    jwt_issuer: str = "sagestore"
    jwt_username_claim: str = "sub"
    jwt_groups_claim: str = "groups"
    token_info_url: str = ""
    token_info_user: str = ""
    token_info_password: str = field(default="", repr=False)
    token_info_timeout: float = 5.0
    token_info_cache_ttl: float = 60.0
    token_info_negative_cache_ttl: float = 10.0
    upload_ttl: float = 48 * 3600.0
    max_chunk_size: int = 150 * 10**6
    max_upload_size: int = 5 * 2**40
    part_buffer_budget: int = 2 * 2**30
    budget_wait: float = 10.0
    uploads_per_user: int = 8
    request_head_timeout: float = 20.0
    keepalive_timeout: float = 75.0
    body_grace: float = 20.0
    body_min_rate: int = 500
    reaper_interval: float = 300.0
    cors_origins: tuple[str, ...] = ()
    public_url: str = ""
    signing_keys: str = field(default="", repr=False)
    osdu_partitions: tuple[str, ...] = ("default-partition",)
    osdu_domain: str = ""

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def validate(self, *, embedded_allowed: bool = True) -> "Settings":
        """Raise ConfigError for combinations no server could run with. Messages never quote secrets."""
        if self.s3_endpoint and not (self.s3_access_key and self.s3_secret_key):
            raise ConfigError("SAGESTORE_S3_ENDPOINT is set but SAGESTORE_S3_ACCESS_KEY or SAGESTORE_S3_SECRET_KEY is missing")
        if self.s3_endpoint and not re.match(r"^https?://[^/\s]+", self.s3_endpoint):
            raise ConfigError(f"SAGESTORE_S3_ENDPOINT must be an http(s) URL, got {self.s3_endpoint!r}")
        if self.database_url and not re.match(r"^postgres(ql)?://[^\s]*$", self.database_url):
            raise ConfigError("SAGESTORE_DATABASE_URL must be a postgresql:// URL")
        if not self.host.strip():
            raise ConfigError("SAGESTORE_HOST must not be empty")
        if self.s3_api_port and self.s3_api_port == self.port:
            raise ConfigError(f"SAGESTORE_S3_API_PORT must differ from SAGESTORE_PORT ({self.port})")
        if self.s3_key_max_lifetime <= 0:
            raise ConfigError("SAGESTORE_S3_KEY_MAX_LIFETIME must be more than 0")
        if self.db_pool_size < 1:
            raise ConfigError(f"SAGESTORE_DB_POOL_SIZE must be at least 1, got {self.db_pool_size}")
        if not 1 <= self.s3_bucket_count <= 256:
            raise ConfigError(f"SAGESTORE_S3_BUCKET_COUNT must be between 1 and 256, got {self.s3_bucket_count}")
        first_bucket = self.s3_bucket_prefix + "00"
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,59}", self.s3_bucket_prefix) or ".." in first_bucket \
                or ".-" in first_bucket:
            raise ConfigError(f"SAGESTORE_S3_BUCKET_PREFIX {self.s3_bucket_prefix!r} is not a valid S3 bucket name "
                              "prefix (lower-case letters, digits, '-' and '.'; at most 60 characters)")
        if self.s3_single_bucket and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.s3_single_bucket):
            raise ConfigError(f"SAGESTORE_S3_SINGLE_BUCKET {self.s3_single_bucket!r} is not a valid S3 bucket name")
        if self.s3_part_size < 5 * 2**20 or self.s3_part_size > 5 * 2**30:
            raise ConfigError("SAGESTORE_S3_PART_SIZE must be between 5MiB and 5GiB")
        if self.db_timeout <= 0 or self.s3_connect_timeout <= 0 or self.s3_read_timeout <= 0:
            raise ConfigError("SAGESTORE_DB_TIMEOUT, SAGESTORE_S3_CONNECT_TIMEOUT and SAGESTORE_S3_READ_TIMEOUT "
                              "must be more than 0")
        if self.s3_max_attempts < 1:
            raise ConfigError("SAGESTORE_S3_MAX_ATTEMPTS must be at least 1")
        if self.s3_transfers_in_flight < 1:
            raise ConfigError("SAGESTORE_S3_TRANSFERS_IN_FLIGHT must be at least 1")
        if self.s3_parts_in_flight < 1:
            raise ConfigError("SAGESTORE_S3_PARTS_IN_FLIGHT must be at least 1")
        if self.auth_mode == "introspect":
            if not re.match(r"^https?://[^/\s]+", self.token_info_url):
                raise ConfigError("auth mode introspect needs SAGESTORE_TOKEN_INFO_URL (an http(s) URL)")
            if self.token_info_timeout <= 0:
                raise ConfigError("SAGESTORE_TOKEN_INFO_TIMEOUT must be more than 0")
        if self.auth_mode == "jwt":
            if not self.jwt_algorithms:
                raise ConfigError("SAGESTORE_JWT_ALGORITHMS must name at least one algorithm")
            for algorithm in self.jwt_algorithms:
                if algorithm.lower() == "none" or not re.fullmatch(r"(HS|RS|ES|PS)(256|384|512)|EdDSA", algorithm):
                    raise ConfigError(f"SAGESTORE_JWT_ALGORITHMS: {algorithm!r} is not an allowed JWT algorithm")
            symmetric = [a for a in self.jwt_algorithms if a.startswith("HS")]
            if self.jwt_public_key_file:
                if not Path(self.jwt_public_key_file).is_file():
                    raise ConfigError(f"SAGESTORE_JWT_PUBLIC_KEY_FILE {self.jwt_public_key_file!r} does not exist")
                if symmetric:  # a public key used as an HMAC secret would let anyone sign tokens
                    raise ConfigError("SAGESTORE_JWT_ALGORITHMS: HS* algorithms cannot be used with a public key file")
            else:
                if len(symmetric) != len(self.jwt_algorithms):
                    raise ConfigError("SAGESTORE_JWT_ALGORITHMS: RS*/ES*/PS*/EdDSA need SAGESTORE_JWT_PUBLIC_KEY_FILE")
                if self.jwt_secret and len(self.jwt_secret) < 32:
                    raise ConfigError("SAGESTORE_JWT_SECRET must be at least 32 characters long")
        if self.upload_ttl <= 0:
            raise ConfigError("SAGESTORE_UPLOAD_TTL must be more than 0")
        if self.max_chunk_size < 1 or self.max_upload_size < 1:
            raise ConfigError("SAGESTORE_MAX_CHUNK_SIZE and SAGESTORE_MAX_UPLOAD_SIZE must be more than 0")
        if self.public_url and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", self.public_url):
            raise ConfigError(f"SAGESTORE_PUBLIC_URL must be an http(s) URL without query, got {self.public_url!r}")
        for partition in self.osdu_partitions:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", partition):
                raise ConfigError(f"SAGESTORE_OSDU_PARTITIONS: {partition!r} is not a partition id (lower-case "
                                  "letters, digits and '-')")
        if self.s3_domain and not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                                               r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*", self.s3_domain):
            raise ConfigError(f"SAGESTORE_S3_DOMAIN {self.s3_domain!r} is not a domain name (no port: any port is "
                              "served)")
        if self.osdu_domain and not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                                                 r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*", self.osdu_domain):
            raise ConfigError(f"SAGESTORE_OSDU_DOMAIN {self.osdu_domain!r} is not a domain name")
        if self.storage_backend not in ("s3", "memory"):
            raise ConfigError(f"SAGESTORE_STORAGE_BACKEND must be s3 or memory, got {self.storage_backend!r}")
        if self.signing_keys:
            parse_signing_keys(self.signing_keys)
        if self.part_buffer_budget < max(self.max_chunk_size, (self.s3_parts_in_flight + 1) * self.s3_part_size):
            raise ConfigError("SAGESTORE_PART_BUFFER_BUDGET must hold at least one largest chunk "
                              "(SAGESTORE_MAX_CHUNK_SIZE) and (SAGESTORE_S3_PARTS_IN_FLIGHT + 1) parts of "
                              "SAGESTORE_S3_PART_SIZE")
        if self.uploads_per_user < 1:
            raise ConfigError("SAGESTORE_UPLOADS_PER_USER must be at least 1")
        if self.keepalive_timeout <= 0:
            raise ConfigError("SAGESTORE_KEEPALIVE_TIMEOUT must be more than 0")
        for name in ("budget_wait", "request_head_timeout", "keepalive_timeout", "body_grace", "body_min_rate"):
            if getattr(self, name) < 0:
                raise ConfigError(f"SAGESTORE_{name.upper()} must not be negative")
        if not embedded_allowed and not (self.database_url and (self.s3_endpoint or self.storage_backend == "memory")):
            raise ConfigError("this command needs SAGESTORE_DATABASE_URL and SAGESTORE_S3_ENDPOINT, or a running embedded data dir")
        return self


def add_arguments(parser: argparse.ArgumentParser, names: list[str] | None = None) -> None:
    """Add one flag per option; the default is None so that env vars can fill gaps."""
    for option in OPTIONS:
        if names is not None and option.name not in names:
            continue
        shown = repr(option.shown_default()) if option.shown_default() else "empty"
        parser.add_argument(option.flag, dest=option.name, default=None, metavar=option.metavar,
                            help=f"{option.help} [env {option.env}, default {shown}]")


def load_settings(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Flags win over env vars, env vars over defaults. Raises ConfigError."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = getattr(args, option.name, None) if args is not None else None
        source = option.flag
        if raw is None and option.env in environ:
            raw, source = environ[option.env], option.env
        if raw is None:
            continue
        try:
            values[option.name] = option.convert(raw)
        except (ValueError, TypeError) as error:
            if option.secret:  # the message of a failed parse may quote the value
                raise ConfigError(f"{source}: not a valid value (hidden)") from None
            raise ConfigError(f"{source}: {error}") from None
    return Settings(**values).validate()


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def markdown_table() -> str:
    """The configuration table of docs/configuration.md, generated from OPTIONS like --help is."""
    lines = ["| Flag | Environment variable | Default | Meaning |", "|---|---|---|---|"]
    for option in OPTIONS:
        default = option.shown_default()
        shown = f"`{default}`" if default else "(empty)"
        lines.append(f"| `{option.flag} {_markdown_cell(option.metavar)}` | `{option.env}` | {_markdown_cell(shown)} "
                     f"| {_markdown_cell(option.help)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m sagestore.config --markdown` prints the table of docs/configuration.md."""
    parser = argparse.ArgumentParser(prog="python -m sagestore.config")
    parser.add_argument("--markdown", action="store_true", help="print the configuration table of docs/configuration.md")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table())
    else:
        for option in OPTIONS:
            print(f"{option.env}={option.shown_default()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
