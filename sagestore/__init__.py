"""sagestore: an object store frontend for ML models and training data."""
from importlib.metadata import PackageNotFoundError, version

try:
    # one source of truth: pyproject.toml's version, as installed (wheel or editable)
    __version__ = version("sagestore")
except PackageNotFoundError:  # a source tree that was never pip-installed
    __version__ = "0+unknown"
