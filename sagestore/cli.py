"""The `sagestore` command: serve, migrate, reap, token (the client commands live in client/cli.py).

A bad setting or a backend that cannot be used at start-up ends the command with ONE
line on stderr, `sagestore: error: ...`, and exit status 2; never a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
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
    paths, user names, error text); only our own tracebacks keep their line breaks.
    The date and time of a second are formatted once (the access log writes a line per request)."""

    _second: int | None = None
    _second_text = ""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_for_log(super().formatMessage(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return self.default_msec_format % (self._second_text, record.msecs)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # no record needs its caller's file and line, thread or process (the format shows none of
    # them); the logging HOWTO's "Optimization" section: each costs every log call
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
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

    from .storage import StorageError
    from .storage.errors import UNREACHABLE

    if isinstance(error, psycopg2.Error):
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"cannot use PostgreSQL at {database_location(settings.database_url)}: {first_line}"
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "unknown")
        return f"cannot use S3 at {settings.s3_endpoint}: {code}"
    if isinstance(error, BotoCoreError):
        return f"cannot use S3 at {settings.s3_endpoint}: {type(error).__name__}"
    if isinstance(error, StorageError):  # its code; for no answer at all, the name of what failed
        detail = error.message.partition(":")[0] if error.code == UNREACHABLE else error.code
        return f"cannot use S3 at {settings.s3_endpoint}: {detail}"
    if isinstance(error, (TimeoutError, ConnectionError)):
        return f"a backend did not answer at start-up: {type(error).__name__}"
    if isinstance(error, OSError):
        return f"{error.strerror or type(error).__name__}: {error.filename or ''}".rstrip(": ")
    return None


async def serve(settings: Settings) -> None:
    started = time.monotonic()
    check_port_free(settings.host, settings.port)  # before the slow imports and any child process
    check_port_free(settings.host, settings.s3_api_port)

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
        from .s3api.app import create_s3_app
        from .trailers import Runner
        app = create_app(settings)
        runner = Runner(app, trailers=settings.request_trailers, access_log_class=AccessLogger,
                        handle_signals=False, shutdown_timeout=10)
        # the S3 door: its aws-chunked trailers are inside the body, so aiohttp's C parser serves it
        s3_runner = Runner(create_s3_app(app), trailers=False, access_log_class=AccessLogger,
                           handle_signals=False, shutdown_timeout=10) if settings.s3_api_port else None
        s3_started = False
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
            s3_url = None
            if s3_runner is not None:
                s3_started = True
                await s3_runner.setup()
                try:
                    await web.TCPSite(s3_runner, settings.host, settings.s3_api_port, reuse_address=True).start()
                except OSError as error:
                    raise ConfigError(f"cannot listen on {settings.host}:{settings.s3_api_port} (S3 API): "
                                      f"{error.strerror}") from None
                s3_url = f"http://{settings.host}:{settings.s3_api_port}"
            print(f"sagestore ready in {time.monotonic() - started:.2f}s at {url}/api/v1/", flush=True)
            record = None
            if s3_url:
                style = f"path-style, and virtual-hosted-style under {settings.s3_domain}" if settings.s3_domain \
                    else "path-style"
                print(f"S3 API at {s3_url} ({style}; keys: sagestore keys create)", flush=True)
            if settings.auth_mode == "jwt" and not settings.jwt_public_key_file:
                me = program()
                data_dir = shlex.quote(str(Path(settings.data_dir).expanduser().absolute()))  # valid from anywhere
                print(f"get a token: TOKEN=$({me} token <user> --data-dir {data_dir} | tail -n 1)", flush=True)
                print(f"then: curl -H \"Authorization: Bearer $TOKEN\" {url}/api/v1/objects", flush=True)
                print(f"or sign the CLI in: {me} token <user> --data-dir {data_dir} | {me} login --url {url}",
                      flush=True)
                print(f"web console: {url}/ui/ (sign-in link: {me} token <user> --link --url {url} "
                      f"--data-dir {data_dir})", flush=True)
                if not settings.jwt_secret:  # `sagestore token` elsewhere can find this data dir's secret
                    local = f"http://127.0.0.1:{port}" if settings.host in ("0.0.0.0", "::", "") else url
                    record = record_local_server(local, settings.data_path)
            elif settings.auth_mode == "noauth":
                print(f"auth is OFF: curl -H \"Authorization: sage user:<name>\" {url}/api/v1/objects", flush=True)
            try:
                await stop.wait()
            finally:
                forget_local_server(record)
            print("sagestore stopping", flush=True)
        finally:
            if s3_started:
                await s3_runner.cleanup()
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


# ---------------------------------------------------------------------- finding the server's data dir
def program() -> str:
    """How to run this same `sagestore` from another shell: the bare name when PATH finds this very
    script, else its full path (a venv that is not activated), else `python -m sagestore`."""
    candidates = [Path(sys.argv[0])] if Path(sys.argv[0]).name == "sagestore" else []
    candidates.append(Path(sys.executable).parent / "sagestore")
    on_path = shutil.which("sagestore")
    for script in candidates:
        if script.is_file():
            if on_path and Path(on_path).resolve() == script.resolve():
                return "sagestore"
            return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(sys.executable)} -m sagestore"


