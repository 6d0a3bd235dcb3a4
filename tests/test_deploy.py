"""Dockerfile and docker-compose.yml. There is no Docker engine here, so the files are
parsed and checked against the real CLI and options, and the compose service's exact
environment, command and healthcheck are run natively against the test backends."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from sagestore.app import create_app
from sagestore.cli import build_parser
from sagestore.config import OPTIONS, Settings, load_settings
from sagestore.embedded import free_port
from support.processes import wait_gone
from support.server import clean_env

REPO = Path(__file__).resolve().parent.parent
OPTION_ENVS = {option.env for option in OPTIONS}
SAMPLE_DOTENV = {"POSTGRES_PASSWORD": "pg-sample-password", "S3_ACCESS_KEY": "sample-access",
                 "S3_SECRET_KEY": "sample-secret"}


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?message} substitution."""
    def replace(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if name in variables:
            return variables[name]
        if operator == ":-":
            return argument
        raise KeyError(f"{name} is required: {argument}")
    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", replace, text)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_services_and_images(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "seaweedfs", "sagestore"}
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["seaweedfs"]["image"].startswith("chrislusf/seaweedfs:")
    assert services["sagestore"]["build"] == "."
    weed = services["seaweedfs"]["command"]
    assert weed[0] == "mini"
    for flag in ("-s3.config=/etc/seaweedfs/s3.json", "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
                 "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.port=8333"):
        assert flag in weed
    assert services["seaweedfs"]["configs"] == [{"source": "s3-identities", "target": "/etc/seaweedfs/s3.json"}]
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), "published on loopback only"
    depends = services["sagestore"]["depends_on"]
    assert depends == {"postgres": {"condition": "service_healthy"}, "seaweedfs": {"condition": "service_healthy"}}


def test_compose_sagestore_settings_are_real_options(compose):
    environment = compose["services"]["sagestore"]["environment"]
    unknown = [name for name in environment if name.startswith("SAGESTORE_") and name not in OPTION_ENVS]
    assert unknown == []
    assert all(name.startswith("SAGESTORE_") for name in environment)
    resolved = {name: interpolate(str(value), SAMPLE_DOTENV) for name, value in environment.items()}
    command = compose["services"]["sagestore"]["command"]
    assert command[:2] == ["sagestore", "serve"]
    args = build_parser().parse_args(command[1:])
    settings = load_settings(args, resolved)
    assert settings.host == "0.0.0.0" and settings.port == 8080
    assert settings.database_url == "postgresql://sagestore:pg-sample-password@postgres:5432/sagestore"
    assert settings.s3_endpoint == "http://seaweedfs:8333"
    assert (settings.s3_access_key, settings.s3_secret_key) == ("sample-access", "sample-secret")
    # the credentials sagestore uses are the ones SeaweedFS is configured with
    identities = json.loads(interpolate(compose["configs"]["s3-identities"]["content"], SAMPLE_DOTENV))
    credentials = identities["identities"][0]["credentials"][0]
    assert (credentials["accessKey"], credentials["secretKey"]) == ("sample-access", "sample-secret")
    # and the database it connects to is the one the postgres service creates
    postgres = compose["services"]["postgres"]["environment"]
    assert f"{postgres['POSTGRES_USER']}:" in settings.database_url
    assert settings.database_url.endswith("/" + postgres["POSTGRES_DB"])
    # secrets come from .env, never from the compose file itself
    with pytest.raises(KeyError):
        interpolate(environment["SAGESTORE_S3_SECRET_KEY"], {})
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert set(example) == set(SAMPLE_DOTENV)


def test_healthchecks_hit_real_routes(compose):
    app = create_app(Settings())
    paths = {resource.canonical for resource in app.router.resources()}
    check = compose["services"]["sagestore"]["healthcheck"]["test"]
    assert check[0] == "CMD" and "/readyz" in check[-1]
    assert "/readyz" in paths
    dockerfile = (REPO / "Dockerfile").read_text()
    assert json.dumps(check[1:]) in dockerfile.replace("\\\n", ""), "the image and compose check the same way"


def test_dockerfile(compose):
    dockerfile = (REPO / "Dockerfile").read_text()
    instructions = [line.strip() for line in dockerfile.replace("\\\n", " ").splitlines()
                    if line.strip() and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(line.startswith("RUN pip install \".") for line in instructions)
    cmd = json.loads(next(line for line in instructions if line.startswith("CMD "))[4:])
    assert cmd == ["sagestore", "serve", "--host", "0.0.0.0"]
    settings = load_settings(build_parser().parse_args(cmd[1:]), {})
    assert settings.host == "0.0.0.0"
    # everything the image copies exists; the package build needs nothing else
    for line in instructions:
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (REPO / source).exists(), source


def test_compose_sagestore_service_natively(compose, s3_backend, database_url, tmp_path):
    """The sagestore service exactly as compose runs it (command, environment, healthcheck),
    with the two backend host names pointed at the test's PostgreSQL and SeaweedFS."""
    service = compose["services"]["sagestore"]
    dotenv = {"POSTGRES_PASSWORD": "unused", "S3_ACCESS_KEY": s3_backend["access_key"],
              "S3_SECRET_KEY": s3_backend["secret_key"]}
    environment = {name: interpolate(str(value), dotenv) for name, value in service["environment"].items()}
    environment["SAGESTORE_DATABASE_URL"] = database_url
    environment["SAGESTORE_S3_ENDPOINT"] = s3_backend["endpoint"]
    environment["SAGESTORE_DATA_DIR"] = str(tmp_path / "data")
    port = free_port()
    environment["SAGESTORE_PORT"] = str(port)
    command = [sys.executable, "-m", "sagestore", *service["command"][1:]]
    command[command.index("--port") + 1] = str(port)
    check = service["healthcheck"]["test"][1:]
    check[0] = sys.executable

    def healthy() -> bool:
        return subprocess.run(check, env=clean_env(**environment), capture_output=True, timeout=30).returncode == 0

    server = subprocess.Popen(command, env=clean_env(**environment), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not healthy():
            assert server.poll() is None, server.stdout.read().decode()
            assert time.monotonic() < deadline, "compose healthcheck never passed"
            time.sleep(0.2)
        assert requests.get(f"http://127.0.0.1:{port}/api/v1/").status_code == 200
    finally:
        server.terminate()
        assert server.wait(60) == 0
    assert not healthy()
    assert not wait_gone([], tmp_path / "data")
