"""The fault harness: kill -9 of `sagestore serve` mid-upload on every path (matrix.py), with
one resumable client per path (clients.py). `python -m tests.faults` runs the full matrix;
tests/test_fault_matrix.py runs one trial per path in CI."""

import sys
from pathlib import Path

# the harness starts servers and creates buckets with the tests' helpers (tests/support), also
# when it runs as `python -m tests.faults` from the repository root
_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.append(_TESTS)
