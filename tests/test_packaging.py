"""Packaging as a new user meets it: pip resolves the test extra in one pass, and the built
sdist and wheel carry every file the server reads, so a non-editable install serves.

Both tests talk to PyPI (pip); without a route to it they are skipped, saying so."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from packaging.requirements import Requirement

from support.server import REPO
from support.tmp import private_tmp_dir
from support.processes import wait_gone
from support.server import ServerProcess

# Every page the installed server must serve from its wheel: path -> expected content type.
# Add a page here when it ships (the console, the Swagger UI).
PAGES = {
    "/api/v1/": "application/json",
    "/api-docs": "application/json",
    "/swagger-ui/index.html": "text/html",
    "/api-docs.yaml": "application/yaml",
}

# Built wheels of the dependencies, kept between runs like pip's cache (which keeps
# nothing on this machine): the fresh venv installs from here without the network.
WHEELHOUSE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sagestore-test-wheels"


def pip_index_reachable() -> bool:
    try:
        with socket.create_connection((urlsplit("https://pypi.org/simple").hostname, 443), timeout=10):
            return True
    except OSError:
        return False


needs_pypi = pytest.mark.skipif(not pip_index_reachable(), reason="no network to PyPI (pypi.org:443)")


def run(argv: list[str], cwd: Path, timeout: float = 900, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def declared_requirement(extra: str, name: str) -> Requirement:
    import tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in project["optional-dependencies"][extra]:
        requirement = Requirement(line)
        if requirement.name == name:
            return requirement
    raise AssertionError(f"{name} is not in the {extra} extra")


def scripts_test_install() -> tuple[str, dict[str, dict]] | None:
    """What scripts/test's `pip install -e '.[test]'` printed when it installed this very
    pyproject.toml into the running venv from nothing, and what it installed; None otherwise (then
    the test resolves the extra itself)."""
    venv = Path(sys.prefix)
    stamp, log = venv / ".sagestore-test-extra", venv / ".sagestore-test-extra.log"
    wanted = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    if not log.exists() or not stamp.exists() or stamp.read_text().strip() != wanted:
        return None
    text = log.read_text()
    if not all(re.search(rf"\b{name}-\d", text) for name in ("boto3", "botocore", "aiobotocore")):
        return None  # an install into a venv that had them already: not a resolution from nothing
    installed = {name: {"version": metadata.version(name), "requires_dist": metadata.requires(name) or []}
                 for name in ("boto3", "botocore", "aiobotocore")}
    return text, installed


@needs_pypi
def test_test_extra_resolves_in_one_pass(tmp_path):
    """`pip install -e '.[test]'` from nothing: one candidate of boto3 and botocore, no backtracking,
    and the boto3 range in pyproject.toml is exactly the botocore range aiobotocore pins. The install
    scripts/test just made of this pyproject.toml is that install (a fresh clone's command 2); without
    one, a dry run from nothing (a minute of pip's CPU)."""
    found = scripts_test_install()
    if found is not None:
        log, installed = found
    else:
        report = tmp_path / "report.json"
        log = run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-v",
                   "--report", str(report), "-e", f"{REPO}[test]"], cwd=tmp_path)
        installed = {item["metadata"]["name"].lower(): item["metadata"]
                     for item in json.loads(report.read_text())["install"]}
    assert "looking at multiple versions" not in log, "pip backtracked:\n" + "\n".join(
        line for line in log.splitlines() if "multiple versions" in line)
    for name in ("boto3", "botocore", "aiobotocore"):
        fetched = set(re.findall(rf"\b{name}-(\d[\w.]*?)(?:-py3|\.tar\.gz)", log))
        assert len(fetched) == 1, f"pip fetched several {name} releases: {sorted(fetched)}"

    aiobotocore = installed["aiobotocore"]
    botocore_pin = next(Requirement(line) for line in aiobotocore["requires_dist"]
                        if Requirement(line).name == "botocore" and not Requirement(line).marker)
    assert installed["botocore"]["version"] in botocore_pin.specifier
    assert installed["boto3"]["version"] in botocore_pin.specifier
    # the pair in pyproject.toml: bump aiobotocore and boto3 together
    assert declared_requirement("test", "aiobotocore").specifier.contains(aiobotocore["version"])
    assert declared_requirement("test", "boto3").specifier == botocore_pin.specifier, \
        f"set boto3 to aiobotocore {aiobotocore['version']}'s botocore range: boto3{botocore_pin.specifier}"


