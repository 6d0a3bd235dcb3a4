"""Opt-in (Hugging Face `datasets` is not in the test extra): load_dataset reads Parquet shards from
sage:// by glob, downloaded (into a private cache) and streamed. Run it with

    pip install datasets
    python -m pytest -p no:cacheprovider tests/hf_datasets.py

(the file is not named test_*.py, so the default run never collects it)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sagestore.client import Client



@pytest.fixture
def shards(served):
    options = {"endpoint": served.url, "token": served.token("alice")}
    with Client(served.url, served.token("alice")) as alice:
        bucket = alice.create_bucket("training-data", "hf-datasets")["id"]
    for number in range(3):
        pd.DataFrame({"text": [f"row {number}-{j}" for j in range(100)], "label": np.arange(100) % 2}).to_parquet(
            f"sage://{bucket}/train/part-{number}.parquet", storage_options=options)
    return f"sage://{bucket}/train/part-*.parquet", options


def test_load_dataset_downloaded_and_streamed(shards, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    import datasets
    files, options = shards
    loaded = datasets.load_dataset("parquet", data_files=files, storage_options=options, split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert len(loaded) == 300 and sorted(loaded["text"])[0] == "row 0-0"
    streamed = datasets.load_dataset("parquet", data_files=files, storage_options=options, split="train",
                                     streaming=True)
    assert sorted(row["text"] for row in streamed) == sorted(loaded["text"])
