"""The stdout table, the goals check and the JSON document of a run."""
from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from .runner import RELAYED_DOWNLOADS, RELAYED_UPLOADS, Result

# uploads whose client sends without waiting for answers: judged against the bare relay's PUT
STREAMING_UPLOADS = ("form-put", "raw-put", "signed-put", "multipart-proxied", "session-4", "session-4-sha256")
# uploads whose client waits for each answer: judged against direct-sequential (one part in flight)
SEQUENTIAL_UPLOADS = ("offset-16m", "tus-16m", "tus-64m")
# server CPU s/GiB allowed beyond the bare relay's (plus the sha256 floor on rows that hash)
CPU_OVER_BARE_GOALS = {**dict.fromkeys(RELAYED_UPLOADS, 0.3), **dict.fromkeys(RELAYED_DOWNLOADS, 0.2)}
# wrk rows: sagestore's requests/s ÷ the bare reference's
WRK_GOALS = {"wrk-healthz": 0.8, "wrk-bucket-jwt": 0.5, "wrk-small-get": 0.8}

GOALS = [
    ("streaming upload ÷ bare relay", ">= 0.95 (form, raw, signed PUT, proxied parts, sessions)"),
    ("sequential upload ÷ direct-sequential", ">= 0.95 (offset chunks, tus)"),
    ("download ÷ bare relay GET", ">= 0.95"),
    ("tus ÷ @tus/server + s3-store", ">= 2.0"),
    ("RSS growth for a 10 GiB upload", "<= 100 MiB, 10 GiB / 1 GiB ratio <= 1.1"),
    ("100 concurrent sessions", "0 failures"),
    ("small requests with wrk ÷ bare", ">= 0.8 /healthz, 0.5 bucket info JWT, 0.8 small GET"),
    ("server CPU − bare relay", "<= sha256 floor + 0.3 s/GiB (uploads), <= 0.2 (downloads)"),
]


def overhead(result: Result) -> float | None:
    if result.cpu_s_per_gib is None or result.cpu_floor_s_per_gib is None:
        return None
    return result.cpu_s_per_gib - result.cpu_floor_s_per_gib


