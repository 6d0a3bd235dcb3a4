"""A real `sagestore serve` subprocess (JWT auth) for the client tests, and how to run the CLI."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests

from sagestore.auth.tokens import mint_token
from sagestore.config import Settings
from support.server import REPO, ServerProcess

MiB = 2**20
SECRET = "client-tests-secret-" + "x" * 24


class ClientServer:
    def __init__(self, server: ServerProcess, settings: Settings) -> None:
        self.server, self.settings, self.url = server, settings, server.url

    def token(self, user: str = "alice", groups: tuple[str, ...] = ()) -> str:
        return mint_token(self.settings, user, list(groups), 3600)

    def metric(self, name: str) -> float:
        text = requests.get(self.url + "/metrics", timeout=30).text
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def cli_env(self, user: str | None = "alice", **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("SAGESTORE_", "SAGE_"))}
        env.update(PYTHONPATH=str(REPO), SAGESTORE_URL=self.url)
        if user is not None:
            env["SAGESTORE_TOKEN"] = self.token(user)
        env.update(extra)
        return env

    def cli(self, *args: str, user: str | None = "alice", env: dict[str, str] | None = None, timeout: float = 300,
            cwd: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sagestore", *args], env=env or self.cli_env(user),
                              capture_output=True, text=True, timeout=timeout, cwd=cwd)

    def popen(self, *args: str, user: str = "alice", **kwargs) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "sagestore", *args], env=self.cli_env(user), **kwargs)


def start_client_server(s3_backend, database_url, backends_dir, **overrides) -> tuple[ClientServer, ServerProcess]:
    settings = Settings(
        data_dir=str(backends_dir / "client-data"), auth_mode="jwt", jwt_secret=SECRET, database_url=database_url,
        s3_endpoint=s3_backend["endpoint"], s3_access_key=s3_backend["access_key"],
        s3_secret_key=s3_backend["secret_key"], reaper_interval=0, s3_part_size=5 * MiB, **overrides)
    server = ServerProcess(settings).start()
    return ClientServer(server, settings), server



@pytest.fixture(scope="module")
def served(s3_backend, database_url, backends_dir):
    """One real server process (JWT auth) for a module of client tests."""
    client_server, server = start_client_server(s3_backend, database_url, backends_dir)
    yield client_server
    server.stop()
