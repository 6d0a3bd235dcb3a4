"""Real backends for the whole suite: one SeaweedFS (weed mini) per test session, and
PostgreSQL from SAGESTORE_TEST_DATABASE_URL (a fresh database is created on that
server) or, when unset, an embedded PostgreSQL. Nothing of ours is mocked."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from aiohttp.test_utils import TestServer

from sagestore.app import create_app
from sagestore.config import Settings
from sagestore.embedded import Embedded, _postgres_ready, _s3_ready, free_port
from sagestore.trailers import Runner

REPO = Path(__file__).resolve().parent.parent


def _wait(check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(check())
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def private_tmp_dir(prefix: str) -> Path:
    """A temporary dir outside pytest's basetemp. As root, the embedded PostgreSQL runs as a
    system user that must traverse every parent dir (sagestore refuses to loosen them), and
    pytest resets its basetemp to 0700 whenever another pytest session starts. The dir is
    0711: others may pass through, not list it; the data dirs inside are 0700 (or 0710)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


@pytest.fixture(scope="session")
def backends_dir() -> Path:
    path = private_tmp_dir("sagestore-backends-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_backend(backends_dir) -> dict[str, str]:
    """A real SeaweedFS with SigV4 enforced, shared by the session."""
    embedded = Embedded(backends_dir / "weed")
    embedded.lock()
    _, s3 = embedded.start_seaweedfs()
    _wait(lambda: _s3_ready(s3["endpoint"], s3["access_key"], s3["secret_key"]))
    yield s3
    embedded.stop()


@pytest.fixture(scope="session")
def database_url(backends_dir) -> str:
    """URL of a database created for this test session (dropped afterwards)."""
    embedded = None
    server_url = os.environ.get("SAGESTORE_TEST_DATABASE_URL")
    if not server_url:
        embedded = Embedded(backends_dir / "pg")
        embedded.lock()
        _, server_url = embedded.start_postgres()
        _wait(lambda: _postgres_ready(server_url))
    name = f"sagestore_test_{uuid.uuid4().hex[:10]}"
    def run_admin(sql: str) -> None:
        # a fresh connection each time: a session-long one may be cut by the server meanwhile
        admin = psycopg2.connect(server_url)
        admin.autocommit = True
        try:
            with admin.cursor() as cur:
                cur.execute(sql)
        finally:
            admin.close()
    run_admin(f"CREATE DATABASE {name}")
    base, _, _ = server_url.rpartition("/")
    yield f"{base}/{name}"
    run_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    if embedded:
        embedded.stop()


@pytest.fixture(scope="session")
def base_settings(s3_backend, database_url, backends_dir) -> Settings:
    return Settings(
        data_dir=str(backends_dir / "data"), auth_mode="noauth", database_url=database_url,
        s3_endpoint=s3_backend["endpoint"], s3_access_key=s3_backend["access_key"],
        s3_secret_key=s3_backend["secret_key"], reaper_interval=0,
    )


@pytest.fixture
def settings(base_settings) -> Settings:
    return base_settings


class AppServer(TestServer):
    """A test server run like `sagestore serve` runs the app (the trailer-recording Runner)."""

    async def _make_runner(self, **kwargs: Any) -> Runner:
        return Runner(self.app, **kwargs)


@pytest.fixture
async def client(aiohttp_client, settings):
    """An aiohttp test client on a real app (noauth: 'sage user:<name>' tokens)."""
    return await aiohttp_client(AppServer(create_app(settings)))


def create_bucket_row(database_url: str, owner: str = "alice") -> str:
    """A bucket row written straight to the database, for tests that drive server subprocesses."""
    from sagestore.db import buckets as bucket_queries
    from sagestore.db import create_pool, transaction

    async def run() -> str:
        bucket_id = str(uuid.uuid4())
        pool = await create_pool(database_url, 1)
        try:
            async with transaction(pool) as cur:
                await bucket_queries.create(cur, bucket_id, "two", "model", owner, False)
        finally:
            pool.close()
            await pool.wait_closed()
        return bucket_id
    return asyncio.run(run())


def auth(user: str | None, groups: tuple[str, ...] = ()) -> dict[str, str]:
    """Headers for a noauth caller; None means anonymous."""
    if user is None:
        return {}
    token = f"user:{user}" + (f";groups={','.join(groups)}" if groups else "")
    return {"Authorization": f"sage {token}"}


def settings_env(settings: Settings) -> dict[str, str]:
    """The SAGESTORE_* environment that reproduces settings in a subprocess."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAGESTORE_")}
    for field, value in settings.__dict__.items():
        if isinstance(value, tuple):
            value = ",".join(value)
        env["SAGESTORE_" + field.upper()] = str(value)
    env["PYTHONPATH"] = str(REPO)
    return env


class ServerProcess:
    """`python -m sagestore serve` as a real subprocess."""

    def __init__(self, settings: Settings, port: int | None = None, extra_env: dict[str, str] | None = None):
        self.port = port or free_port()
        self.settings = settings.replace(port=self.port, host="127.0.0.1")
        self.env = {**settings_env(self.settings), **(extra_env or {})}
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        # a file, not a pipe: a pipe nobody reads blocks the server once it fills up
        self.log = tempfile.NamedTemporaryFile(prefix="sagestore-serve-", suffix=".log")

    @property
    def output(self) -> str:
        """Everything the server printed or logged so far (stdout and stderr)."""
        return Path(self.log.name).read_text(errors="replace")

    def start(self, timeout: float = 60) -> "ServerProcess":
        import requests
        self.process = subprocess.Popen([sys.executable, "-m", "sagestore", "serve"], env=self.env, cwd=REPO,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def stop(self, sig: int = 15) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def server_process(base_settings):
    """Factory for real server subprocesses on the shared backends; all are stopped afterwards."""
    started: list[ServerProcess] = []

    def start(**overrides: Any) -> ServerProcess:
        server = ServerProcess(base_settings.replace(**overrides)).start()
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()
