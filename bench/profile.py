"""Summaries of a py-spy `--format raw` profile (collapsed stacks: "f1;f2;...;fn count")."""
from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?P<line>:\d+)?\)$")


def _name(frame: str, *, line: bool = False) -> str:
    """'read (aiohttp/streams.py:400)' -> 'read (aiohttp/streams.py)' (or with :400 when line);
    shortens site-packages and checkout paths."""
    match = _LINE.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"] + (match["line"] or "" if line else "")
    for marker in ("site-packages/", "lib/python3.11/", "/work/wt/bench/", "/sagestore/"):
        if marker in path:
            path = path.split(marker, 1)[1] if marker != "/sagestore/" else "sagestore/" + path.split(marker, 1)[1]
    return f"{match['function']} ({path})"


def summarize(path: Path, top: int = 15) -> dict:
    own: Counter[str] = Counter()
    own_lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        raw = [frame for frame in stack.split(";") if not frame.startswith(("process ", "thread "))]
        if not raw:
            continue
        frames = [_name(frame) for frame in raw]
        total += samples
        own[frames[-1]] += samples
        own_lines[_name(raw[-1], line=True)] += samples
        for frame in set(frames):
            inclusive[frame] += samples

    def table(counter: Counter[str]) -> list[dict]:
        return [{"frame": frame, "samples": samples, "percent": round(100 * samples / total, 1)}
                for frame, samples in counter.most_common(top)]
    # frames under nearly every sample (runpy, asyncio's run loop) say nothing
    inclusive = Counter({frame: samples for frame, samples in inclusive.items() if samples < 0.9 * total})
    return {"samples": total, "self": table(own), "self_lines": table(own_lines), "inclusive": table(inclusive)}


def render(summary: dict) -> str:
    lines = [f"{summary['samples']} samples (active threads only)"]
    for title in ("self", "self_lines", "inclusive"):
        lines.append(f"  top by {title.replace('_', ' ')} time:")
        for row in summary.get(title, [])[:12]:
            lines.append(f"    {row['percent']:5.1f}%  {row['frame']}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(summarize(Path(sys.argv[1]))))