def local_servers_dir() -> Path:
    """Where running servers note their URL and data dir for `sagestore token`: the user's runtime
    dir ($XDG_RUNTIME_DIR/sagestore), else $XDG_STATE_HOME/sagestore/servers (~/.local/state)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "sagestore"
    state = os.environ.get("XDG_STATE_HOME", "")
    base = Path(state) if os.path.isabs(state) else Path(os.path.expanduser("~")) / ".local" / "state"
    return base / "sagestore" / "servers"


def record_local_server(url: str, data_dir: Path) -> Path | None:
    """A note (0600, in a 0700 dir) that this process serves url from data_dir; None if it cannot
    be written (a read-only home must not stop the server)."""
    folder = local_servers_dir()
    path = folder / f"{url.rsplit(':', 1)[-1]}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch = folder / f".{os.getpid()}.tmp"
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"url": url, "data_dir": str(data_dir), "pid": os.getpid()}, handle)
        os.replace(scratch, path)
        return path
    except OSError as error:
        log.debug("cannot note this server for `sagestore token`: %s", error.strerror)
        return None


def forget_local_server(path: Path | None) -> None:
    if path is None:
        return
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def running_local_servers() -> list[dict[str, str]]:
    """The notes of servers still running (their process is alive and the data dir has a secret)."""
    found = []
    for path in sorted(local_servers_dir().glob("*.json")):
        try:
            note = json.loads(path.read_text())
            os.kill(int(note["pid"]), 0)
        except PermissionError:
            pass  # alive, another user's process
        except ProcessLookupError:  # a server killed without its clean stop: its note goes too
            path.unlink(missing_ok=True)
            continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if isinstance(note.get("data_dir"), str) and (Path(note["data_dir"]) / "jwt-secret").is_file():
            found.append(note)
    return found


def read_data_dir_secret(data_dir: Path) -> str:
    path = data_dir / "jwt-secret"
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ConfigError(f"{path} is empty or too short; the server regenerates it when it is deleted")
    return secret


def server_for_token(settings: Settings, data_dir_given: bool) -> tuple[Settings, str | None]:
    """The settings with the secret of the server's data dir, and that server's URL when known.
    Looks at --data-dir / SAGESTORE_DATA_DIR when given, else ./sagestore-data, else the one running
    local server; never creates a data dir or a secret (a fresh one would sign tokens no server
    accepts)."""
    if settings.jwt_secret:
        return settings, None
    running = running_local_servers()

    def url_of(data_dir: Path) -> str | None:
        return next((note["url"] for note in running if Path(note["data_dir"]).resolve() == data_dir.resolve()),
                    None)
    if data_dir_given:
        try:
            os.stat(settings.data_path)
        except OSError as error:
            raise ConfigError(f"cannot use the data dir {settings.data_path}: {error.strerror} (pass the --data-dir "
                              "`sagestore serve` printed)") from None
        if not (settings.data_path / "jwt-secret").is_file():
            raise ConfigError(f"{settings.data_path} holds no jwt-secret: it is not the data dir of a sagestore "
                              "server that ran (pass the --data-dir `sagestore serve` printed)")
        return settings.replace(jwt_secret=read_data_dir_secret(settings.data_path)), url_of(settings.data_path)
    here = settings.data_path
    if (here / "jwt-secret").is_file():
        return settings.replace(jwt_secret=read_data_dir_secret(here)), url_of(here)
    if len(running) == 1:
        data_dir = Path(running[0]["data_dir"])
        return (settings.replace(data_dir=str(data_dir), jwt_secret=read_data_dir_secret(data_dir)),
                running[0]["url"])
    if running:
        choices = ", ".join(f"{note['url']} (--data-dir {note['data_dir']})" for note in running)
        raise ConfigError(f"several sagestore servers run here: {choices}; pass the --data-dir of the one to use")
    raise ConfigError(f"no sagestore data dir found: looked in {here} and for a running `sagestore serve` "
                      f"(notes in {local_servers_dir()}); pass --data-dir DIR (the one `sagestore serve` "
                      "printed) or set SAGESTORE_DATA_DIR")


def console_link(settings: Settings, token: str, base_url: str | None) -> str:
    """The web console with the token in the fragment (#token=): browsers never send a fragment
    to a server, so it stays out of access logs and proxies."""
    if not base_url:
        host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        base_url = f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}"
    return f"{base_url.rstrip('/')}/ui/#token={token}"


def print_token(settings: Settings, user: str, groups: list[str], ttl: float, link: bool = False,
                base_url: str | None = None, data_dir_given: bool = True) -> None:
    from .auth.tokens import mint_token, refuse_reserved_name
    if settings.auth_mode != "jwt" or settings.jwt_public_key_file:
        raise ConfigError("sagestore token mints HS256 tokens; it needs auth mode jwt with a shared secret")
    if not user.strip():
        raise ConfigError("the user name must not be empty")
    refuse_reserved_name(user)  # said before looking for the data dir: no data dir makes it mintable
    settings, server_url = server_for_token(settings, data_dir_given)
    base_url = base_url or server_url
    token = mint_token(settings, user, groups, ttl)
    if link:
        print(f"# web console signed in as {user!r}, valid {ttl:.0f}s; open in a browser:", file=sys.stderr)
        print(console_link(settings, token, base_url))
        return
    print(f"# token for {user!r}, valid {ttl:.0f}s; use: Authorization: Bearer <token>", file=sys.stderr)
    print(token)


SERVER_COMMANDS = ("serve", "migrate", "reap", "token")

OVERVIEW = """usage: sagestore COMMAND [options]      (sagestore COMMAND --help tells more)

sagestore stores ML models and training data: a server (SAGE storage API, resumable uploads, OSDU,
a web console at /ui/) and its command-line client.

server commands:
  serve          run the server (embedded PostgreSQL and SeaweedFS under ./sagestore-data unless configured)
  token USER     print a token (or with --link a console sign-in link) the local server accepts
  migrate        apply database migrations
  reap           run one cleanup pass (expired uploads, orphaned S3 multipart uploads)

signing the client in:
  login          check a token with the server and keep it (with the URL) in a profile
  logout         forget a profile's token

file commands:
  cp             copy files to sage://BUCKET_ID/KEY or back (-r for folders); resumes, checks sha256
  ls             list your buckets, or the files under sage://BUCKET_ID/prefix
  rm             delete a file (-r: every file under a prefix)
  sync           upload the files of a folder that are missing or changed
  uploads        list or abort unfinished uploads

buckets:
  mb             make a bucket (prints its id)
  rb             remove a bucket and all its files

sharing:
  share          a share link for a file: share [create] sage://..., share list, share revoke ID
  keys           S3 access keys for the S3 API (port 9000): keys create|list|revoke|credential-process

permissions:
  perm           show, grant or revoke permissions; make a bucket public or private

sage-cli compatibility:
  storage        sage-cli's commands: storage bucket|permissions|files ...

first steps (with `sagestore serve` running in another terminal):
  sagestore token alice | sagestore login
  sagestore mb --type model --name my-models                 prints sage://BUCKET_ID
  sagestore cp weights.safetensors sage://BUCKET_ID/v1/
  sagestore ls sage://BUCKET_ID/v1/
  sagestore share sage://BUCKET_ID/v1/weights.safetensors --expires 1d
  sagestore cp sage://BUCKET_ID/v1/weights.safetensors ./copy.safetensors

The client connects to --url, else SAGESTORE_URL, else the profile's URL (--profile, SAGESTORE_PROFILE,
else "default", in ~/.config/sagestore/config.toml), else http://127.0.0.1:8080.
Exit status: 0 done, 1 an operation failed, 2 a usage or configuration error.
"""


def unknown_command(word: str) -> int:
    from .client.cli import COMMANDS
    known = SERVER_COMMANDS + COMMANDS
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    print(f"sagestore: error: unknown command {escape_for_log(word)!r}{hint} (commands: {', '.join(known)}; "
          "see sagestore --help)", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .auth.tokens import CLOCK_SKEW_LEEWAY as CLOCK_SKEW_SECONDS
    parser = OneLineParser(prog="sagestore", description="sagestore object store server",
                           epilog="client commands: cp, ls, rm, mb, rb, sync, share, perm, uploads, keys, storage "
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
    token_parser = commands.add_parser(
        "token", help="print a JWT the local server accepts",
        description="Print a token (HS256 JWT) signed with the jwt-secret of the server's data dir: the one "
                    "given by --data-dir or SAGESTORE_DATA_DIR, else ./sagestore-data, else the data dir of the "
                    "one `sagestore serve` running on this machine. It never creates a data dir or a secret.",
        epilog="examples:\n  sagestore token alice | sagestore login          sign the CLI in as alice\n"
               "  sagestore token alice --link                      a console link that signs in as alice\n"
               "  TOKEN=$(sagestore token bob --group ml --ttl 1h)  for curl: -H \"Authorization: Bearer $TOKEN\"\n"
               f"A token is accepted up to {CLOCK_SKEW_SECONDS} s past its lifetime (clock skew).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    token_parser.add_argument("user", help="the user name the token carries (sub claim)")
    token_parser.add_argument("--group", action="append", default=[], help="group claim (repeatable)")
    token_parser.add_argument("--ttl", default="24h", help="lifetime, e.g. 3600, 15m, 24h, 7d (default 24h)")
    token_parser.add_argument("--link", action="store_true",
                              help="print a web console link that signs in with the token (/ui/#token=...)")
    token_parser.add_argument("--url", default=None, metavar="BASE",
                              help="with --link: the server's base URL (default: the running server's, else "
                                   "http://<host>:<port>)")
    add_arguments(token_parser, ["data_dir", "host", "port", "auth_mode", "jwt_secret", "jwt_public_key_file", "jwt_audience",
                                 "jwt_issuer", "jwt_username_claim", "jwt_groups_claim"])
    return parser


def main(argv: list[str] | None = None) -> int:
    from .client import cli as client_cli  # login, cp, ls, rm, mb, rb, sync, share, perm, uploads, storage ...
    words = sys.argv[1:] if argv is None else argv
    if client_cli.handles(words):
        return client_cli.main(argv)
    index = client_cli.command_word(words)
    if index is None:
        if "--version" in words:
            build_parser().parse_args(["--version"])
        print(OVERVIEW, end="")
        return 0 if words else 2
    if words[index] not in SERVER_COMMANDS:
        return unknown_command(words[index])
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
            print_token(settings, args.user, args.group, ttl, link=args.link, base_url=args.url,
                        data_dir_given=args.data_dir is not None or "SAGESTORE_DATA_DIR" in os.environ)
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
