"""The client's settings: how files move (TransferConfig), and where it connects (resolve: flag,
environment, profile in the config file, default), shared by the CLI, the library and fsspec."""
from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MiB = 2**20


@dataclass(frozen=True)
class TransferConfig:
    """How files move.

    threshold: files up to this size go as one streamed PUT (uploads) or one GET (downloads);
        larger uploads use an indexed session, larger downloads parallel Range GETs.
    chunk_size: the download range size; uploads use the chunk size the server picks (>= this is
        not guaranteed: the server's part size and 10 000-chunk limit decide).
    concurrency: chunks (upload) or ranges (download) in flight per file.
    retries: attempts after the first on connection errors, 5xx, 423 (and 503 with Retry-After).
    backoff / max_backoff: exponential backoff base and cap, in seconds, with full jitter.
    connect_timeout / read_timeout: seconds to connect, and without a byte read.
    """
    threshold: int = 16 * MiB
    chunk_size: int = 16 * MiB
    concurrency: int = 8
    retries: int = 8
    backoff: float = 0.5
    max_backoff: float = 10.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.chunk_size < 1 or self.concurrency < 1 or self.retries < 0:
            raise ValueError("threshold >= 0, chunk_size >= 1, concurrency >= 1 and retries >= 0")


# ---------------------------------------------------------------------- where the client connects
DEFAULT_URL = "http://127.0.0.1:8080"  # where `sagestore serve` listens by default
DEFAULT_PROFILE = "default"
URL_VARIABLES = ("SAGESTORE_URL", "SAGE_STORE_URL")  # the second is sage-cli's name
TOKEN_VARIABLES = ("SAGESTORE_TOKEN", "SAGE_USER_TOKEN")
PROFILE_VARIABLE = "SAGESTORE_PROFILE"
CONFIG_VARIABLE = "SAGESTORE_CONFIG"


class ProfileError(ValueError):
    """The config file cannot be read, or names no such profile."""


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """$SAGESTORE_CONFIG, else $XDG_CONFIG_HOME/sagestore/config.toml (~/.config when unset)."""
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_VARIABLE):
        return Path(environ[CONFIG_VARIABLE]).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or ""
    # the XDG spec ignores a relative XDG_CONFIG_HOME; expanduser("~") never raises without a HOME
    root = Path(base) if os.path.isabs(base) else Path(os.path.expanduser("~")) / ".config"
    return root / "sagestore" / "config.toml"


def read_profiles(path: Path | None = None) -> dict[str, dict[str, str]]:
    """{profile: {"url": ..., "token": ...}} from the config file; {} when there is none."""
    path = path or config_path()
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ProfileError(f"cannot read {path}: {error}") from None
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(value, dict) for value in profiles.values()):
        raise ProfileError(f"{path}: [profiles.NAME] tables expected")
    return {name: {field: value for field, value in entries.items() if isinstance(value, str)}
            for name, entries in profiles.items()}


def write_profiles(profiles: dict[str, dict[str, str]], path: Path | None = None) -> Path:
    """Replace the config file atomically; the file is 0600 and a directory we create 0700
    (the file holds tokens)."""
    import tomli_w
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = "# sagestore client profiles (written by `sagestore login`; holds tokens: keep it 0600)\n" + \
        tomli_w.dumps({"profiles": profiles})
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(scratch, 0o600)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
    return path


def profile_name(profile: str | None = None, environ: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """(the profile to use, whether it was asked for by name)."""
    environ = os.environ if environ is None else environ
    named = profile or environ.get(PROFILE_VARIABLE) or None
    return (named or DEFAULT_PROFILE), named is not None


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((environ[name] for name in names if environ.get(name)), None)


def resolve(url: str | None = None, token: str | None = None, profile: str | None = None, *,
            environ: Mapping[str, str] | None = None, path: Path | None = None) -> tuple[str, str | None]:
    """The server URL and token to use: each from the argument, else the environment
    (SAGESTORE_URL / SAGESTORE_TOKEN, or sage-cli's SAGE_STORE_URL / SAGE_USER_TOKEN), else the
    profile (`profile`, else $SAGESTORE_PROFILE, else "default") in the config file, else the
    local server http://127.0.0.1:8080 and no token.

    A profile's token goes only to that profile's URL: naming another server (flag or env)
    without a token connects anonymously rather than hand the token to a server it was not
    made for. A profile asked for by name that the file lacks is a ProfileError."""
    environ = os.environ if environ is None else environ
    name, named = profile_name(profile, environ)
    profiles = read_profiles(path or config_path(environ))
    chosen = profiles.get(name)
    if chosen is None and named:
        known = ", ".join(sorted(profiles)) or "none yet"
        raise ProfileError(f"no profile {name!r} in {path or config_path(environ)} (profiles: {known}; "
                           f"`sagestore login --profile {name}` makes it)")
    chosen = chosen or {}
    resolved_url = url or _first(environ, URL_VARIABLES) or chosen.get("url") or DEFAULT_URL
    resolved_token = token or _first(environ, TOKEN_VARIABLES)
    if resolved_token is None and chosen.get("token") and \
            resolved_url.rstrip("/") == (chosen.get("url") or DEFAULT_URL).rstrip("/"):
        resolved_token = chosen["token"]
    return resolved_url.rstrip("/"), resolved_token or None
