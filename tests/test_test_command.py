"""scripts/test (the README's command 2) when it cannot install what the tests need: one line
saying what is missing and how to get it, exit status 3, and no test run."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from support.server import REPO
from support.tmp import private_tmp_dir


@pytest.fixture
def tmp_path():
    """A dir the unprivileged user can enter (pytest's basetemp is 0700)."""
    path = private_tmp_dir("sagestore-test-command-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_missing_debian_package_without_root_is_one_line(tmp_path):
    """Every listed command but haproxy on PATH, run as an unprivileged user: nothing is installed."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("bash", "dirname", "mktemp", "id", "rm", "cat", "curl", "node", "npm", "chromium", "wrk", "rclone",
                 "apt-get"):
        found = shutil.which(name)
        if found:
            (tools / name).symlink_to(found)
    argv = [shutil.which("bash"), str(REPO / "scripts" / "test"), "--version"]
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if not runuser:
            pytest.skip("runs as root without runuser to drop privileges")
        tools.chmod(0o755)
        tmp_path.chmod(0o755)
        argv = [runuser, "-u", "nobody", "--", *argv]
    scratch = tmp_path / "tmp"
    scratch.mkdir(mode=0o777)
    scratch.chmod(0o777)
    result = subprocess.run(argv, env={"PATH": str(tools), "TMPDIR": str(scratch)}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 3, result
    assert result.stdout == ""  # pytest never started
    [line] = result.stderr.splitlines()
    assert line.startswith("scripts/test: missing Debian packages: haproxy;"), line
    assert "apt-get install -y haproxy" in line
    assert not any(scratch.glob("sagestore-test-install-*")), "an empty install log was left behind"
