"""The stdout table, the goals check and the JSON document of a run."""
from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from .runner import Result

# server CPU beyond the floor (s/GiB), per row; GET rows have no floor, so theirs is all of it
CPU_OVERHEAD_GOALS = {**dict.fromkeys(("raw-put", "form-put", "signed-put", "multipart-proxied", "multipart-presigned",
                                       "session-4", "session-4-sha256"), 0.3),
                      **dict.fromkeys(("tus-16m", "tus-64m", "offset-16m"), 0.5),
                      **dict.fromkeys(("get", "signed-get", "range-get"), 0.3)}

GOALS = [
    ("upload, any protocol, ÷ direct", ">= 0.9"),
    ("download ÷ direct", ">= 0.9"),
    ("tus ÷ @tus/server + s3-store", ">= 2.0"),
    ("RSS growth for a 10 GiB upload", "<= 100 MiB, 10 GiB / 1 GiB ratio <= 1.1"),
    ("100 concurrent sessions", "0 failures"),
    ("small requests ÷ bare aiohttp", ">= 0.5"),
    ("server CPU beyond the sha256 floor", "<= 0.3 s/GiB (tus, offset: 0.5)"),
]


def overhead(result: Result) -> float | None:
    if result.cpu_s_per_gib is None or result.cpu_floor_s_per_gib is None:
        return None
    return result.cpu_s_per_gib - result.cpu_floor_s_per_gib


