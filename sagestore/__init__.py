"""sagestore: an object store frontend for ML models and training data."""
__version__ = "0.1.0"
