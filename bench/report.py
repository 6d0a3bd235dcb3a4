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

GOALS = [
    ("upload, any protocol, ÷ direct", ">= 0.9"),
    ("download ÷ direct", ">= 0.9"),
    ("tus ÷ @tus/server + s3-store", ">= 2.0"),
    ("RSS growth for a 10 GiB upload", "<= 100 MiB, 10 GiB / 1 GiB ratio <= 1.1"),
    ("100 concurrent sessions", "0 failures"),
    ("small requests ÷ bare aiohttp", ">= 0.5"),
]


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
    header = ["scenario", "MB/s", "÷ direct", "peak RSS MiB", "RSS growth", "CPU s/GiB", "weed CPU", "client CPU",
              "verified", "note"]
    rows = [header]
    for r in results:
        if r.kind == "requests":
            rate = r.extra.get("sagestore_rate")
            rows.append([r.name, f"{rate:.0f} req/s" if rate else "-", _fmt(r.ratio, 2), _fmt(r.peak_rss_mib, 0),
                         "-", "-", "-", "-", "-", r.note if r.status == "ok" else f"{r.status}: {r.note}"])
            continue
        verified = {True: "sha256 ok", False: "MISMATCH", None: "-"}[r.verified]
        note = r.note if r.status == "ok" else f"{r.status.upper()}: {r.note}"
        rows.append([r.name, _fmt(r.mb_s), _fmt(r.ratio, 2), _fmt(r.peak_rss_mib, 0), _fmt(r.rss_growth_mib, 0),
                     _fmt(r.cpu_s_per_gib, 2), _fmt(r.weed_cpu_s_per_gib, 2), _fmt(r.client_cpu_s_per_gib, 2),
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
    lines = ["| scenario | MB/s | ÷ direct | peak RSS MiB | RSS growth MiB | CPU s/GiB | weed CPU s/GiB "
             "| client CPU s/GiB | verified | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        if r.kind == "requests":
            rate = r.extra.get("sagestore_rate")
            lines.append(f"| {r.name} | {f'{rate:.0f} req/s' if rate else '-'} | {_fmt(r.ratio, 2)} | "
                         f"{_fmt(r.peak_rss_mib, 0)} | - | - | - | - | - | {r.note if r.status == 'ok' else r.status + ': ' + r.note} |")
            continue
        verified = {True: "sha256 ok", False: "MISMATCH", None: "-"}[r.verified]
        note = r.note if r.status == "ok" else f"**{r.status}**: {r.note}"
        lines.append(f"| {r.name} | {_fmt(r.mb_s)} | {_fmt(r.ratio, 2)} | {_fmt(r.peak_rss_mib, 0)} | "
                     f"{_fmt(r.rss_growth_mib, 0)} | {_fmt(r.cpu_s_per_gib, 2)} | {_fmt(r.weed_cpu_s_per_gib, 2)} | "
                     f"{_fmt(r.client_cpu_s_per_gib, 2)} | {verified} | {note} |")
    return "\n".join(lines)


def goals(results: list[Result]) -> list[dict[str, Any]]:
    by_name = {r.name: r for r in results}
    ok = {name: r for name, r in by_name.items() if r.status == "ok"}

    def check(measure: str, goal: str, values: dict[str, float | None], passes) -> dict[str, Any]:
        measured = {k: v for k, v in values.items() if v is not None}
        met = None if not measured else all(passes(v) for v in measured.values())
        return {"measure": measure, "goal": goal, "values": measured, "met": met}

    uploads = {r.name: r.ratio for r in results if r.kind == "upload" and not r.name.startswith(("direct", "peer"))
               and r.status == "ok"}
    downloads = {r.name: r.ratio for r in results if r.kind == "download" and not r.name.startswith("direct")
                 and r.status == "ok"}
    tus = {}
    for chunk in ("16m", "64m"):
        ours, peer = ok.get(f"tus-{chunk}"), ok.get(f"peer-tus-{chunk}")
        if ours and peer and ours.mb_s and peer.mb_s:
            tus[f"tus-{chunk} ÷ peer-tus-{chunk}"] = ours.mb_s / peer.mb_s
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
    concurrency = by_name.get("concurrency")
    small = ok.get("small-requests")
    rows = [
        check(GOALS[0][0], GOALS[0][1], uploads, lambda v: v >= 0.9),
        check(GOALS[1][0], GOALS[1][1], downloads, lambda v: v >= 0.9),
        check(GOALS[2][0], GOALS[2][1], tus, lambda v: v >= 2.0),
        {"measure": GOALS[3][0], "goal": GOALS[3][1], "values": memory,
         "met": all(memory_ok) if memory_ok else None},
        {"measure": GOALS[4][0], "goal": GOALS[4][1],
         "values": {"failures": concurrency.extra.get("failures"), "sessions": concurrency.extra.get("sessions"),
                    "aggregate MB/s": concurrency.mb_s} if concurrency and concurrency.extra else {},
         "met": concurrency.extra.get("failures") == 0 if concurrency and concurrency.extra else None},
        check(GOALS[5][0], GOALS[5][1], {"bucket info": small.ratio} if small else {}, lambda v: v >= 0.5),
    ]
    return rows


def goals_text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        met = {True: "met", False: "MISSED", None: "not measured"}[row["met"]]
        values = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row["values"].items())
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
