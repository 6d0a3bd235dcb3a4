"""The suite's own housekeeping: a test session leaves nothing in the temporary directory, neither
when it ends nor after it was killed (the next session removes what it left)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.server import REPO
from support.tmp import ROOT_PREFIX, private_tmp_dir, remove_dead_roots, system_tmp


def test_a_session_keeps_its_files_under_one_root_removed_at_exit():
    scratch = private_tmp_dir("sagestore-scratch-")
    # a real pytest session of this suite (collecting one file) with its own temporary dir
    env = {**os.environ, "TMPDIR": str(scratch)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                          "tests/test_lint.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert list(scratch.iterdir()) == []


def test_the_root_of_a_killed_session_is_removed_by_the_next_one():
    scratch = Path(system_tmp())
    # a session killed with SIGKILL: its pid is gone, its root stays behind
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead_root = scratch / f"{ROOT_PREFIX}{victim.pid}-killed"
    (dead_root / "sagestore-backends-x" / "weed").mkdir(parents=True)
    (dead_root / "sagestore-serve-x.log").write_text("log")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    # this session's root (named after the live pytest that made it) is not touched
    live_root = Path(os.environ["TMPDIR"])
    assert live_root.name.startswith(ROOT_PREFIX)
    removed = remove_dead_roots()
    assert dead_root in removed and not dead_root.exists()
    assert live_root.exists()


def test_a_pid_reused_by_another_program_does_not_keep_a_dead_root():
    scratch = Path(system_tmp())
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # alive, not pytest
    try:
        root = scratch / f"{ROOT_PREFIX}{other.pid}-reused"
        root.mkdir()
        time.sleep(0.1)
        assert root in remove_dead_roots() and not root.exists()
    finally:
        other.kill()
        other.wait()
