"""Run a command (CI: scripts/test) and say how heavy its pytest was: the peak resident memory
of the largest pytest process, and of pytest and its xdist workers together (sampled from /proc
every 0.2 s; the servers, databases and browsers they start are counted apart), and how long
pytest took to exit after printing its summary line. Standard library only: it runs with the system
Python before the test venv exists. Its exit status is the command's.

    python3 .ci/measure.py scripts/test [pytest args...]
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
# pytest's closing line: "== 864 passed, 2 skipped in 934.21s (0:15:34) ==", or with -q without the "=="
SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?)\b.*|no tests ran)"
                     r" in [\d.]+s( \(\d+:\d\d:\d\d\))?\s*=*$")


def children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(name))
    return tree


def descendants(root: int) -> list[int]:
    tree, found, todo = children_map(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def rss_and_argv(pid: int) -> tuple[int, list[str]]:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            rss = int(handle.read().split()[1]) * PAGE
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().decode(errors="replace").split("\0")
        return rss, argv
    except (OSError, ValueError, IndexError):
        return 0, []


def is_pytest(argv: list[str]) -> bool:
    """pytest itself (`python -m pytest`, a `pytest` script) or one of its xdist workers (execnet
    starts them as `python -u -c "import sys;exec(eval(sys.stdin.readline()))"`). Not the servers
    the tests start, although their command lines may name a dir under pytest's basetemp."""
    if not argv or not argv[0]:
        return False
    if os.path.basename(argv[0]) in ("pytest", "py.test"):
        return True
    if any(argv[index] == "-m" and argv[index + 1] == "pytest" for index in range(len(argv) - 1)):
        return True
    return any("exec(eval(sys.stdin.readline()))" in arg for arg in argv)


class Sampler(threading.Thread):
    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_pytest = 0  # all pytest processes together
        self.peak_largest = 0  # the largest single one (what `/usr/bin/time -v` reports for serial runs)
        self.peak_tree = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            pytest_total = tree_total = 0
            for pid in descendants(self.root):
                rss, argv = rss_and_argv(pid)
                tree_total += rss
                if is_pytest(argv):
                    pytest_total += rss
                    self.peak_largest = max(self.peak_largest, rss)
            self.peak_pytest = max(self.peak_pytest, pytest_total)
            self.peak_tree = max(self.peak_tree, tree_total)
            self.halt.wait(0.2)


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    process = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
    sampler = Sampler(process.pid)
    sampler.start()
    summary_at = None
    buffer = b""
    while True:
        chunk = process.stdout.read1(65536) if hasattr(process.stdout, "read1") else process.stdout.read(65536)
        if not chunk:
            break
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if SUMMARY.match(line.decode(errors="replace").strip()):
                summary_at = time.monotonic()
    if buffer and SUMMARY.match(buffer.decode(errors="replace").strip()):
        summary_at = time.monotonic()
    status = process.wait()
    ended = time.monotonic()
    sampler.halt.set()
    sampler.join()
    delay = f"{ended - summary_at:.1f}s" if summary_at is not None else "unknown (no summary line)"
    print(f"pytest peak RSS {sampler.peak_largest / 2**20:.0f} MiB (largest pytest process; "
          f"{sampler.peak_pytest / 2**20:.0f} MiB pytest and its workers together, "
          f"{sampler.peak_tree / 2**20:.0f} MiB with the servers and browsers they started), "
          f"exit {delay} after its summary line")
    return status


if __name__ == "__main__":
    sys.exit(main())