def over_bare(result: Result) -> float | None:
    """Server CPU s/GiB beyond the bare relay's and the sha256 floor: what the CPU goal judges."""
    if result.cpu_minus_bare_s_per_gib is None:
        return None
    return result.cpu_minus_bare_s_per_gib - (result.cpu_floor_s_per_gib or 0.0)


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
    header = ["scenario", "MB/s", "÷ direct", "÷ bare relay", "peak RSS MiB", "kernel peak", "RSS growth",
              "CPU s/GiB = floor + overhead", "CPU s/GiB − bare relay", "weed CPU", "client CPU", "verified", "note"]
    rows = [header]
    for r in results:
        if r.kind == "requests":
            rate = r.extra.get("sagestore_rate")
            # "÷ direct" holds sagestore's rate ÷ its bare reference's here
            rows.append([r.name, f"{rate:.0f} req/s" if rate else "-", _fmt(r.ratio, 2), "-", _fmt(r.peak_rss_mib, 0),
                         _fmt(r.kernel_peak_rss_mib, 0), "-", "-", "-", "-", "-", "-",
                         r.note if r.status == "ok" else f"{r.status}: {r.note}"])
            continue
        verified = {True: "sha256 ok", False: "MISMATCH", None: "-"}[r.verified]
        note = r.note if r.status == "ok" else f"{r.status.upper()}: {r.note}"
        rows.append([r.name, _fmt(r.mb_s), _fmt(r.ratio, 2), _fmt(r.bare_ratio, 2), _fmt(r.peak_rss_mib, 0),
                     _fmt(r.kernel_peak_rss_mib, 0), _fmt(r.rss_growth_mib, 0), cpu_cell(r),
                     _signed(r.cpu_minus_bare_s_per_gib), _fmt(r.weed_cpu_s_per_gib, 2),
                     _fmt(r.client_cpu_s_per_gib, 2), verified, note])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:])]
        lines.append("  ".join(cells + [row[-1]]).rstrip())
        if index == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def markdown_table(results: list[Result]) -> str:
    lines = ["| scenario | MB/s | ÷ direct | ÷ bare relay | peak RSS MiB (50 ms samples) | kernel peak RSS MiB "
             "| RSS growth MiB | CPU s/GiB = sha256 floor + overhead | CPU s/GiB − bare relay | weed CPU s/GiB "
             "| client CPU s/GiB | verified | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        if r.kind == "requests":
            rate = r.extra.get("sagestore_rate")
            note = r.note if r.status == "ok" else f"**{r.status}**: {r.note}"
            lines.append(f"| {r.name} | {f'{rate:.0f} req/s' if rate else '-'} | {_fmt(r.ratio, 2)} (÷ bare) | - | "
                         f"{_fmt(r.peak_rss_mib, 0)} | {_fmt(r.kernel_peak_rss_mib, 0)} | - | - | - | - | - | - | {note} |")
            continue
        verified = {True: "sha256 ok", False: "MISMATCH", None: "-"}[r.verified]
        note = r.note if r.status == "ok" else f"**{r.status}**: {r.note}"
        lines.append(f"| {r.name} | {_fmt(r.mb_s)} | {_fmt(r.ratio, 2)} | {_fmt(r.bare_ratio, 2)} | "
                     f"{_fmt(r.peak_rss_mib, 0)} | {_fmt(r.kernel_peak_rss_mib, 0)} | {_fmt(r.rss_growth_mib, 0)} | "
                     f"{cpu_cell(r)} | {_signed(r.cpu_minus_bare_s_per_gib)} | {_fmt(r.weed_cpu_s_per_gib, 2)} | "
                     f"{_fmt(r.client_cpu_s_per_gib, 2)} | {verified} | {note} |")
    return "\n".join(lines)


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

    def rows_of(names: tuple[str, ...]) -> list[Result]:
        return [by_name[name] for name in names if name in by_name]

    def with_baselines(rows: list[Result], baselines: tuple[str, ...]) -> list[Result]:
        return rows + [by_name[name] for name in baselines if rows and name in by_name]

    def judged_by_row(goal: dict[str, Any], limits: dict[str, float]) -> dict[str, Any]:
        """A goal whose rows have limits of their own (values must stay at or under them)."""
        if goal["met"]:
            goal["met"] = all(value <= limits[name] for name, value in goal["values"].items())
        return goal

    streaming_rows = rows_of(STREAMING_UPLOADS)
    streaming = {r.name: r.bare_ratio for r in streaming_rows if r.status == "ok"}
    sequential_rows = rows_of(SEQUENTIAL_UPLOADS)
    one_in_flight = ok.get("direct-sequential")
    sequential = {r.name: r.mb_s / one_in_flight.mb_s for r in sequential_rows
                  if r.status == "ok" and r.mb_s and one_in_flight and one_in_flight.mb_s}
    download_rows = rows_of(RELAYED_DOWNLOADS)
    downloads = {r.name: r.bare_ratio for r in download_rows if r.status == "ok"}
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
    memory_goal = check(GOALS[4][0], GOALS[4][1], memory_rows, memory, lambda v: True)
    if memory_goal["met"] and memory_ok:
        memory_goal["met"] = all(memory_ok)
    concurrency = by_name.get("concurrency")
    concurrency_values = {"failures": concurrency.extra.get("failures"), "sessions": concurrency.extra.get("sessions"),
                          "aggregate MB/s": concurrency.mb_s} if concurrency and concurrency.extra else {}
    concurrency_goal = check(GOALS[5][0], GOALS[5][1], [concurrency] if concurrency else [],
                             {"failures": concurrency_values.get("failures")}, lambda v: v == 0)
    concurrency_goal["values"] = {k: v for k, v in concurrency_values.items() if v is not None}
    wrk_rows = rows_of(tuple(WRK_GOALS))
    wrk_values = {r.name: r.ratio for r in wrk_rows if r.status == "ok"}
    wrk_goal = check(GOALS[6][0], GOALS[6][1], wrk_rows, wrk_values, lambda v: True)
    if wrk_goal["met"]:
        wrk_goal["met"] = all(value >= WRK_GOALS[name] for name, value in wrk_goal["values"].items())
    cpu_rows = rows_of(tuple(CPU_OVER_BARE_GOALS))
    cpu_values = {r.name: over_bare(r) for r in cpu_rows if r.status == "ok"}
    cpu_goal = judged_by_row(check(GOALS[7][0], GOALS[7][1],
                                   with_baselines(cpu_rows, ("bare-relay-put", "bare-relay-get")), cpu_values,
                                   lambda v: True), CPU_OVER_BARE_GOALS)
    return [
        check(GOALS[0][0], GOALS[0][1], with_baselines(streaming_rows, ("bare-relay-put",)), streaming,
              lambda v: v >= 0.95),
        check(GOALS[1][0], GOALS[1][1], with_baselines(sequential_rows, ("direct-sequential",)), sequential,
              lambda v: v >= 0.95),
        check(GOALS[2][0], GOALS[2][1], with_baselines(download_rows, ("bare-relay-get",)), downloads,
              lambda v: v >= 0.95),
        check(GOALS[3][0], GOALS[3][1], tus_rows, tus, lambda v: v >= 2.0),
        memory_goal,
        concurrency_goal,
        wrk_goal,
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
        lines.append(f"  {row['measure']:<38} goal {row['goal']:<58} {met:<12} {values}")
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
