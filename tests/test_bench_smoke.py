"""The benchmark harness runs every scenario once, small: `python -m bench --quick --size
32MiB --big` (the --big inputs shrunk to 8 and 24 MiB) starts its own SeaweedFS, database,
sagestore and @tus/server peer, and every row must end "ok" with its bytes verified by sha256.
It checks that each scenario works, never how fast it is: a scenario that crashes or is "not
available" fails here instead of dropping out of a later report. The goal check is tested on
made-up rows: a goal with a row that did not run is MISSED and names the row."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

from bench.report import goals, goals_text
from bench.runner import ALL, Result

REPO = Path(__file__).resolve().parent.parent
SIZE = 32 * 2**20
BIG_SIZES = {"1GiB": 8 * 2**20, "10GiB": 24 * 2**20}
SESSIONS = 4


def test_every_scenario_runs_and_returns_its_bytes(tmp_path):
    peer_modules = REPO / "bench" / "peer" / "node_modules" / "@tus" / "s3-store"
    assert peer_modules.exists(), (
        f"{peer_modules} is missing: run `npm ci` in bench/peer (scripts/test does) so that the "
        "@tus/server peer scenarios can run")
    output = tmp_path / "bench.json"
    env = {**os.environ, "BENCH_BIG_SIZES": "8MiB,24MiB"}
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--size", "32MiB", "--big",
                          "--concurrency", str(SESSIONS), "--json", str(output)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=540)
    assert output.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(output.read_text())
    results = {row["name"]: row for row in data["results"]}
    assert list(results) == ALL, (list(results), run.stderr[-3000:])
    not_ok = {name: f"{row['status']}: {row['note']}" for name, row in results.items() if row["status"] != "ok"}
    assert not not_ok, not_ok
    for name, row in results.items():
        if row["kind"] in ("upload", "download", "memory"):
            expected = BIG_SIZES[name.rsplit("-", 1)[1]] if row["kind"] == "memory" else SIZE
            assert row["verified"] is True and row["bytes"] == expected, row
        if not name.startswith("direct-") and row["kind"] != "requests":
            assert row["peak_rss_mib"] > 0 and row["kernel_peak_rss_mib"] >= row["peak_rss_mib"] * 0.5, row
    # CPU is printed as the sha256 floor measured in this run + the overhead beyond it
    assert 0.1 < data["sha256_floor_s_per_gib"] < 20, data["sha256_floor_s_per_gib"]
    for hashed in ("raw-put", "session-4-sha256"):
        assert results[hashed]["cpu_floor_s_per_gib"] == data["sha256_floor_s_per_gib"], hashed
    for unhashed in ("multipart-presigned", "multipart-proxied", "session-4", "get"):
        assert results[unhashed]["cpu_floor_s_per_gib"] == 0, unhashed
    assert re.search(r"\braw-put\b.*\d+\.\d\d = \d+\.\d\d \+ -?\d+\.\d\d", run.stdout), run.stdout[-3000:]
    assert results["concurrency"]["verified"] is True
    assert results["concurrency"]["bytes"] == SESSIONS * SIZE
    assert results["concurrency"]["extra"]["failures"] == 0
    for name in ("small-requests", "small-requests-jwt"):
        assert results[name]["extra"]["sagestore_rate"] > 0 and results[name]["extra"]["sagestore_errors"] == 0
    # every goal's rows ran (the figures themselves are not judged at this size)
    assert all(not goal["not_run"] for goal in data["goals"]), data["goals"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert "scenario" in run.stdout and "goals:" in run.stdout


def row(name: str, kind: str, status: str = "ok", ratio: float | None = 1.0, note: str = "") -> Result:
    return Result(name, kind, status=status, mb_s=100.0, ratio=ratio, note=note)


def test_a_goal_with_a_failed_row_is_missed_and_names_it():
    results = [row("direct-upload", "upload"), row("raw-put", "upload"),
               row("multipart-proxied", "upload", "failed", None, "NameError: name 'in_flight' is not defined"),
               row("direct-upload-end", "upload"), row("direct-get", "download"),
               row("get", "download", "not available", None, "GET answered 404"), row("direct-get-end", "download"),
               Result("big-raw-put-10GiB", "memory", status="failed", note="stopped: the server's RSS passed 8192 MiB")]
    by_measure = {goal["measure"]: goal for goal in goals(results)}
    uploads = by_measure["upload, any protocol, ÷ direct"]
    assert uploads["met"] is False and list(uploads["not_run"]) == ["multipart-proxied"]
    assert "NameError" in uploads["not_run"]["multipart-proxied"]
    downloads = by_measure["download ÷ direct"]
    assert downloads["met"] is False and list(downloads["not_run"]) == ["get"]
    memory = by_measure["RSS growth for a 10 GiB upload"]
    assert memory["met"] is False and "RSS passed" in memory["not_run"]["big-raw-put-10GiB"]
    # no tus row was selected: that goal is not measured, not met
    assert by_measure["tus ÷ @tus/server + s3-store"]["met"] is None
    text = goals_text(list(by_measure.values()))
    assert "MISSED" in text and "did not run: multipart-proxied failed: NameError" in text


def test_the_cpu_goal_judges_the_overhead_beyond_the_floor_by_each_rows_limit():
    def hashed(name: str, total: float, floor: float = 1.0) -> Result:
        return Result(name, "upload", mb_s=100.0, ratio=1.0, cpu_s_per_gib=total, cpu_floor_s_per_gib=floor)
    measure = "server CPU beyond the sha256 floor"
    within = [hashed("raw-put", 1.25), hashed("tus-16m", 1.45), hashed("get", 0.2, floor=0.0)]
    goal = next(g for g in goals(within) if g["measure"] == measure)
    assert goal["met"] is True and round(goal["values"]["tus-16m"], 2) == 0.45
    over = within + [hashed("session-4", 1.35)]  # 0.35 beyond the floor: a 0.3 row
    goal = next(g for g in goals(over) if g["measure"] == measure)
    assert goal["met"] is False and round(goal["values"]["session-4"], 2) == 0.35


def test_a_failed_baseline_misses_the_goal():
    results = [row("direct-upload", "upload", "failed", None, "ClientError"), row("raw-put", "upload", ratio=None),
               row("direct-upload-end", "upload", "failed", None, "ClientError")]
    uploads = goals(results)[0]
    assert uploads["met"] is False and set(uploads["not_run"]) == {"direct-upload", "direct-upload-end"}