def source_copy(destination: Path) -> Path:
    """The checkout without local state (venvs, node_modules, data dirs, build output)."""
    ignore = shutil.ignore_patterns(".git", ".venv", "node_modules", "__pycache__", "*.egg-info", "build", "dist",
                                    "sagestore-data", ".pytest_cache", "results")
    return Path(shutil.copytree(REPO, destination, ignore=ignore))


def runtime_files(source: Path) -> set[str]:
    """Every file under sagestore/ in the checkout, as paths inside the package."""
    return {str(path.relative_to(source)) for path in (source / "sagestore").rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}


def fill_wheelhouse(wheel: Path, extra: str, venv_python: Path) -> None:
    """Download the wheel's dependencies once; later runs install them offline."""
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WHEELHOUSE.parent) as download:
        run([str(venv_python), "-m", "pip", "download", "-q", "--dest", download, "--find-links", str(WHEELHOUSE),
             f"{wheel}[{extra}]"], cwd=wheel.parent)
        for path in Path(download).iterdir():
            if not path.name.startswith("sagestore-"):
                os.replace(path, WHEELHOUSE / path.name)  # atomic: parallel runs never see half a wheel


@needs_pypi
def test_built_wheel_serves_from_a_fresh_venv():
    """`python -m build` (sdist, then the wheel from the sdist); the wheel and its dependencies,
    not this checkout, in a new venv; its `sagestore serve` on embedded backends serves every page."""
    root = private_tmp_dir("sagestore-wheel-")
    server = None
    try:
        source = source_copy(root / "src")
        dist = root / "dist"
        run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], cwd=root)
        [sdist] = dist.glob("sagestore-*.tar.gz")
        [wheel] = dist.glob("sagestore-*.whl")

        wanted = runtime_files(source)
        assert any(name.startswith("sagestore/migrations/") for name in wanted)
        in_wheel = set(zipfile.ZipFile(wheel).namelist())
        assert wanted <= in_wheel, f"missing from the wheel: {sorted(wanted - in_wheel)}"
        with tarfile.open(sdist) as archive:
            in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        assert wanted <= in_sdist, f"missing from the sdist: {sorted(wanted - in_sdist)}"

        venv = root / "venv"
        run([sys.executable, "-m", "venv", str(venv)], cwd=root)
        python = venv / "bin" / "python"
        # --no-compile: bytecode for the few modules the checks below import is written as they do
        install = [str(python), "-m", "pip", "install", "-q", "--no-compile", "--no-index", "--find-links",
                   str(WHEELHOUSE), f"{wheel}[embedded]"]
        if subprocess.run(install, cwd=root, capture_output=True, timeout=900).returncode != 0:
            fill_wheelhouse(wheel, "embedded", python)
            run(install, cwd=root)

        # the installed package, not the checkout: run from elsewhere, without PYTHONPATH
        env = {key: value for key, value in os.environ.items() if not key.startswith("SAGESTORE_") and key != "PYTHONPATH"}
        where = run([str(python), "-c", "import sagestore; print(sagestore.__file__)"], cwd=root, env=env)
        assert where.strip().startswith(str(venv)), where
        version = wheel.name.split("-")[1]
        assert run([str(venv / "bin" / "sagestore"), "--version"], cwd=root, env=env) == f"sagestore {version}\n"

        server = ServerProcess.embedded(root / "data", program=[str(venv / "bin" / "sagestore")]).start(timeout=180)
        for path, content_type in PAGES.items():
            response = requests.get(server.url + path, timeout=30)
            assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
            assert response.headers["Content-Type"].split(";")[0] == content_type, path
        assert requests.get(server.url + "/api/v1/").json()["version"] == version
        assert requests.get(server.url + "/api-docs").json()["openapi"].startswith("3.")
        assert server.stop() == 0, server.output
        assert not wait_gone(server.children, root / "data")
    finally:
        if server:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)
