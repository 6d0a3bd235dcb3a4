"""The sagestore benchmark harness: `python -m bench --help`. Not part of the test suite."""
