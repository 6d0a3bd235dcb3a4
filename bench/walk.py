"""A walk through the code of one request: the sagestore modules one tus PATCH and one indexed
session chunk pass, and the SQL statements each runs before it reads the first byte of its body.

    python -m bench.walk                      # this checkout
    python -m bench.walk --server-repo DIR    # another checkout (e.g. main, for a before/after)

It starts SeaweedFS and a fresh database (bench.stack), runs the app in this process, and records
the requests it names with sys.setprofile, only inside the request's own tasks (a context variable
set by an outermost middleware), so background tasks do not count. A module counts when a
function of it runs during the request; SQL counts every cursor execute of the request.
The figures describe the code, not its speed: tracing makes the requests slow.
"""
from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MiB = 2**20
TRACING: contextvars.ContextVar[bool] = contextvars.ContextVar("walk_tracing", default=False)


class Recorder:
    """What one traced request did."""

    def __init__(self) -> None:
        self.files: set[str] = set()
        self.sql: list[str] = []
        self.sql_before_body = 0  # statements, BEGIN and COMMIT included
        self.queries_before_body = 0  # without BEGIN and COMMIT
        self.body_started = False

    def as_json(self, root: Path) -> dict:
        files = sorted(str(Path(name).relative_to(root)) for name in self.files)
        return {"files": files, "file_count": len(files),
                "uploads_files": sum(1 for name in files if name.startswith("sagestore/uploads/")),
                "sql_before_first_body_byte": self.sql_before_body,
                "queries_before_first_body_byte": self.queries_before_body, "sql_total": len(self.sql),
                "sql": self.sql}


async def walk(root: Path) -> dict:
    import aiopg
    from aiohttp import streams, web
    from aiohttp.test_utils import TestClient, TestServer

    from bench.stack import Stack
    from sagestore.app import create_app
    from sagestore.config import Settings

    package = str(root / "sagestore") + os.sep
    recorder: Recorder | None = None

    def profile(frame, event, _arg) -> None:
        if event == "call" and recorder is not None and TRACING.get():
            name = frame.f_code.co_filename
            if name.startswith(package):
                recorder.files.add(name)

    original_execute = aiopg.Cursor.execute

    async def execute(self, operation, *args, **kwargs):
        if recorder is not None and TRACING.get():
            recorder.sql.append(" ".join(str(operation).split())[:90])
            if not recorder.body_started:
                recorder.sql_before_body += 1
                recorder.queries_before_body += str(operation).strip().upper() not in ("BEGIN", "COMMIT")
        return await original_execute(self, operation, *args, **kwargs)

    original_readchunk = streams.StreamReader.readchunk

    async def readchunk(self):
        piece = await original_readchunk(self)
        if recorder is not None and TRACING.get() and piece[0]:
            recorder.body_started = True
        return piece

    @web.middleware
    async def traced(request: web.Request, handler):
        if request.headers.get("X-Walk") == "1":
            TRACING.set(True)
        return await handler(request)

    aiopg.Cursor.execute = execute
    streams.StreamReader.readchunk = readchunk
    workdir = Path(tempfile.mkdtemp(prefix="sagestore-walk-"))
    stack = Stack(workdir)
    try:
        await stack.start_seaweedfs()
        await stack.start_database()
        settings = Settings(data_dir=str(workdir / "data"), auth_mode="noauth", database_url=stack.database_url,
                            s3_endpoint=stack.s3["endpoint"], s3_access_key=stack.s3["access_key"],
                            s3_secret_key=stack.s3["secret_key"], reaper_interval=0)
        app = create_app(settings)
        app.middlewares.insert(0, traced)
        client = TestClient(TestServer(app))
        await client.start_server()
        user = {"Authorization": "sage user:walker"}
        try:
            async with client.post("/api/v1/objects?type=model&name=walk", headers=user) as response:
                bucket_id = (await response.json())["id"]
            body = os.urandom(8 * MiB)
            results = {}

            async def traced_request(name: str, method: str, url: str, **kwargs) -> None:
                nonlocal recorder
                recorder = Recorder()
                sys.setprofile(profile)
                try:
                    async with client.request(method, url, headers={**user, **kwargs.pop("headers", {}),
                                                                    "X-Walk": "1"}, **kwargs) as response:
                        assert response.status < 300, (response.status, await response.text())
                finally:
                    sys.setprofile(None)
                results[name] = recorder.as_json(root)
                recorder = None

            # tus, 24 MiB in the default 16 MiB parts: the first PATCH (8 MiB) leaves a staged tail; the traced
            # second one reads that tail, fills part 1 with its own 8 MiB, sends it and commits
            metadata = "bucket " + _b64(bucket_id) + ",key " + _b64("walk/tus.bin")
            tus = {"Tus-Resumable": "1.0.0"}
            async with client.post("/api/v1/tus/", headers={**user, **tus, "Upload-Length": str(24 * MiB),
                                                            "Upload-Metadata": metadata}) as response:
                location = response.headers["Location"]
            patch = {**tus, "Content-Type": "application/offset+octet-stream"}
            async with client.patch(location, headers={**user, **patch, "Upload-Offset": "0"}, data=body) as response:
                assert response.status == 204, await response.text()
            await traced_request("tus PATCH (second, 8 MiB)", "PATCH", location,
                                 headers={**patch, "Upload-Offset": str(8 * MiB)}, data=body)

            # an indexed session of two chunks; the traced request is chunk 1
            async with client.post("/api/v1/attachment/initiate", headers=user, json={
                    "bucket_id": bucket_id, "key": "walk/session.bin", "fileName": "session.bin",
                    "fileSize": 2 * len(body)}) as response:
                session = await response.json()
            chunk_size = int(session["chunkSize"])
            await traced_request(f"session chunk 1 ({chunk_size // MiB} MiB)", "PUT",
                                 f"/api/v1/attachment/session/{session['sessionId']}/upload/1",
                                 data=os.urandom(chunk_size))
            return results
        finally:
            await client.close()
    finally:
        aiopg.Cursor.execute = original_execute
        streams.StreamReader.readchunk = original_readchunk
        stack.stop()


def _b64(text: str) -> str:
    import base64
    return base64.b64encode(text.encode()).decode()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.walk", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-repo", type=Path, help="the checkout whose sagestore is walked")
    parser.add_argument("--json", action="store_true", help="print the full record (every file and statement)")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    root = (args.server_repo or here).resolve()
    if root != here:
        # its own process, so that the other checkout's sagestore (and bench.stack) is imported
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        return subprocess.call([sys.executable, str(Path(__file__).resolve()), *(["--json"] if args.json else [])],
                               env=env, cwd=root)
    import sagestore
    root = Path(sagestore.__file__).resolve().parent.parent
    results = asyncio.run(walk(root))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"checkout: {root}")
    for name, record in results.items():
        print(f"\n{name}: {record['file_count']} files ({record['uploads_files']} in sagestore/uploads/), "
              f"{record['sql_before_first_body_byte']} SQL statements before the first body byte "
              f"({record['queries_before_first_body_byte']} without BEGIN/COMMIT), {record['sql_total']} in all")
        for file in record["files"]:
            print(f"  {file}")
        for number, statement in enumerate(record["sql"], start=1):
            print(f"  sql {number}: {statement}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
