"""Resource sampling of one process: peak RSS (sampled every 50 ms, and the kernel's own
high-water mark) and CPU seconds used."""
from __future__ import annotations

import threading
import time

import psutil

MIB = 2**20


class ProcessMonitor:
    """Samples a process's RSS in a thread while a scenario runs.

    Use as `with ProcessMonitor(pid) as watch: ...`; afterwards watch.peak_rss,
    watch.start_rss and watch.cpu_seconds hold the figures of that span.

    watch.kernel_peak_rss is the kernel's VmHWM of the process (/proc/<pid>/status), which
    no sampling interval can miss. Writing 5 to /proc/<pid>/clear_refs resets that mark at the
    start, so it covers this span only; where the reset is refused (another user's process)
    it covers the process's whole life, and kernel_peak_since_start says so."""

    def __init__(self, pid: int | None, interval: float = 0.05) -> None:
        self.process = psutil.Process(pid) if pid else None
        self.interval = interval
        self.start_rss = 0
        self.peak_rss = 0
        self.cpu_seconds = 0.0
        self.kernel_peak_rss = 0
        self.kernel_peak_since_start = False
        self._cpu_start = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _cpu(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def _high_water_mark(self) -> int:
        try:
            for line in open(f"/proc/{self.process.pid}/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _reset_high_water_mark(self) -> None:
        try:
            with open(f"/proc/{self.process.pid}/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            self.kernel_peak_since_start = True

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            except psutil.Error:
                return

    def __enter__(self) -> "ProcessMonitor":
        if self.process is None:
            return self
        self._reset_high_water_mark()
        self.start_rss = self.peak_rss = self.process.memory_info().rss
        self._cpu_start = self._cpu()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.process is None:
            return
        self._stop.set()
        self._thread.join()
        try:
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            self.cpu_seconds = self._cpu() - self._cpu_start
            self.kernel_peak_rss = self._high_water_mark()
        except psutil.Error:
            pass

    @property
    def growth(self) -> int:
        return self.peak_rss - self.start_rss


class Stopwatch:
    def __enter__(self) -> "Stopwatch":
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc_info) -> None:
        self.seconds = time.perf_counter() - self.started