def cpu_cell(result: Result) -> str:
    """'3.05 = 1.02 + 2.03': total = sha256 floor + overhead (older runs: the total alone)."""
    extra = overhead(result)
    if extra is None or not result.cpu_floor_s_per_gib:
        return _fmt(result.cpu_s_per_gib, 2)
    return f"{result.cpu_s_per_gib:.2f} = {result.cpu_floor_s_per_gib:.2f} + {extra:.2f}"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu": model, "python": platform.python_version(), "system": platform.platform()}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(results: list[Result]) -> str:
    header = ["scenario", "MB/s", "÷ direct", "peak RSS MiB", "kernel peak", "RSS growth", "CPU s/GiB = floor + overhead", "weed CPU", "client CPU",
              "verified", "note"]
    rows = [header]
    for r in results:
        if r.kind == "requests":
            rate = r.extra.get("sagestore_rate")
            rows.append([r.name, f"{rate:.0f} req/s" if rate else "-", _fmt(r.ratio, 2), _fmt(r.peak_rss_mib, 0),
                         _fmt(r.kernel_peak_rss_mib, 0), "-", "-", "-", "-", "-", r.note if r.status == "ok" else f"{r.status}: {r.note}"])
            continue
        verified = {True: "sha256 ok", False: "MISMATCH", None: "-"}[r.verified]
        note = r.note if r.status == "ok" else f"{r.status.upper()}: {r.note}"
        rows.append([r.name, _fmt(r.mb_s), _fmt(r.ratio, 2), _fmt(r.peak_rss_mib, 0), _fmt(r.kernel_peak_rss_mib, 0),
                     _fmt(r.rss_growth_mib, 0),
                     cpu_cell(r), _fmt(r.weed_cpu_s_per_gib, 2), _fmt(r.client_cpu_s_per_gib, 2),
                     verified, note])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:])]
        lines.append("  ".join(cells + [row[-1]]).rstrip())
        if index == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def markdown_table(results: list[Result]) -> str:
    lines = ["| scenario | MB/s | ÷ direct | peak RSS MiB (50 ms samples) | kernel peak RSS MiB | RSS growth MiB "
             "| CPU s/GiB = sha256 floor + overhead | weed CPU s/GiB | client CPU s/GiB | verified | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        if r.kind == "requests":
            rate = r.extra.get("sagestore_rate")
            lines.append(f"| {r.name} | {f'{rate:.0f} req/s' if rate else '-'} | {_fmt(r.ratio, 2)} | "
                         f"{_fmt(r.peak_rss_mib, 0)} | {_fmt(r.kernel_peak_rss_mib, 0)} | - | - | - | - | - | {r.note if r.status == 'ok' else r.status + ': ' + r.note} |")
            continue
        verified = {True: "sha256 ok", False: "MISMATCH", None: "-"}[r.verified]
        note = r.note if r.status == "ok" else f"**{r.status}**: {r.note}"
        lines.append(f"| {r.name} | {_fmt(r.mb_s)} | {_fmt(r.ratio, 2)} | {_fmt(r.peak_rss_mib, 0)} | "
                     f"{_fmt(r.kernel_peak_rss_mib, 0)} | {_fmt(r.rss_growth_mib, 0)} | {cpu_cell(r)} | {_fmt(r.weed_cpu_s_per_gib, 2)} | "
                     f"{_fmt(r.client_cpu_s_per_gib, 2)} | {verified} | {note} |")
    return "\n".join(lines)


# the rows each goal is made of besides its own measured rows: the baselines its ratios divide by
UPLOAD_BASELINES = ("direct-upload", "direct-upload-end")
DOWNLOAD_BASELINES = ("direct-get", "direct-get-end")
TUS_ROWS = ("tus-16m", "tus-64m", "peer-tus-16m", "peer-tus-64m")


def goals(results: list[Result]) -> list[dict[str, Any]]:
    """One row per goal. A goal is met only when every scenario it is made of ran: a row
    that failed, was not available or was stopped at the RSS limit makes it MISSED, and
    `not_run` names that row. A goal none of whose scenarios was selected is not measured."""
    by_name = {r.name: r for r in results}
    ok = {name: r for name, r in by_name.items() if r.status == "ok"}

    def check(measure: str, goal: str, rows: list[Result], values: dict[str, float | None], passes) -> dict[str, Any]:
        measured = {k: v for k, v in values.items() if v is not None}
        not_run = {r.name: f"{r.status}: {r.note}" for r in rows if r.status != "ok"}
        if not_run:
            met: bool | None = False
        elif not rows:
            met = None
        elif not measured:
            met = None  # e.g. only one of the two sizes a ratio needs was selected
        else:
            met = all(passes(v) for v in measured.values())
        return {"measure": measure, "goal": goal, "values": measured, "met": met, "not_run": not_run}

    upload_rows = [r for r in results if r.kind == "upload" and not r.name.startswith(("direct", "peer"))]
    download_rows = [r for r in results if r.kind == "download" and not r.name.startswith("direct")]

    def with_baselines(rows: list[Result], baselines: tuple[str, ...]) -> list[Result]:
        return rows + [by_name[name] for name in baselines if rows and name in by_name]
    uploads = {r.name: r.ratio for r in upload_rows if r.status == "ok"}
    downloads = {r.name: r.ratio for r in download_rows if r.status == "ok"}
    tus_rows = [by_name[name] for name in TUS_ROWS if name in by_name]
    tus = {}
    for chunk in ("16m", "64m"):
        ours, peer = ok.get(f"tus-{chunk}"), ok.get(f"peer-tus-{chunk}")
        if ours and peer and ours.mb_s and peer.mb_s:
            tus[f"tus-{chunk} ÷ peer-tus-{chunk}"] = ours.mb_s / peer.mb_s
    memory_rows = [r for r in results if r.kind == "memory"]
    memory: dict[str, float | None] = {}
    memory_ok = []
    for protocol in ("raw-put", "tus"):
        small, big = ok.get(f"big-{protocol}-1GiB"), ok.get(f"big-{protocol}-10GiB")
        if big:
            memory[f"{protocol} 10 GiB growth MiB"] = big.rss_growth_mib
            memory_ok.append(big.rss_growth_mib <= 100)
        if small and big and small.peak_rss_mib:
            ratio = big.peak_rss_mib / small.peak_rss_mib
            memory[f"{protocol} peak RSS 10 GiB / 1 GiB"] = ratio
            memory_ok.append(ratio <= 1.1)
    memory_goal = check(GOALS[3][0], GOALS[3][1], memory_rows, memory, lambda v: True)
    if memory_goal["met"] and memory_ok:
        memory_goal["met"] = all(memory_ok)
    concurrency = by_name.get("concurrency")
    concurrency_values = {"failures": concurrency.extra.get("failures"), "sessions": concurrency.extra.get("sessions"),
                          "aggregate MB/s": concurrency.mb_s} if concurrency and concurrency.extra else {}
    concurrency_goal = check(GOALS[4][0], GOALS[4][1], [concurrency] if concurrency else [],
                             {"failures": concurrency_values.get("failures")}, lambda v: v == 0)
    concurrency_goal["values"] = {k: v for k, v in concurrency_values.items() if v is not None}
    cpu_rows = [r for name, r in by_name.items() if name in CPU_OVERHEAD_GOALS]
    cpu_values = {r.name: overhead(r) for r in cpu_rows if r.status == "ok"}
    cpu_goal = check(GOALS[6][0], GOALS[6][1], cpu_rows, cpu_values, lambda v: True)
    if cpu_goal["met"]:
        cpu_goal["met"] = all(value <= CPU_OVERHEAD_GOALS[name] for name, value in cpu_goal["values"].items())
    small_rows = [r for r in results if r.kind == "requests"]
    small_values = {f"bucket info ({r.name})": r.ratio for r in small_rows if r.status == "ok"}
    return [
        check(GOALS[0][0], GOALS[0][1], with_baselines(upload_rows, UPLOAD_BASELINES), uploads, lambda v: v >= 0.9),
        check(GOALS[1][0], GOALS[1][1], with_baselines(download_rows, DOWNLOAD_BASELINES), downloads,
              lambda v: v >= 0.9),
        check(GOALS[2][0], GOALS[2][1], tus_rows, tus, lambda v: v >= 2.0),
        memory_goal,
        concurrency_goal,
        check(GOALS[5][0], GOALS[5][1], small_rows, small_values, lambda v: v >= 0.5),
        cpu_goal,
    ]


def goals_text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        met = {True: "met", False: "MISSED", None: "not measured"}[row["met"]]
        values = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row["values"].items())
        not_run = "; ".join(f"{name} {why[:120]}" for name, why in row.get("not_run", {}).items())
        if not_run:
            values = ", ".join(filter(None, [values, f"did not run: {not_run}"]))
        lines.append(f"  {row['measure']:<34} goal {row['goal']:<40} {met:<12} {values}")
    return "\n".join(lines)


