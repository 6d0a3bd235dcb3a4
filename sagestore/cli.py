"""The `sagestore` command: serve, migrate, reap, token (the client commands live in client/cli.py).

A bad setting or a backend that cannot be used at start-up ends the command with ONE
line on stderr, `sagestore: error: ...`, and exit status 2; never a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import socket
import sys
import time
from typing import NoReturn

from .config import ConfigError, Settings, add_arguments, load_settings

log = logging.getLogger("sagestore")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other configuration error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"sagestore: error: {message} (see {self.prog} --help)\n")


# C0 and C1 controls, DEL, line and paragraph separators, bidi controls: a client's path,
# user name or header value must not start a forged log line or reorder what a reader sees
_UNSAFE_IN_LOGS = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def escape_for_log(text: str) -> str:
    return _UNSAFE_IN_LOGS.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


class EscapingFormatter(logging.Formatter):
    """Escapes control characters in every log message (its arguments come from clients:
    paths, user names, error text); only our own tracebacks keep their line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_for_log(super().formatMessage(record))


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # botocore and aiohttp client debug logs print request headers, i.e. signatures and tokens
    for noisy in ("botocore", "aiobotocore", "urllib3", "asyncio", "aiohttp.client", "aiohttp.internal"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def check_port_free(host: str, port: int) -> None:
    """Fail before any backend starts when the HTTP port is taken."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def database_location(url: str) -> str:
    """host:port/database of a PostgreSQL URL, without user or password."""
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"
    except ValueError:
        return "the configured URL"


def startup_failure(error: BaseException, settings: Settings) -> str | None:
    """One readable line for a backend that cannot be used at start-up, or None for a bug.
    The messages name hosts and ports, never passwords (psycopg2 and botocore leave them out)."""
    import psycopg2
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(error, psycopg2.Error):
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"cannot use PostgreSQL at {database_location(settings.database_url)}: {first_line}"
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "unknown")
        return f"cannot use S3 at {settings.s3_endpoint}: {code}"
    if isinstance(error, BotoCoreError):
        return f"cannot use S3 at {settings.s3_endpoint}: {type(error).__name__}"
    if isinstance(error, (TimeoutError, ConnectionError)):
        return f"a backend did not answer at start-up: {type(error).__name__}"
    if isinstance(error, OSError):
        return f"{error.strerror or type(error).__name__}: {error.filename or ''}".rstrip(": ")
    return None


async def serve(settings: Settings) -> None:
    started = time.monotonic()
    check_port_free(settings.host, settings.port)  # before the slow imports and any child process

    from .embedded import embedded_backends

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with embedded_backends(settings, stop=stop) as settings:
        if stop.is_set():
            return
        # imported only now: the embedded backends boot meanwhile, and the readiness
        # checks have already loaded the heavy parts (botocore, psycopg2)
        from aiohttp import web

        from .app import AccessLogger, create_app
        from .trailers import Runner
        app = create_app(settings)
        runner = Runner(app, trailers=settings.request_trailers, access_log_class=AccessLogger,
                        handle_signals=False, shutdown_timeout=10)
        try:
            try:
                await runner.setup()
            except Exception as error:  # noqa: BLE001 - mapped to one line below, or re-raised
                message = startup_failure(error, settings)
                if message is None:
                    raise
                raise ConfigError(message) from None
            site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
            try:
                await site.start()
            except OSError as error:
                raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {error.strerror}") from None
            port = runner.addresses[0][1] if settings.port == 0 and runner.addresses else settings.port
            url = f"http://{settings.host}:{port}"
            print(f"sagestore ready in {time.monotonic() - started:.2f}s at {url}/api/v1/", flush=True)
            if settings.auth_mode == "jwt" and not settings.jwt_public_key_file:
                print(f"get a token: TOKEN=$(sagestore token <user> --data-dir {settings.data_dir} | tail -n 1)",
                      flush=True)
                print(f"then: curl -H \"Authorization: Bearer $TOKEN\" {url}/api/v1/objects", flush=True)
                print(f"web console: {url}/ui/ (sign-in link: sagestore token <user> --link --url {url} "
                      f"--data-dir {settings.data_dir})", flush=True)
            elif settings.auth_mode == "noauth":
                print(f"auth is OFF: curl -H \"Authorization: sage user:<name>\" {url}/api/v1/objects", flush=True)
            await stop.wait()
            print("sagestore stopping", flush=True)
        finally:
            await runner.cleanup()


async def run_migrations(settings: Settings) -> None:
    from .db import close_pool, create_pool
    from .db.migrate import current_version, migrate
    from .embedded import embedded_backends

    async with embedded_backends(settings, s3=False) as settings:
        try:
            pool = await create_pool(settings.database_url, 2)
        except Exception as error:  # noqa: BLE001
            message = startup_failure(error, settings)
            if message is None:
                raise
            raise ConfigError(message) from None
        try:
            applied = await migrate(pool)
            print(f"applied {len(applied)} migrations; schema version {await current_version(pool)}")
        finally:
            await close_pool(pool)


async def reap_once(settings: Settings, orphan_grace: float | None) -> dict[str, int]:
    """One reaper pass, as every server runs in the background (see uploads.engine.reap)."""
    from .db import close_pool, create_pool
    from .db.migrate import migrate
    from .embedded import embedded_backends
    from .metrics import Metrics
    from .storage import BucketMapping, open_object_store
    from .uploads import UploadEngine

    async with embedded_backends(settings) as settings:
        try:
            pool = await create_pool(settings.database_url, 2)
            try:
                await migrate(pool)
                async with open_object_store(endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
                                             secret_key=settings.s3_secret_key, region=settings.s3_region,
                                             sign_payload=settings.s3_sign_payload) as store:
                    mapping = BucketMapping(settings.s3_bucket_prefix, settings.s3_bucket_count,
                                            settings.s3_single_bucket)
                    engine = UploadEngine(pool, store, mapping, settings, Metrics(), orphan_grace=orphan_grace)
                    return await engine.reap()
            finally:
                await close_pool(pool)
        except Exception as error:  # noqa: BLE001 - a backend that cannot be used: one line, else a bug
            message = startup_failure(error, settings)
            if message is None:
                raise
            raise ConfigError(message) from None


def console_link(settings: Settings, token: str, base_url: str | None) -> str:
    """The web console with the token in the fragment (#token=): browsers never send a fragment
    to a server, so it stays out of access logs and proxies."""
    if not base_url:
        host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        base_url = f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}"
    return f"{base_url.rstrip('/')}/ui/#token={token}"


def print_token(settings: Settings, user: str, groups: list[str], ttl: float, link: bool = False,
                base_url: str | None = None) -> None:
    from .auth.tokens import mint_token
    if settings.auth_mode != "jwt" or settings.jwt_public_key_file:
        raise ConfigError("sagestore token mints HS256 tokens; it needs auth mode jwt with a shared secret")
    if not user.strip():
        raise ConfigError("the user name must not be empty")
    token = mint_token(settings, user, groups, ttl)
    if link:
        print(f"# web console signed in as {user!r}, valid {ttl:.0f}s; open in a browser:", file=sys.stderr)
        print(console_link(settings, token, base_url))
        return
    print(f"# token for {user!r}, valid {ttl:.0f}s; use: Authorization: Bearer <token>", file=sys.stderr)
    print(token)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = OneLineParser(prog="sagestore", description="sagestore object store server",
                           epilog="client commands: cp, ls, rm, mb, rb, sync, share, perm, uploads, storage "
                                  "(sagestore cp --help, ...)")
    parser.add_argument("--version", action="version", version=f"sagestore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    serve_parser = commands.add_parser("serve", help="run the server (embedded backends unless configured)",
                                       description="Run the HTTP server. Every option also reads SAGESTORE_<NAME>; "
                                                   "a flag wins over its env var.")
    add_arguments(serve_parser)
    migrate_parser = commands.add_parser("migrate", help="apply database migrations")
    add_arguments(migrate_parser, ["data_dir", "database_url", "log_level"])
    reap_parser = commands.add_parser(
        "reap", help="run one reaper pass and print what it cleaned up",
        description="Expire uploads past their lifetime (aborting their S3 multipart uploads and deleting staging "
                    "objects), then abort S3 multipart uploads and delete staging objects no upload knows about.")
    reap_parser.add_argument("--orphan-grace", default=None, metavar="DURATION",
                             help="only sweep unknown S3 multipart uploads and staging objects older than this "
                                  "(default: the upload TTL, at least 24h; 0 also aborts multipart uploads that "
                                  "object PUTs have in flight right now)")
    add_arguments(reap_parser, ["data_dir", "database_url", "s3_endpoint", "s3_access_key", "s3_secret_key",
                                "s3_region", "s3_bucket_prefix", "s3_bucket_count", "s3_single_bucket",
                                "upload_ttl", "log_level"])
    token_parser = commands.add_parser("token", help="print a JWT the server on this data dir accepts")
    token_parser.add_argument("user")
    token_parser.add_argument("--group", action="append", default=[], help="group claim (repeatable)")
    token_parser.add_argument("--ttl", default="24h", help="lifetime, e.g. 3600, 15m, 24h, 7d")
    token_parser.add_argument("--link", action="store_true",
                              help="print a web console link that signs in with the token (/ui/#token=...)")
    token_parser.add_argument("--url", default=None, metavar="BASE",
                              help="with --link: the server's base URL (default http://<host>:<port>)")
    add_arguments(token_parser, ["data_dir", "host", "port", "auth_mode", "jwt_secret", "jwt_public_key_file", "jwt_audience",
                                 "jwt_issuer", "jwt_username_claim", "jwt_groups_claim"])
    return parser


def main(argv: list[str] | None = None) -> int:
    from .client import cli as client_cli  # cp, ls, rm, mb, rb, sync, share, perm, uploads, storage ...
    if client_cli.handles(sys.argv[1:] if argv is None else argv):
        return client_cli.main(argv)
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args)
        setup_logging(settings.log_level)
        if args.command == "serve":
            asyncio.run(serve(settings))
        elif args.command == "migrate":
            asyncio.run(run_migrations(settings))
        elif args.command == "reap":
            from .config import _duration
            try:
                grace = None if args.orphan_grace is None else _duration(args.orphan_grace)
            except ValueError as error:
                raise ConfigError(f"--orphan-grace: {error}") from None
            counts = asyncio.run(reap_once(settings, grace))
            print(" ".join(f"{name}={count}" for name, count in counts.items()), flush=True)
        elif args.command == "token":
            from .config import _duration
            try:
                ttl = _duration(args.ttl)
            except ValueError as error:
                raise ConfigError(f"--ttl: {error}") from None
            if ttl <= 0:
                raise ConfigError("--ttl must be more than 0")
            print_token(settings, args.user, args.group, ttl, link=args.link, base_url=args.url)
    except ConfigError as error:
        print(f"sagestore: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an unusable data dir or file: the path says what to fix
        where = f": {error.filename}" if error.filename else ""
        print(f"sagestore: error: {error.strerror or type(error).__name__}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
