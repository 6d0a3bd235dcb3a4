"""The processes a run needs, all on 127.0.0.1 and all stopped at the end:
SeaweedFS `weed mini`, a fresh PostgreSQL database, `python -m sagestore serve`,
a bare aiohttp app (the small-request reference), the bare relay (the transfer reference)
and, on demand, the @tus/server peer."""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from sagestore.embedded import Embedded, _postgres_ready, _s3_ready, free_port

REPO = Path(__file__).resolve().parent.parent
PEER_DIR = Path(__file__).resolve().parent / "peer"
SHARED_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_USER = "bench"
AUTH = {"Authorization": f"sage user:{BENCH_USER}"}
DIRECT_BUCKET = "bench-direct"
PEER_BUCKET = "bench-tus-peer"
BARE_BUCKET = "bench-bare-relay"
# the peer's @tus/s3-store part size: sagestore's own SAGESTORE_S3_PART_SIZE default, so both
# servers send S3 parts of the same size (the s3-store default would be 8 MiB)
PEER_PART_SIZE = 16 * 2**20
# the JWT server of the small-request row that pays for token checks and cold ACL rows
JWT_SECRET = "bench-" + "0123456789abcdef" * 3


class StartError(RuntimeError):
    pass


async def wait_http(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
                raise StartError(f"{process.args} exited with {process.returncode}:\n{tail}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status < 500:
                        return
            await asyncio.sleep(0.1)
    raise StartError(f"{url} not answering after {timeout:.0f}s; see {log_path}")


def stop_process(process: subprocess.Popen | None, timeout: float = 20) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@dataclass
class Stack:
    workdir: Path
    server_repo: Path = REPO  # the checkout whose sagestore is measured
    server_env: dict[str, str] = field(default_factory=dict)  # settings for every sagestore server
    s3: dict[str, str] = field(default_factory=dict)
    weed_pid: int = 0
    database_url: str = ""
    database_note: str = ""
    server_url: str = ""
    server: subprocess.Popen | None = None
    bare_url: str = ""
    bare_app: subprocess.Popen | None = None
    relay_url: str = ""
    relay: subprocess.Popen | None = None
    peer_url: str = ""
    peer: subprocess.Popen | None = None
    jwt_url: str = ""
    jwt_server: subprocess.Popen | None = None
    _cleanups: list = field(default_factory=list)

    # --- SeaweedFS -----------------------------------------------------------
    async def start_seaweedfs(self) -> None:
        # read by start_seaweedfs (it keeps a GOMEMLIMIT that is already set)
        os.environ["GOMEMLIMIT"] = "768MiB"
        embedded = Embedded(self.workdir / "weed")
        embedded.lock()
        self._cleanups.append(embedded.stop)
        child, self.s3 = embedded.start_seaweedfs()
        self.weed_pid = child.process.pid
        deadline = time.monotonic() + 60
        while True:
            try:
                await _s3_ready(self.s3["endpoint"], self.s3["access_key"], self.s3["secret_key"])
                return
            except Exception:
                if child.process.poll() is not None or time.monotonic() > deadline:
                    raise StartError(f"SeaweedFS did not start; see {self.workdir / 'weed' / 'logs'}") from None
                await asyncio.sleep(0.1)

    # --- PostgreSQL ----------------------------------------------------------
    async def start_database(self) -> None:
        """A fresh database on the machine's PostgreSQL, or an embedded one if that is unreachable."""
        import psycopg2
        server_url = (os.environ.get("SAGESTORE_BENCH_POSTGRES") or os.environ.get("SAGESTORE_TEST_DATABASE_URL")
                      or SHARED_POSTGRES)
        try:
            admin = psycopg2.connect(server_url, connect_timeout=3)
            self.database_note = "machine PostgreSQL"
        except psycopg2.OperationalError:
            embedded = Embedded(self.workdir / "pg")
            embedded.lock()
            self._cleanups.append(embedded.stop)
            _, server_url = embedded.start_postgres()
            deadline = time.monotonic() + 60
            while True:
                try:
                    await _postgres_ready(server_url)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise StartError("embedded PostgreSQL did not start") from None
                    await asyncio.sleep(0.1)
            admin = psycopg2.connect(server_url)
            self.database_note = "embedded PostgreSQL"
        admin.autocommit = True
        name = f"sagestore_bench_{uuid.uuid4().hex[:10]}"
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")

        def drop() -> None:
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.close()
        self._cleanups.append(drop)
        base, _, _ = server_url.rpartition("/")
        self.database_url = f"{base}/{name}"

    # --- sagestore -----------------------------------------------------------
    async def start_sagestore(self) -> None:
        # with its S3 API on a port of its own (the s3door scenarios)
        self.s3_api_port = free_port()
        self.server, self.server_url = await self._start_server(
            "sagestore", {"SAGESTORE_AUTH_MODE": "noauth", "SAGESTORE_S3_API_PORT": str(self.s3_api_port)})
        self.s3_api_url = f"http://127.0.0.1:{self.s3_api_port}"

    async def start_jwt_sagestore(self) -> None:
        """A second server on the same database and S3 that checks HS256 JWTs (JWT_SECRET)."""
        if self.jwt_server is None:
            self.jwt_server, self.jwt_url = await self._start_server(
                "sagestore-jwt", {"SAGESTORE_AUTH_MODE": "jwt", "SAGESTORE_JWT_SECRET": JWT_SECRET})

    async def _start_server(self, name: str, auth: dict[str, str]) -> tuple[subprocess.Popen, str]:
        port = free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("SAGESTORE_")}
        env.update({
            "PYTHONPATH": str(self.server_repo),
            "PYTHONDONTWRITEBYTECODE": "1",  # the checkout may be someone else's
            "SAGESTORE_HOST": "127.0.0.1",
            "SAGESTORE_PORT": str(port),
            "SAGESTORE_DATA_DIR": str(self.workdir / f"{name}-data"),
            "SAGESTORE_DATABASE_URL": self.database_url,
            "SAGESTORE_S3_ENDPOINT": self.s3["endpoint"],
            "SAGESTORE_S3_ACCESS_KEY": self.s3["access_key"],
            "SAGESTORE_S3_SECRET_KEY": self.s3["secret_key"],
            **self.server_env,
            "SAGESTORE_S3_API_PORT": "0",
            **auth,
        })
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            server = subprocess.Popen([sys.executable, "-m", "sagestore", "serve"], cwd=self.server_repo, env=env,
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self._cleanups.append(lambda: stop_process(server))
        url = f"http://127.0.0.1:{port}"
        await wait_http(url + "/healthz", server, log_path)
        return server, url

    async def restart_sagestore(self) -> None:
        """A fresh server process, so that a memory measurement starts from a clean heap."""
        await asyncio.to_thread(stop_process, self.server)
        await self.start_sagestore()

    # --- the bare aiohttp reference app -------------------------------------
    async def start_bare_app(self) -> None:
        port = free_port()
        log_path = self.workdir / "bare-app.log"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(log_path, "ab") as log:
            self.bare_app = subprocess.Popen([sys.executable, "-m", "bench.bare_app", str(port)], cwd=REPO, env=env,
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self._cleanups.append(lambda: stop_process(self.bare_app))
        self.bare_url = f"http://127.0.0.1:{port}"
        await wait_http(self.bare_url + "/healthz", self.bare_app, log_path)

    # --- the bare relay (bench/bare_relay.py) --------------------------------
    async def start_bare_relay(self) -> None:
        """The transfer reference: aiohttp + aiobotocore with sagestore's S3 settings, nothing else."""
        if self.relay is not None:
            return
        port = free_port()
        log_path = self.workdir / "bare-relay.log"
        env = {**os.environ, "PYTHONPATH": str(REPO), "BARE_S3_ENDPOINT": self.s3["endpoint"],
               "BARE_S3_ACCESS_KEY": self.s3["access_key"], "BARE_S3_SECRET_KEY": self.s3["secret_key"]}
        with open(log_path, "ab") as log:
            self.relay = subprocess.Popen([sys.executable, "-m", "bench.bare_relay", str(port)], cwd=REPO, env=env,
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self._cleanups.append(lambda: stop_process(self.relay))
        self.relay_url = f"http://127.0.0.1:{port}"
        await wait_http(self.relay_url + "/healthz", self.relay, log_path)

    # --- the @tus/server peer ------------------------------------------------
    async def start_peer(self) -> None:
        """Install (first use only) and start @tus/server + @tus/s3-store on our SeaweedFS."""
        if self.peer is not None:
            return
        node, npm = shutil.which("node"), shutil.which("npm")
        if not node or not npm:
            raise StartError("node and npm are needed for the @tus/server peer")
        if not (PEER_DIR / "node_modules" / "@tus" / "s3-store").exists():
            command = "ci" if (PEER_DIR / "package-lock.json").exists() else "install"
            result = await asyncio.to_thread(
                subprocess.run, [npm, command, "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEER_DIR,
                stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if result.returncode:
                raise StartError(f"npm {command} in {PEER_DIR} failed: {result.stderr[-500:]}")
        port = free_port()
        env = {**os.environ, "PEER_PORT": str(port), "PEER_S3_BUCKET": PEER_BUCKET, "PEER_PART_SIZE": str(PEER_PART_SIZE),
               "PEER_S3_ENDPOINT": self.s3["endpoint"], "PEER_S3_ACCESS_KEY": self.s3["access_key"],
               "PEER_S3_SECRET_KEY": self.s3["secret_key"]}
        log_path = self.workdir / "tus-peer.log"
        with open(log_path, "ab") as log:
            self.peer = subprocess.Popen([node, "tus-server.mjs"], cwd=PEER_DIR, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        self._cleanups.append(lambda: stop_process(self.peer))
        self.peer_url = f"http://127.0.0.1:{port}/files/"
        await wait_http(self.peer_url, self.peer, log_path)

    def stop(self) -> None:
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        self._cleanups.clear()

    def describe(self) -> dict[str, str]:
        return {"s3_endpoint": self.s3.get("endpoint", ""), "database": self.database_note,
                "sagestore": self.server_url, "sagestore_jwt": self.jwt_url, "bare_app": self.bare_url,
                "bare_relay": self.relay_url,
                "peer": self.peer_url, "peer_part_size": str(PEER_PART_SIZE)}
