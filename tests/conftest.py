"""Real backends for the whole suite: one SeaweedFS (weed mini) per test session, and
PostgreSQL from SAGESTORE_TEST_DATABASE_URL (a fresh database is created on that
server) or, when unset, an embedded PostgreSQL. Nothing of ours is mocked."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sagestore.config import Settings
from sagestore.embedded import Embedded, _postgres_ready, _s3_ready
from support.apps import SharedApps, forget_built_middlewares, give_freed_memory_back
from support.backends import new_database, wait_for
from support.client import served  # the fixture: one JWT server process per module of client tests
from support.console import close_module_browser
from support.server import ServerProcess
from support.tmp import close_session_root, open_session_root, private_tmp_dir

__all__ = ["served"]  # the fixture, for every test module

SESSION_ROOT = pytest.StashKey[Path]()


def pytest_configure(config):
    """One temporary root for the whole session (xdist workers inherit it through TMPDIR)."""
    if not hasattr(config, "workerinput"):
        config.stash[SESSION_ROOT] = open_session_root()


def pytest_unconfigure(config):
    root = config.stash.get(SESSION_ROOT, None)
    if root is not None:
        close_session_root(root)


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
    weed, s3 = embedded.start_seaweedfs()
    wait_for(lambda: _s3_ready(s3["endpoint"], s3["access_key"], s3["secret_key"]))
    yield s3
    died = weed.process.poll()
    # its data is deleted next; SeaweedFS's volume server sometimes does not stop within the 20 s
    # grace after a whole worker's run (its log ends at "Filer stopped"): no shutdown is tested here
    weed.process.kill()
    embedded.stop()
    if died is not None:  # every test after its death failed to connect: say why, once
        log = (embedded.log_dir / "seaweedfs.log").read_text(errors="replace")
        raise RuntimeError(f"the session's SeaweedFS exited with status {died} during the run; "
                           f"the end of its log:\n{log[-4000:]}")


@pytest.fixture(scope="session")
def database_server_url(backends_dir) -> str:
    """The PostgreSQL server of the session (SAGESTORE_TEST_DATABASE_URL, or an embedded one)."""
    server_url = os.environ.get("SAGESTORE_TEST_DATABASE_URL")
    if server_url:
        yield server_url
        return
    embedded = Embedded(backends_dir / "pg")
    embedded.lock()
    _, server_url = embedded.start_postgres()
    wait_for(lambda: _postgres_ready(server_url))
    yield server_url
    embedded.stop()


@pytest.fixture(scope="session")
def database_url(database_server_url) -> str:
    """URL of a database created for this test session (dropped afterwards)."""
    with new_database(database_server_url) as url:
        yield url


@pytest.fixture
def fresh_database_url(database_server_url) -> str:
    """A database of the test's own, for tests that count everything in it (the reaper's)."""
    with new_database(database_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def base_settings(s3_backend, database_url, backends_dir) -> Settings:
    return Settings(
        data_dir=str(backends_dir / "data"), auth_mode="noauth", database_url=database_url,
        s3_endpoint=s3_backend["endpoint"], s3_access_key=s3_backend["access_key"],
        s3_secret_key=s3_backend["secret_key"], reaper_interval=0,
        s3_api_port=0,  # a test that wants the S3 API gives it a free port (tests/s3_helpers.py)
    )


@pytest.fixture
def settings(base_settings) -> Settings:
    return base_settings


@pytest.fixture(scope="module")
async def shared_apps():
    """The apps of one module's `client` tests, one per distinct settings; stopped with the module."""
    apps = SharedApps()
    yield apps
    await apps.shutdown()


@pytest.fixture
async def client(shared_apps, settings):
    """An aiohttp test client on a real app (noauth: 'sage user:<name>' tokens). The app is the
    module's, shared by every test there that uses the same settings; the client session is
    the test's own."""
    test_client = TestClient(await shared_apps.server(settings))
    await test_client.start_server()
    yield test_client
    await test_client.close()


@pytest.fixture(autouse=True)
def _forget_built_middlewares():
    """Lets the apps a test built be freed when it ends (see forget_built_middlewares), and the
    memory it freed go back to the kernel."""
    yield
    forget_built_middlewares()
    give_freed_memory_back()


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



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """The browser tests of a module share one Chromium (support/console.py); it is closed when
    the module's last test ends (a hook, so that no other test depends on it)."""
    if nextitem is None or nextitem.module is not item.module:
        close_module_browser()
    yield
