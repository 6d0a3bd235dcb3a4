"""Checks that no postgres or weed process outlives the server that started it."""
from __future__ import annotations

import os
import time
from pathlib import Path

import psutil


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
