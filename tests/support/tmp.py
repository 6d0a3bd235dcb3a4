"""Temporary files of a test session: everything the session, its servers and their backends
put in the temporary dir goes under one /tmp/sagestore-tests-<pid>-* root (TMPDIR points
there), removed when the session ends; the roots of sessions that were killed before they
could clean up are removed when the next session starts."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ROOT_PREFIX = "sagestore-tests-"


def private_tmp_dir(prefix: str) -> Path:
    """A temporary dir outside pytest's basetemp. As root, the embedded PostgreSQL runs as a
    system user that must traverse every parent dir (sagestore refuses to loosen them), and
    pytest resets its basetemp to 0700 whenever another pytest session starts. The dir is
    0711: others may pass through, not list it; the data dirs inside are 0700 (or 0710)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


def open_session_root() -> Path:
    """Remove the roots of dead sessions, make this session's and point TMPDIR at it (the
    subprocesses and xdist workers started later inherit it)."""
    remove_dead_roots()
    root = Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-", dir=system_tmp()))
    root.chmod(0o711)  # the embedded PostgreSQL's system user passes through (see private_tmp_dir)
    os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = None  # recomputed from TMPDIR on next use
    return root


def close_session_root(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


def system_tmp() -> str:
    """The temporary dir the session started with (before TMPDIR pointed into a session root)."""
    current = Path(tempfile.gettempdir())
    while current.name.startswith(ROOT_PREFIX):
        current = current.parent
    return str(current)


def remove_dead_roots() -> list[Path]:
    """Session roots whose pytest process is gone (killed, machine restarted) are removed."""
    removed = []
    for root in Path(system_tmp()).glob(ROOT_PREFIX + "*"):
        try:
            pid = int(root.name[len(ROOT_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if not session_alive(pid):
            shutil.rmtree(root, ignore_errors=True)
            removed.append(root)
    return removed


def session_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"pytest" in cmdline or b"xdist" in cmdline
