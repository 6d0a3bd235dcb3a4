"""bench/parquet_column.py runs end to end, small: `python -m bench.parquet_column --size 8MiB
--rounds 1` starts its own SeaweedFS, database and sagestore, reads one column through sage:// and
through s3fs, and checks every column read against the sha256 of the column written. It checks that
the benchmark works and that sage:// fetches about the column only, never how fast it is."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_parquet_column_benchmark_runs_and_reads_the_right_bytes(tmp_path):
    output = tmp_path / "parquet.json"
    run = subprocess.run([sys.executable, "-m", "bench.parquet_column", "--size", "8MiB", "--rounds", "1",
                          "--json", str(output)], cwd=REPO, capture_output=True, text=True, timeout=540)
    assert run.returncode == 0 and output.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(output.read_text())
    assert set(data["results"]) == {"sage", "s3fs", "s3fs-no-readahead"}
    assert all(row["verified"] and row["seconds"] > 0 for row in data["results"].values())
    sage = data["results"]["sage"]
    # the column and the file's 64 KiB tail (the footer), counted by the client and by the server
    assert data["column_bytes"] <= sage["fetched_bytes"] <= data["column_bytes"] + 64 * 1024, data
    assert sage["served_bytes"] == sage["fetched_bytes"], data
    assert data["results"]["s3fs-no-readahead"]["fetched_bytes"] >= data["column_bytes"], data
    assert "uptime before" in run.stdout and "÷ s3fs" in run.stdout
