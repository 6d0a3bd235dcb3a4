"""The fault harness: kill -9 of `sagestore serve` mid-upload on every path (matrix.py), with
one resumable client per path (clients.py). `python -m tests.faults` runs the full matrix;
tests/test_fault_matrix.py runs one trial per path in CI."""
