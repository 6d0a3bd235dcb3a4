"""The benchmark harness still runs end to end: `python -m bench --quick --only direct,raw-put`
starts its own SeaweedFS, database and sagestore, uploads 64 MiB and verifies it. It checks
that the harness works, not how fast anything is."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_quick_benchmark_runs_and_verifies(tmp_path):
    output = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "direct,raw-put",
                          "--json", str(output)], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = {row["name"]: row for row in json.loads(output.read_text())["results"]}
    assert set(results) == {"direct-upload", "direct-sequential", "raw-put", "direct-upload-end", "direct-get",
                            "direct-get-end"}
    for name in ("direct-upload", "direct-sequential", "direct-upload-end", "direct-get", "direct-get-end"):
        assert results[name]["status"] == "ok" and results[name]["verified"] is True, results[name]
        assert results[name]["bytes"] == 64 * 2**20
    # the SAGE PUT either works and stored the same bytes, or is reported as not there yet
    raw_put = results["raw-put"]
    assert raw_put["status"] in ("ok", "not available"), raw_put
    if raw_put["status"] == "ok":
        assert raw_put["verified"] is True and raw_put["ratio"] > 0 and raw_put["peak_rss_mib"] > 0
    else:
        assert "404" in raw_put["note"] or "405" in raw_put["note"]
    assert "scenario" in run.stdout and "goals:" in run.stdout
