"""`python -m sagestore serve` on its own data dir, as a real subprocess, and the checks
that no postgres or weed process outlives it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

from sagestore.embedded import free_port

REPO = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """The test runner's environment without any SAGESTORE_* setting: fully embedded."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAGESTORE_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def processes_using(data_dir: Path) -> list[psutil.Process]:
    """Live processes whose command line names the data dir (postgres -D, weed -dir, sagestore)."""
    marker = str(data_dir)
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.status() != psutil.STATUS_ZOMBIE \
                    and marker in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    result = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                result.append(process)
        except psutil.Error:
            continue
    return result


def wait_gone(processes: list[psutil.Process], data_dir: Path, timeout: float = 30) -> list[psutil.Process]:
    """Wait until every process in the list and every process naming data_dir has ended; returns leftovers."""
    deadline = time.monotonic() + timeout
    while True:
        left = alive(processes) + [p for p in processes_using(data_dir) if p not in processes]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


class Serve:
    """One `sagestore serve` subprocess; output goes to a file (a full pipe would block it)."""

    def __init__(self, data_dir: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None,
                 program: list[str] | None = None):
        """program: the command that runs sagestore; by default this checkout's, with this Python.
        Any other program (an installed `sagestore` script) runs without PYTHONPATH."""
        self.data_dir = data_dir
        self.port_was_chosen = port is not None
        self.program = program or [sys.executable, "-m", "sagestore"]
        self.args = args
        self.use_port(port or free_port())
        self.env = clean_env(**(env or {}))
        if program:
            del self.env["PYTHONPATH"]
        self.log = tempfile.NamedTemporaryFile(prefix="sagestore-serve-", suffix=".log")
        self.process: subprocess.Popen | None = None
        self.ready_after: float | None = None
        self.children: list[psutil.Process] = []

    def use_port(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.argv = [*self.program, "serve", "--data-dir", str(self.data_dir), "--port", str(port), *self.args]

    @property
    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def spawn(self) -> "Serve":
        self.started = time.monotonic()
        self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.data_dir.parent,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def start(self, timeout: float = 90) -> "Serve":
        """Spawn and wait until /api/v1/ answers 200; remembers the children it started."""
        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if self.lost_its_port() and time.monotonic() < deadline - 10:
                    self.use_port(free_port())  # another process bound the free port first
                    self.log.seek(0)
                    self.log.truncate()
                    self.spawn()
                    continue
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.output}")
            try:
                if requests.get(self.url + "/api/v1/", timeout=2).status_code == 200:
                    self.ready_after = time.monotonic() - self.started
                    self.children = psutil.Process(self.process.pid).children(recursive=True)
                    return self
            except requests.RequestException:
                time.sleep(0.05)
        self.kill()
        raise AssertionError(f"serve not ready after {timeout}s:\n{self.output}")

    def lost_its_port(self) -> bool:
        return (not self.port_was_chosen and self.process.returncode == 2
                and f"cannot listen on 127.0.0.1:{self.port}:" in self.output)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
