"""Small requests measured with wrk (C, one thread, keep-alive connections): a load generator
that is not the bottleneck, where the bench's own aiohttp client saturates near 5,000 requests/s.

wrk comes from the distribution (Debian: `apt-get install wrk`). With several targets, a
generated Lua script sends them in turn (wrk.format per request), for sagestore and for the
bare reference alike."""
from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = "wrk not found: install it (Debian/Ubuntu: apt-get install wrk; scripts/test does)"


class WrkMissing(RuntimeError):
    pass


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rate: float
    non_2xx: int
    socket_errors: dict[str, int] = field(default_factory=dict)
    latency_avg_ms: float | None = None
    output: str = ""

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def find_wrk() -> str:
    path = shutil.which("wrk")
    if not path:
        raise WrkMissing(INSTALL_HINT)
    return path


def _lua_string(text: str) -> str:
    if any(ord(char) < 0x20 or char in "\\\"" for char in text):
        raise ValueError(f"not a plain header or path: {text!r}")
    return f'"{text}"'


def rotation_script(path: Path, targets: list[tuple[str, dict[str, str]]]) -> Path:
    """A wrk script sending GET to each (path, headers) in turn."""
    rows = []
    for request_path, headers in targets:
        fields = ", ".join(f"[{_lua_string(name)}] = {_lua_string(value)}" for name, value in headers.items())
        rows.append(f"  {{{_lua_string(request_path)}, {{{fields}}}}},")
    path.write_text("local targets = {\n" + "\n".join(rows) + "\n}\nlocal index = 0\n"
                    "request = function()\n  index = index % #targets + 1\n"
                    "  return wrk.format(\"GET\", targets[index][1], targets[index][2])\nend\n")
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def parse(output: str) -> WrkResult:
    """wrk's summary: 'N requests in Ts', 'Requests/sec: R', 'Non-2xx or 3xx responses: K',
    'Socket errors: connect a, read b, write c, timeout d', 'Latency avg ...'."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not done or not rate:
        raise RuntimeError(f"unreadable wrk output: {output[-500:]}")
    seconds = float(done.group(2)) * _UNITS[done.group(3)] / 1e3
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    latency = re.search(r"Latency\s+([\d.]+)(us|ms|s|m)", output)
    return WrkResult(
        requests=int(done.group(1)), seconds=seconds, rate=float(rate.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()))) if sockets else {},
        latency_avg_ms=float(latency.group(1)) * _UNITS[latency.group(2)] if latency else None, output=output)


async def run(url: str, *, seconds: float, connections: int = 16, threads: int = 1,
              headers: dict[str, str] | None = None, script: Path | None = None) -> WrkResult:
    """wrk against url (the base URL when a script chooses the paths) for `seconds`."""
    command = [find_wrk(), "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    process = await asyncio.create_subprocess_exec(*command, url, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    if process.returncode:
        raise RuntimeError(f"wrk exited with {process.returncode}: {text[-500:]}")
    return parse(text)
