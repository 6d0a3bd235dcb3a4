"""The benchmark harness runs every scenario once, small: `python -m bench --quick --size
32MiB --big` (the --big inputs shrunk to 8 and 24 MiB) starts its own SeaweedFS, database,
sagestore, bare relay and @tus/server peer, and every row must end "ok" with its bytes verified
by sha256; every relayed row carries its ÷ bare relay and CPU − bare relay columns, and the wrk
rows their figures for both servers.
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
from bench.runner import ALL, RELAYED_DOWNLOADS, RELAYED_UPLOADS, WRK, Result

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
    # the bare relay's rows, and every relayed row against them (same round)
    for name in ("bare-relay-put", "bare-relay-get"):
        assert results[name]["cpu_s_per_gib"] > 0 and results[name]["bare_ratio"] is None, results[name]
    for name in RELAYED_UPLOADS + RELAYED_DOWNLOADS:
        row, bare = results[name], results["bare-relay-put" if name in RELAYED_UPLOADS else "bare-relay-get"]
        assert abs(row["bare_ratio"] - row["mb_s"] / bare["mb_s"]) < 1e-6, row
        assert abs(row["cpu_minus_bare_s_per_gib"] - (row["cpu_s_per_gib"] - bare["cpu_s_per_gib"])) < 1e-6, row
    for name in ("direct-upload", "multipart-presigned", "peer-tus-16m", "direct-get"):
        assert results[name]["bare_ratio"] is None and results[name]["cpu_minus_bare_s_per_gib"] is None, name
    header = next(line for line in run.stdout.splitlines() if line.startswith("scenario"))
    assert "÷ bare relay" in header and "CPU s/GiB − bare relay" in header, header
    assert re.search(r"^raw-put\b.* [+-]\d+\.\d\d ", run.stdout, re.M), run.stdout[-3000:]
    # wrk against sagestore and its bare reference: both answered, no errors, CPU per request known
    for name in WRK:
        extra = results[name]["extra"]
        assert extra["sagestore_rate"] > 0 and extra["bare_rate"] > 0, results[name]
        assert extra["sagestore_errors"] == 0 and extra["bare_errors"] == 0, results[name]
        assert extra["sagestore_cpu_us_per_request"] > 0 and extra["bare_cpu_us_per_request"] > 0, results[name]
        assert abs(results[name]["ratio"] - extra["sagestore_rate"] / extra["bare_rate"]) < 1e-6
    assert results["wrk-bucket-jwt"]["extra"]["targets"] == 256 and results["wrk-small-get"]["extra"]["targets"] == 16
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
    return Result(name, kind, status=status, mb_s=100.0, ratio=ratio, bare_ratio=ratio, note=note)


STREAMING = "streaming upload ÷ bare relay"
CPU = "server CPU − bare relay"


def test_a_goal_with_a_failed_row_is_missed_and_names_it():
    results = [row("direct-upload", "upload"), row("bare-relay-put", "upload", ratio=None), row("raw-put", "upload"),
               row("multipart-proxied", "upload", "failed", None, "NameError: name 'in_flight' is not defined"),
               row("direct-upload-end", "upload"), row("direct-get", "download"),
               row("bare-relay-get", "download", ratio=None),
               row("get", "download", "not available", None, "GET answered 404"), row("direct-get-end", "download"),
               Result("big-raw-put-10GiB", "memory", status="failed", note="stopped: the server's RSS passed 8192 MiB")]
    by_measure = {goal["measure"]: goal for goal in goals(results)}
    uploads = by_measure[STREAMING]
    assert uploads["met"] is False and list(uploads["not_run"]) == ["multipart-proxied"]
    assert "NameError" in uploads["not_run"]["multipart-proxied"]
    downloads = by_measure["download ÷ bare relay GET"]
    assert downloads["met"] is False and list(downloads["not_run"]) == ["get"]
    memory = by_measure["RSS growth for a 10 GiB upload"]
    assert memory["met"] is False and "RSS passed" in memory["not_run"]["big-raw-put-10GiB"]
    # no tus row was selected: that goal is not measured, not met
    assert by_measure["tus ÷ @tus/server + s3-store"]["met"] is None
    text = goals_text(list(by_measure.values()))
    assert "MISSED" in text and "did not run: multipart-proxied failed: NameError" in text


def test_the_cpu_goal_judges_the_cpu_beyond_the_bare_relay_and_the_floor_by_each_rows_limit():
    def relayed(name: str, beyond_bare: float, floor: float = 1.0) -> Result:
        return Result(name, "upload", mb_s=100.0, ratio=1.0, cpu_s_per_gib=1.5 + beyond_bare,
                      cpu_minus_bare_s_per_gib=beyond_bare, cpu_floor_s_per_gib=floor)
    within = [relayed("raw-put", 1.25), relayed("tus-16m", 1.28), relayed("get", 0.15, floor=0.0)]
    goal = next(g for g in goals(within) if g["measure"] == CPU)
    assert goal["met"] is True and round(goal["values"]["tus-16m"], 2) == 0.28
    over = within + [relayed("session-4", 1.35)]  # 0.35 beyond bare relay + floor: a 0.3 row
    goal = next(g for g in goals(over) if g["measure"] == CPU)
    assert goal["met"] is False and round(goal["values"]["session-4"], 2) == 0.35
    download_over = within + [relayed("range-get", 0.25, floor=0.0)]  # downloads may add 0.2 only
    assert next(g for g in goals(download_over) if g["measure"] == CPU)["met"] is False


def test_uploads_that_wait_for_answers_are_judged_against_direct_sequential():
    results = [row("direct-sequential", "upload"), Result("tus-16m", "upload", mb_s=96.0),
               Result("offset-16m", "upload", mb_s=90.0)]
    goal = next(g for g in goals(results) if g["measure"] == "sequential upload ÷ direct-sequential")
    assert goal["met"] is False and goal["values"] == {"tus-16m": 0.96, "offset-16m": 0.9}


def test_wrk_rows_are_judged_by_their_own_goals():
    def wrk_row(name: str, ratio: float) -> Result:
        return Result(name, "requests", ratio=ratio)
    measure = "small requests with wrk ÷ bare"
    met = [wrk_row("wrk-healthz", 0.8), wrk_row("wrk-bucket-jwt", 0.5), wrk_row("wrk-small-get", 0.85)]
    assert next(g for g in goals(met) if g["measure"] == measure)["met"] is True
    missed = met[:1] + [wrk_row("wrk-bucket-jwt", 0.49)] + met[2:]
    assert next(g for g in goals(missed) if g["measure"] == measure)["met"] is False


def test_a_failed_baseline_misses_the_goal():
    results = [row("bare-relay-put", "upload", "failed", None, "ClientError"), row("raw-put", "upload", ratio=None)]
    uploads = next(g for g in goals(results) if g["measure"] == STREAMING)
    assert uploads["met"] is False and set(uploads["not_run"]) == {"bare-relay-put"}