def document(results: list[Result], **extra: Any) -> dict[str, Any]:
    return {**extra, "machine": machine(), "results": [asdict(r) for r in results], "goals": goals(results)}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def load(path: Path) -> tuple[dict[str, Any], list[Result]]:
    """A saved run; rows of several rounds get the true medians again (runs written before
    the median fix showed the higher of two rounds)."""
    import statistics
    data = json.loads(path.read_text())
    results = [Result(**row) for row in data["results"]]
    for result in results:
        speeds = [v for v in result.extra.get("rounds_mb_s", []) if v]
        ratios = [v for v in result.extra.get("rounds_ratio", []) if v]
        if len(speeds) > 1:
            result.mb_s = statistics.median(speeds)
        if len(ratios) > 1:
            result.ratio = statistics.median(ratios)
    return data, results


def main() -> None:
    """`python -m bench.report RESULTS.json`: the tables and goals of a saved run again."""
    import sys
    data, results = load(Path(sys.argv[1]))
    print(f"{data.get('date')}, {data['args']['size'] / 2**20:.0f} MiB, {data['machine']['cores']} cores, "
          f"{data['machine']['memory_gib']} GiB, rounds {data['args'].get('rounds', 1)}, load average "
          f"{data['load_average']['before'][0]:.1f} -> {data['load_average']['after'][0]:.1f}")
    print(table(results))
    print("\ngoals:")
    print(goals_text(goals(results)))
    print()
    print(markdown_table(results))


if __name__ == "__main__":
    main()
