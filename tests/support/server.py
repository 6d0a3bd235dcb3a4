"""The one way the tests start `sagestore serve` as a real subprocess.

Two kinds of server, one class:
- on the shared test backends: `ServerProcess(settings)` passes the settings as SAGESTORE_*
  variables (what conftest's `server_process` fixture, the client tests and the fault matrix use);
- fully embedded: `ServerProcess.embedded(data_dir, *args)` runs `serve --data-dir DIR` with no
  SAGESTORE_* variable at all, so it starts its own PostgreSQL and SeaweedFS (test_serve.py,
  test_packaging.py).
Output goes to a file, never a pipe (a pipe nobody reads blocks the server once it is full)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

from sagestore.config import Settings
from sagestore.embedded import free_port

REPO = Path(__file__).resolve().parent.parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """The test runner's environment without any SAGESTORE_* setting: fully embedded."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAGESTORE_")}
    env["PYTHONPATH"] = str(REPO)
    env["SAGESTORE_S3_API_PORT"] = "0"  # the S3 door's default port would collide between test runs
    env.update(extra)
    return env


def settings_env(settings: Settings) -> dict[str, str]:
    """The SAGESTORE_* environment that reproduces settings in a subprocess."""
    env = clean_env()
    for field, value in settings.__dict__.items():
        if field == "s3_api_port" and value == Settings.s3_api_port:
            value = 0  # never the S3 door's default port: test runs on one machine would collide
        env["SAGESTORE_" + field.upper()] = ",".join(value) if isinstance(value, tuple) else str(value)
    return env


class ServerProcess:
    """One `sagestore serve` subprocess: start, wait until ready, SIGKILL and restart on the
    same port, stop. Its output is in `.output`."""

    def __init__(self, settings: Settings | None = None, port: int | None = None,
                 extra_env: dict[str, str] | None = None, *, data_dir: Path | None = None,
                 args: tuple[str, ...] = (), program: list[str] | None = None, ready_path: str | None = None):
        """settings: run on these backends (SAGESTORE_* variables); data_dir instead: fully
        embedded. program: the command that runs sagestore (default: this checkout's with this
        Python); any other program (an installed `sagestore` script) runs without PYTHONPATH."""
        if (settings is None) == (data_dir is None):
            raise ValueError("give settings or a data_dir")
        self.settings = settings
        self.data_dir = data_dir
        self.args = args
        self.program = program or [sys.executable, "-m", "sagestore"]
        self.port_was_chosen = port is not None
        # a server on shared backends answers /healthz as soon as it listens; an embedded one
        # is ready when its API answers (its backends started before it listens)
        self.ready_path = ready_path or ("/healthz" if settings is not None else "/api/v1/")
        self.extra_env = extra_env or {}
        self.use_port(port or free_port())
        # in the session's temporary root, removed with it (see support/tmp.py)
        handle, path = tempfile.mkstemp(prefix="sagestore-serve-", suffix=".log")
        self.log = os.fdopen(handle, "w+b")
        self.log_path = Path(path)
        self.process: subprocess.Popen | None = None
        self.ready_after: float | None = None
        self.children: list[psutil.Process] = []
        self.lock = threading.Lock()  # Popen.poll() answers None while another thread is inside wait()

    @classmethod
    def embedded(cls, data_dir: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None,
                 program: list[str] | None = None) -> "ServerProcess":
        return cls(port=port, extra_env=env, data_dir=data_dir, args=args, program=program)

    def use_port(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        if self.settings is not None:
            self.settings = self.settings.replace(port=port, host="127.0.0.1")
            self.env = {**settings_env(self.settings), **self.extra_env}
            self.argv = [*self.program, "serve", *self.args]
            self.cwd = REPO
        else:
            self.env = clean_env(**self.extra_env)
            self.argv = [*self.program, "serve", "--data-dir", str(self.data_dir), "--port", str(port), *self.args]
            self.cwd = self.data_dir.parent
        if self.program[0] != sys.executable:
            del self.env["PYTHONPATH"]

    @property
    def output(self) -> str:
        """Everything the server printed or logged so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def spawn(self) -> "ServerProcess":
        """Start the process without waiting for it."""
        self.started = time.monotonic()
        self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        return self

    def start(self, timeout: float = 90) -> "ServerProcess":
        """Spawn and wait until ready_path answers 200; remembers the children it started.
        Started again after a kill, it comes back on the same port."""
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
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output[-5000:]}")
            try:
                if requests.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    self.ready_after = time.monotonic() - self.started
                    self.children = psutil.Process(self.process.pid).children(recursive=True)
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.output[-5000:]}")

    def lost_its_port(self) -> bool:
        return (not self.port_was_chosen and self.process.returncode == 2
                and f"cannot listen on 127.0.0.1:{self.port}:" in self.output)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        """Send sig and wait; a server that does not end in time is killed. Returns its exit
        status (negative: the signal that ended it), None if it never started."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        with self.lock:
            if self.process is not None and self.process.poll() is None:
                self.process.kill()
                self.process.wait()

    kill9 = kill

    def dead(self) -> bool:
        with self.lock:
            return self.process is None or self.process.poll() is not None
