"""/metrics cannot be grown by clients: made-up methods and unmatched paths collapse into
one label each (a real server process; 3000 such requests once added ~36 000 series)."""
from __future__ import annotations

import re
import socket
import uuid

import requests


def raw_request(port: int, method: str, path: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        while sock.recv(65536):
            pass


def series(text: str) -> set[str]:
    return {line.split(" ")[0] for line in text.splitlines()
            if line.startswith("sagestore_http_request_duration_seconds_count")}


def test_made_up_methods_and_paths_add_no_series(server_process):
    server = server_process()
    raw_request(server.port, "GET", "/")
    for index in range(150):
        made_up = "X" + uuid.uuid4().hex[:12].upper()
        raw_request(server.port, made_up, "/")
        raw_request(server.port, made_up, f"/api/v1/objects/{uuid.uuid4()}")
        raw_request(server.port, "GET", f"/nowhere/{uuid.uuid4()}")
        raw_request(server.port, made_up, f"/{uuid.uuid4()}")
    before = series(requests.get(server.url + "/metrics").text)
    for index in range(100):
        made_up = "Y" + uuid.uuid4().hex[:12].upper()
        raw_request(server.port, made_up, "/")
        raw_request(server.port, made_up, f"/{uuid.uuid4()}")
        raw_request(server.port, made_up, f"/api/v1/objects/{uuid.uuid4()}")
    text = requests.get(server.url + "/metrics").text
    after = series(text)
    assert after <= before | {s for s in after if 'route="/metrics"' in s}, after - before
    assert not re.search(r'method="[XY][0-9A-F]{12}"', text)
    assert 'method="other",route="/"' in text
    assert 'route="unmatched"' in text
    assert len(after) < 20, sorted(after)
