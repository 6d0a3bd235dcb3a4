"""pyflakes over the code and the harness: an undefined name (like the `in_flight` that made two
bench scenarios crash unnoticed) or an unused import fails the suite, not a later run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_pyflakes_finds_nothing():
    run = subprocess.run([sys.executable, "-m", "pyflakes", "sagestore", "bench", "tests"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert "No module named pyflakes" not in run.stderr, "pyflakes is in the test extra: pip install -e '.[test]'"
    assert run.returncode == 0 and not run.stdout.strip(), run.stdout + run.stderr
