"""The first hour with sagestore, as a new user meets it, against real server processes: the
token command finds the server's data dir, the CLI's default server and profiles, share
list/revoke, grouped help, errors in words, one honest progress bar, the tus and OSDU first steps
of docs/protocols.md run as written; and the client side of the security review: keys that would
leave the target folder, terminal escape sequences and malformed answers from a server."""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import jwt
import pytest
import requests
from botocore.config import Config

from support.client import SECRET, ClientServer, MiB
from support.server import REPO, ServerProcess
import test_storage_conformance
from test_client_cli import run_in_pty

from sagestore.client import Client, UnsafeKey
from sagestore.client.config import DEFAULT_URL, resolve
from sagestore.config import Settings
from sagestore.embedded import free_port

BIN = str(Path(sys.executable).parent)  # where the venv's `sagestore` script is


def cli_env(served, home: Path, user: str | None = None, **extra: str) -> dict[str, str]:
    """An environment with no SAGESTORE_* setting and its own config and runtime dirs."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SAGESTORE_", "SAGE_", "XDG_"))}
    env.update(PYTHONPATH=str(REPO), HOME=str(home), XDG_CONFIG_HOME=str(home / "config"),
               XDG_RUNTIME_DIR=str(home / "run"), PATH=f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}")
    (home / "run").mkdir(parents=True, exist_ok=True, mode=0o700)
    if user is not None:
        env["SAGESTORE_TOKEN"] = served.token(user)
    env.update(extra)
    return env


def run(env: dict[str, str], *args: str, stdin: str | None = None, cwd: Path | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sagestore", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def one_error(result: subprocess.CompletedProcess, status: int = 1) -> str:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sagestore: error: "), result.stderr
    return lines[0]


def forged(served, user: str, expires_in: int = 600, secret: str = SECRET) -> str:
    """A token made by hand (any user name, any lifetime, any key) with the server's aud and iss."""
    now = int(time.time())
    return jwt.encode({"sub": user, "groups": [], "iat": now, "exp": now + expires_in,
                       "aud": served.settings.jwt_audience, "iss": served.settings.jwt_issuer}, secret,
                      algorithm="HS256")


def screen_lines(shown: str) -> list[str]:
    """What a terminal shows of a pty's output, line by line: what follows the last carriage return."""
    return [line.split("\r")[-1].rstrip() for line in shown.replace("\r\n", "\n").split("\n")
            if line.split("\r")[-1].strip()]


def accepted(url: str, token: str) -> bool:
    return requests.get(url + "/api/v1/shares", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code \
        == 200


# ------------------------------------------------------------------------------------ 1. sagestore token
def test_token_finds_the_data_dir_of_the_running_server_and_never_creates_one(served, tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = cli_env(served, home)
    data_dir = tmp_path / "server-data"
    # the server's own PATH lacks the venv too (a developer's activated venv would make it print
    # the bare name, which the plain shell below cannot find)
    server = ServerProcess(served.settings.replace(jwt_secret="", data_dir=str(data_dir)),
                           extra_env={"XDG_RUNTIME_DIR": env["XDG_RUNTIME_DIR"], "PATH": "/usr/bin:/bin"}).start()
    try:
        # the server made its data dir private, and its printed next steps run as printed
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((data_dir / "jwt-secret").stat().st_mode) == 0o600
        printed = next(line for line in server.output.splitlines() if line.startswith("get a token: "))
        command = re.fullmatch(r"get a token: TOKEN=\$\((.*)\)", printed).group(1).replace("<user>", "alice")
        plain_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # a fresh shell: no venv activated
        minted = subprocess.run(["bash", "-c", command], env={**plain_env, "PATH": "/usr/bin:/bin"},
                                capture_output=True, text=True, timeout=120)
        assert minted.returncode == 0 and accepted(server.url, minted.stdout.strip()), (command, minted.stderr)

        # from another directory, with no --data-dir: the running server's data dir, not a new one
        token = ok(run(env, "token", "alice", cwd=elsewhere)).stdout.strip()
        assert accepted(server.url, token)
        link = ok(run(env, "token", "bob", "--link", cwd=elsewhere)).stdout.strip()
        assert link.startswith(f"{server.url}/ui/#token=") and accepted(server.url, link.split("#token=")[1])
        assert list(elsewhere.iterdir()) == []
    finally:
        server.stop()
    # no server running any more and nothing here: one line saying where it looked, nothing created
    refused = run(env, "token", "alice", cwd=elsewhere)
    line = one_error(refused, 2)
    assert str(elsewhere / "sagestore-data") in line and "running `sagestore serve`" in line and "--data-dir" in line
    missing = one_error(run(env, "token", "alice", "--data-dir", str(tmp_path / "nowhere"), cwd=elsewhere), 2)
    assert f"cannot use the data dir {tmp_path / 'nowhere'}: No such file or directory" in missing
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "nowhere").exists()
    # the data dir of a stopped server still works when named (its secret is what the server will use)
    assert accepted(served.url, served.token()) and ok(run(env, "token", "carol", "--data-dir", str(data_dir)))


# ------------------------------------------------------------------------------------ 2. default server, profiles
def test_the_cli_defaults_to_the_local_server_and_keeps_profiles(served, tmp_path):
    home = tmp_path / "home"
    env = cli_env(served, home)
    assert resolve(environ={}, path=tmp_path / "no-config.toml") == (DEFAULT_URL, None)
    # nothing configured: the local server, as the debug log says before the first request (whatever
    # answers on port 8080 of this machine, or nothing, the line comes first)
    debugging = subprocess.Popen([sys.executable, "-m", "sagestore", "--debug", "--retries", "0", "ls"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert debugging.stderr.readline().strip() == f"DEBUG sagestore.client: ls on {DEFAULT_URL}"
    finally:
        debugging.kill()
        debugging.wait()

    # login: the token from a pipe (sagestore token alice | sagestore login), checked, kept 0600
    logged = ok(run(env, "login", "--url", served.url, stdin="# a comment line\n" + served.token("alice") + "\n"))
    config = home / "config" / "sagestore" / "config.toml"
    assert f"signed in to {served.url} as alice (profile 'default', saved in {config})" in logged.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    made = json.loads(ok(run(env, "mb", "--type", "model", "--name", "from-profile", "--json")).stdout)
    assert made["owner"] == "alice"
    assert any(line.startswith(made["id"]) for line in ok(run(env, "ls")).stdout.splitlines())

    refused = one_error(run(env, "login", "--profile", "bad", "--url", served.url, "--token", "not.a.jwt"))
    assert "refused the token, nothing saved" in refused and "bad" not in config.read_text()
    bob_token = served.token("bob")
    ok(run(env, "login", "--profile", "bob", "--url", served.url, "--token", bob_token))

    def owner(*args: str, **extra: str) -> str:
        result = ok(run({**env, **extra}, *args, "mb", "--type", "model", "--json"))
        return json.loads(result.stdout)["owner"]
    assert owner() == "alice"
    assert owner(SAGESTORE_PROFILE="bob") == "bob"
    assert owner("--profile", "bob") == "bob"
    assert owner("--profile", "default", SAGESTORE_PROFILE="bob") == "alice"  # flag > env
    assert owner(SAGESTORE_TOKEN=served.token("carol")) == "carol"  # env > profile
    assert owner("--token", served.token("dave"), SAGESTORE_TOKEN=served.token("carol")) == "dave"  # flag > env
    unknown = one_error(run(env, "--profile", "nope", "ls"), 2)
    assert "no profile 'nope'" in unknown and "bob" in unknown

    # another server named by env or flag never receives the profile's token
    seen: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_once() -> None:
        connection, _ = listener.accept()
        seen.append(connection.recv(65536))
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                           b"Connection: close\r\n\r\n[]")
        connection.close()
    threading.Thread(target=answer_once, daemon=True).start()
    other = f"http://127.0.0.1:{listener.getsockname()[1]}"
    ok(run({**env, "SAGESTORE_URL": other}, "ls"))
    listener.close()
    assert seen and b"GET /api/v1/objects" in seen[0] and b"authorization" not in seen[0].lower()

    assert "signed out" in ok(run(env, "logout")).stdout
    import tomllib
    profiles = tomllib.loads(config.read_text())["profiles"]
    assert profiles["default"] == {"url": served.url} and profiles["bob"]["token"] == bob_token
    assert one_error(run(env, "mb", "--type", "model")).endswith("(HTTP 401)")


# ------------------------------------------------------------------------------------ 3. share list and revoke
def test_share_list_and_revoke_from_the_cli(served, tmp_path):
    env = cli_env(served, tmp_path / "home", "alice", SAGESTORE_URL=served.url)
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
        alice.upload_file(bucket_id, "shared.txt", __file__)
    url = ok(run(env, "share", f"sage://{bucket_id}/shared.txt", "--expires", "1h")).stdout.strip()
    second = json.loads(ok(run(env, "share", "create", f"sage://{bucket_id}/shared.txt", "--json")).stdout)
    assert requests.get(url, timeout=30).status_code == 200
    listed = [json.loads(line) for line in ok(run(env, "share", "list", f"sage://{bucket_id}", "--json")).stdout
              .splitlines()]
    assert {share["url"] for share in listed} == {url, second["url"]}
    assert all(share["state"] == "active" and share["created_by"] == "alice" for share in listed)
    text = ok(run(env, "share", "list", bucket_id)).stdout.splitlines()
    assert len(text) == 2 and all("active" in line and f"sage://{bucket_id}/shared.txt" in line for line in text)
    first_id = next(share["id"] for share in listed if share["url"] == url)

    assert ok(run(env, "share", "revoke", first_id)).stdout.strip() == f"revoked: {first_id}"
    assert requests.get(url, timeout=30).status_code in (403, 404, 410)
    ok(run(env, "share", "revoke", second["url"]))  # the link itself names its share
    assert ok(run(env, "share", "list", f"sage://{bucket_id}")).stdout == ""
    everything = ok(run(env, "share", "list", f"sage://{bucket_id}", "--all")).stdout.splitlines()
    assert len(everything) == 2 and all(" revoked " in line for line in everything)
    missing = one_error(run(env, "share", "revoke", "00000000-0000-4000-8000-000000000000"))
    assert "no share link 00000000-0000-4000-8000-000000000000" in missing


def test_the_owner_lists_and_revokes_the_links_others_made_on_her_bucket(served, tmp_path):
    alice_env = cli_env(served, tmp_path / "alice", "alice", SAGESTORE_URL=served.url)
    bob_env = cli_env(served, tmp_path / "bob", "bob", SAGESTORE_URL=served.url)
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
        alice.upload_file(bucket_id, "shared.txt", __file__)
        alice.grant(bucket_id, "USER", "bob", "READ")
    bobs_link = ok(run(bob_env, "share", f"sage://{bucket_id}/shared.txt", "--expires", "1h")).stdout.strip()
    assert requests.get(bobs_link, timeout=30).status_code == 200
    listed = [json.loads(line) for line in ok(run(alice_env, "share", "list", f"sage://{bucket_id}", "--json"))
              .stdout.splitlines()]
    assert [(share["created_by"], share["state"]) for share in listed] == [("bob", "active")]
    assert "url" not in listed[0]  # a link is a credential of its creator: shown to bob only
    assert "by bob" in ok(run(alice_env, "share", "list", bucket_id)).stdout
    ok(run(alice_env, "share", "revoke", listed[0]["id"]))
    assert requests.get(bobs_link, timeout=30).status_code == 403


def test_a_mistyped_command_suggests_the_right_one_and_lists_the_client_commands(served, tmp_path):
    env = cli_env(served, tmp_path / "home")
    line = one_error(run(env, "unshare", "x"), 2)
    assert "unknown command 'unshare'; did you mean 'share'?" in line
    for command in ("serve", "token", "login", "cp", "ls", "share", "perm", "storage"):
        assert command in line
    assert "did you mean" not in one_error(run(env, "frobnicate"), 2)
    bare = run(env)
    assert bare.returncode == 2 and "file commands:" in bare.stdout


# ------------------------------------------------------------------------------------ 4. help
def every_parser(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from every_parser(sub)


def test_help_is_grouped_with_examples_and_every_option_says_what_it_does(served, tmp_path):
    env = cli_env(served, tmp_path / "home")
    overview = ok(run(env, "--help")).stdout
    groups = ["server commands:", "signing the client in:", "file commands:", "buckets:", "sharing:",
              "permissions:", "sage-cli compatibility:", "first steps"]
    positions = [overview.index(group) for group in groups]
    assert positions == sorted(positions), overview
    for group, commands in (("server commands:", ["serve", "token", "migrate", "reap"]),
                            ("file commands:", ["cp", "ls", "rm", "sync", "uploads"]),
                            ("buckets:", ["mb", "rb"]), ("sharing:", ["share"])):
        section = overview[overview.index(group):].split("\n\n")[0]
        assert all(re.search(rf"^  {command}\b", section, re.M) for command in commands), (group, section)
    assert "sagestore cp weights.safetensors sage://BUCKET_ID/v1/" in overview

    cp = ok(run(env, "cp", "--help")).stdout
    for words in ("sage://BUCKET_ID/KEY", "examples:", "resume:", "overwrite:", "sagestore cp -r sage://",
                  "files up to SIZE move in one request", "127.0.0.1:8080", "exit status"):
        assert words in cp, words
    assert "download range size" not in cp
    assert "--no-debug" in cp and "turn --debug off" in cp
    assert "share list" in ok(run(env, "share", "--help")).stdout
    assert "clock skew" in ok(run(env, "token", "--help")).stdout

    from sagestore.cli import build_parser as server_parser
    from sagestore.client.cli import build_parser as client_parser
    for top in (client_parser(), server_parser()):
        for parser in every_parser(top):
            for action in parser._actions:
                if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                    continue
                assert action.help, (parser.prog, action.option_strings or action.dest)


# ------------------------------------------------------------------------------------ 5. errors that teach
def test_errors_name_the_problem_in_words(served, tmp_path):
    env = cli_env(served, tmp_path / "home", "alice", SAGESTORE_URL=served.url)
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
    other_key = forged(served, "alice", secret="another-secret-" + "z" * 40)
    for token, words in ((other_key, "its signature does not match this server's key"),
                         ("not-a-jwt", "it is not a JWT")):
        line = one_error(run({**env, "SAGESTORE_TOKEN": token}, "ls"))
        assert f"the token is not valid for this server: {words}" in line and "(HTTP 401)" in line
        assert "Error" not in line.replace("sagestore: error:", ""), line  # no library class names
    missing = one_error(run(env, "cp", f"sage://{bucket_id}/models/nope.bin", str(tmp_path / "x")))
    assert "'models/nope.bin'" in missing and bucket_id in missing and "(HTTP 404)" in missing

    closed = free_port()
    started = time.monotonic()
    refused = one_error(run({**env, "SAGESTORE_URL": f"http://127.0.0.1:{closed}"}, "ls"))
    assert time.monotonic() - started < 10  # no 24 s of silent retries
    assert refused == (f"sagestore: error: cannot reach http://127.0.0.1:{closed}: connection refused; "
                       "is `sagestore serve` running?")

    # a server that drops every connection: each retry is said on a terminal as it happens
    listener = socket.create_server(("127.0.0.1", 0))

    def drop_all() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.recv(65536)
            connection.close()
    threading.Thread(target=drop_all, daemon=True).start()
    flaky = f"http://127.0.0.1:{listener.getsockname()[1]}"
    pty_served = ClientServer(served.server, served.settings)
    pty_served.url = flaky
    status, shown = run_in_pty(pty_served, ["ls", "--retries", "2"])
    listener.close()
    assert status == 1, shown
    retries = re.findall(r"sagestore: retrying GET /api/v1/objects in [\d.]+ s \(attempt (\d) of 3\): "
                         r"the server closed the connection", shown)
    assert retries == ["2", "3"], shown
    assert "failed after 3 attempts: the server closed the connection" in shown and "Traceback" not in shown

    # clock skew: a token is accepted 5 s past its exp, no longer
    short = forged(served, "alice", expires_in=1)
    assert accepted(served.url, short)
    time.sleep(7.5)
    late = one_error(run({**env, "SAGESTORE_TOKEN": short}, "ls"))
    assert "token expired (a token is accepted up to 5 s after its exp)" in late


# ------------------------------------------------------------------------------------ 6. progress
def test_one_bar_says_resuming_and_ends_on_a_clean_line(served, tmp_path):
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
    data = os.urandom(24 * MiB)
    (tmp_path / "resume.bin").write_bytes(data)
    headers = {"Authorization": f"Bearer {served.token('alice')}"}
    session = requests.post(served.url + "/api/v1/attachment/initiate", headers=headers, timeout=30, json={
        "bucket_id": bucket_id, "key": "resume.bin", "fileName": "resume.bin", "fileSize": len(data),
        "verifySha256": True}).json()
    chunk = session["chunkSize"]
    for number in (1, 2):  # an earlier run sent two chunks, then stopped
        answer = requests.put(served.url + session["uploadUrl"].replace("{chunkId}", str(number)),
                              data=data[(number - 1) * chunk:number * chunk], headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
    status, shown = run_in_pty(served, ["cp", str(tmp_path / "resume.bin"), f"sage://{bucket_id}/resume.bin"])
    assert status == 0, shown
    resumed_mib = 2 * chunk / MiB
    assert f"sagestore: resuming {tmp_path / 'resume.bin'} at {resumed_mib:.1f} MiB of 24.0 MiB" in shown, shown
    screen = screen_lines(shown)
    # one bar (no "total" twin), the result line above it, the bar's last state at 100% at the bottom
    assert [line for line in screen if "%|" in line] == [screen[-1]], screen
    assert screen[-1].startswith("resume.bin: 100%") and "24.0M/24.0M" in screen[-1], screen
    assert screen[-2].startswith("upload: ") and screen[-3].startswith("sagestore: resuming "), screen
    with Client(served.url, served.token("alice")) as alice:
        assert alice.stat(bucket_id, "resume.bin").sha256 == hashlib.sha256(data).hexdigest()

    # the speed counts the bytes sent, not the ones found on the server
    from sagestore.client.cli import Bars, Output
    output = Output(argparse.Namespace(json=False, quiet=False))
    output.bars = True
    stream, real_stderr = io.StringIO(), sys.stderr
    sys.stderr = stream
    try:
        bars = Bars(output, 24 * MiB, 1, "speed.bin")
        _, update, resumed = bars.file("speed.bin", 24 * MiB)
        resumed(20 * MiB)
        time.sleep(0.5)
        update(4 * MiB)
        rate = bars.bar.format_dict["rate"] or (bars.bar.n - bars.bar.initial) / bars.bar.format_dict["elapsed"]
        elapsed = bars.bar.format_dict["elapsed"]
        bars.close()
    finally:
        sys.stderr = real_stderr
    assert rate <= 1.5 * 4 * MiB / elapsed, (rate, elapsed)
    assert "resuming speed.bin at 20.0 MiB of 24.0 MiB (83%)" in stream.getvalue()


# ------------------------------------------------------------------------------------ 7. docs/protocols.md
def test_the_tus_and_osdu_first_steps_of_the_docs_run_as_written(served, tmp_path):
    text = (REPO / "docs" / "protocols.md").read_text()
    blocks = re.findall(r"```(bash|python)\n(.*?)```", text, re.S)
    kinds = [kind for kind, _ in blocks]
    assert kinds.count("bash") >= 3 and "python" in kinds, kinds
    script = ["set -euo pipefail"]
    for kind, code in blocks:
        script.append(code if kind == "bash" else f"python3 - <<'PYTHON'\n{code}PYTHON\n")
    env = cli_env(served, tmp_path / "home", SAGESTORE_URL=served.url, SAGESTORE_JWT_SECRET=SECRET)
    done = subprocess.run(["bash", "-c", "\n".join(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "the OSDU round trip gave the same bytes" in done.stdout
    assert re.search(r"(?im)^upload-offset: 7000000\s*$", done.stdout), done.stdout
    assert "models/model.bin" in done.stdout and "uploaded to" in done.stdout
    bucket_id = next(line.split()[0] for line in ok(run({**env, "SAGESTORE_TOKEN": served.token("alice")}, "ls"))
                     .stdout.splitlines() if line.endswith("protocols"))
    with Client(served.url, served.token("alice")) as alice:
        keys = {item["key"]: item["size"] for item in alice.list(bucket_id, "models/")}
    assert keys == {"models/model.bin": 7_000_000, "models/tuspy.bin": 7_000_000}


# ------------------------------------------------------------------------------------ issue 23: client side
moto_backend = test_storage_conformance.moto_backend  # a moto server over HTTP, for the session


@pytest.fixture(scope="module")
def moto_served(moto_backend, database_url, backends_dir):
    """A second server process whose S3 is moto: SeaweedFS refuses keys with '.' or '..' segments
    and folds '//' and backslashes, AWS S3 (like moto) stores them as they are."""
    settings = Settings(
        data_dir=str(backends_dir / "moto-data"), auth_mode="jwt", jwt_secret=SECRET, database_url=database_url,
        s3_endpoint=moto_backend["endpoint"], s3_access_key=moto_backend["access_key"],
        s3_secret_key=moto_backend["secret_key"], s3_single_bucket="traversal-tests", reaper_interval=0)
    server = ServerProcess(settings).start()
    yield ClientServer(server, settings)
    server.stop()


def write_straight_into_s3(server, backend: dict[str, str], bucket_id: str, keys: dict[str, bytes]) -> None:
    """Objects written under the bucket's prefix with boto3, past the server (whose own API refuses
    such keys): what a compromised store, or another writer to it, can do."""
    s3 = boto3.client("s3", endpoint_url=backend["endpoint"], region_name="us-east-1",
                      aws_access_key_id=backend["access_key"], aws_secret_access_key=backend["secret_key"],
                      config=Config(s3={"addressing_style": "path"}))
    settings = server.settings
    s3_bucket = settings.s3_single_bucket or f"{settings.s3_bucket_prefix}{int(bucket_id[:2], 16) % settings.s3_bucket_count:02x}"
    for key, body in keys.items():
        s3.put_object(Bucket=s3_bucket, Key=f"{bucket_id}/{key}", Body=body)


ESCAPES = [("seaweedfs", "folder/C:/drive.txt")] + [("moto", key) for key in (
    "folder/../../escaped.txt", "folder/sub/../../../escaped2.txt", "folder/./dot.txt", "folder//empty.txt",
    "folder//abs.txt", "folder/back\\slash.txt", "folder/..", "folder/../..")]


@pytest.mark.parametrize("store, escape", ESCAPES)
def test_a_key_leaving_the_target_folder_stops_the_download_before_anything_is_written(
        request, s3_backend, tmp_path, store, escape):
    server = request.getfixturevalue("served" if store == "seaweedfs" else "moto_served")
    backend = s3_backend if store == "seaweedfs" else request.getfixturevalue("moto_backend")
    with Client(server.url, server.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
        alice.upload_file(bucket_id, "folder/fine.txt", io.BytesIO(b"fine"))
    write_straight_into_s3(server, backend, bucket_id, {escape: b"escaped"})
    with Client(server.url, server.token("alice")) as alice:
        listed = [item["key"] for item in alice.list(bucket_id, "folder/", recursive=True)]
    if escape not in listed:
        pytest.fail(f"the server does not list {escape!r} ({listed}): the test would prove nothing")
    work = tmp_path / "work"
    target = work / "deep" / "dl"
    target.mkdir(parents=True)

    def nothing_written() -> None:
        assert [path for path in tmp_path.rglob("*") if path.is_file()] == [], list(tmp_path.rglob("*"))

    env = cli_env(server, tmp_path / "home", "alice", SAGESTORE_URL=server.url)
    line = one_error(run(env, "cp", "-r", f"sage://{bucket_id}/folder/", str(target), cwd=work))
    assert f"refusing key {escape[len('folder/'):]!r}" in line and str(target) in line, line
    with Client(server.url, server.token("alice")) as alice:
        with pytest.raises(UnsafeKey):
            alice.download_folder(bucket_id, "folder", target)

    async def through_async() -> None:
        from sagestore.client import AsyncClient
        async with AsyncClient(server.url, server.token("alice")) as client:
            await client.download_folder(bucket_id, "folder/", target)
    import asyncio
    with pytest.raises(UnsafeKey):
        asyncio.run(through_async())
    if escape.endswith(".."):  # storage files download names the local file after the key's last segment
        refused = run(env, "storage", "files", "download", bucket_id, escape, "--target", str(target) + "/",
                      cwd=work)
        assert refused.returncode == 1 and "refusing key '..'" in refused.stderr, refused.stderr
        refused = run(env, "cp", f"sage://{bucket_id}/{escape}", str(target) + "/", cwd=work)
        assert one_error(refused).startswith("sagestore: error: refusing key '..'")
    nothing_written()
    with Client(server.url, server.token("alice")) as alice:  # the sound key still downloads, one by one
        alice.download_file(bucket_id, "folder/fine.txt", target / "fine.txt")
    assert (target / "fine.txt").read_bytes() == b"fine"


def test_what_a_server_says_reaches_the_terminal_without_control_sequences(served, tmp_path):
    nasty = "eve\x1b]0;pwned\x07\x1b[2J\x1b[31m\x9b1m\u202e"
    token = forged(served, nasty)
    env = cli_env(served, tmp_path / "home", SAGESTORE_URL=served.url, SAGESTORE_TOKEN=token)
    made = json.loads(ok(run(env, "mb", "--type", "model", "--json")).stdout)
    assert made["owner"] == nasty  # the server took the name as the token gave it
    shown = ok(run(env, "perm", "show", made["id"]))
    assert "USER eve FULL_CONTROL" in shown.stdout.splitlines()
    for text in (shown.stdout, shown.stderr):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", text), repr(text)


class HostileServer:
    """Stands in for a compromised or foreign server on a real socket: whatever a path asks for, it
    answers with a status, headers and body of the test's choosing."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, str, bytes]] = {}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            request = connection.recv(65536).decode("latin-1")
            method, path = request.split(" ")[:2]
            status, kind, body = next((answer for prefix, answer in self.answers.items()
                                       if f"{method} {path}".startswith(prefix)), (404, "text/plain", b"no"))
            connection.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                               f"Connection: close\r\n\r\n".encode() + (body if method != "HEAD" else b""))
            connection.close()

    def close(self) -> None:
        self.listener.close()


def test_no_answer_of_a_server_makes_a_traceback_or_reaches_the_terminal_raw(served, tmp_path):
    hostile = HostileServer()
    bucket = "11111111-2222-4333-8444-555555555555"
    env = cli_env(served, tmp_path / "home", SAGESTORE_URL=hostile.url, SAGESTORE_TOKEN="t")
    escape = "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\ \x1b[2J\x1b[1;1H\x07\x9b31m"
    cases = [
        (("ls",), "GET /api/v1/objects", (200, "text/html", b"<html><body>Proxy login</body></html>")),
        (("ls",), "GET /api/v1/objects", (200, "application/json", b'{"not": "a list"}')),
        (("ls",), "GET /api/v1/objects", (200, "application/json", b'[{"id": 1}, 2, "x"]')),
        (("ls",), "GET /api/v1/objects", (500, "text/html", b"<h1>502 Bad Gateway</h1>")),
        (("ls",), "GET /api/v1/objects", (400, "application/json", json.dumps({"error": escape}).encode())),
        (("ls", f"sage://{bucket}/"), "GET /api/v1/objects/", (200, "application/json",
                                                             b'{"Contents": [{"Key": 5, "Size": "x"}]}')),
        (("ls", f"sage://{bucket}/"), "GET /api/v1/objects/", (200, "application/json", b'{"Contents": 7}')),
        (("share", f"sage://{bucket}/k"), "POST /api/v1/shares", (201, "application/json", b'{"url": 5}')),
        (("share", f"sage://{bucket}/k"), "POST /api/v1/shares", (201, "application/json", b"[]")),
        (("share", f"sage://{bucket}/k"), "POST /api/v1/shares", (201, "application/json", b"{bad json")),
        (("share", "list"), "GET /api/v1/shares", (200, "application/json", b'{"shares": "none"}')),
        (("share", "list"), "GET /api/v1/shares", (200, "application/json", b'{"shares": [{"id": 1}, 3]}')),
        (("perm", "show", bucket), "GET /api/v1/objects/", (200, "application/json", b'[{"grantee": 1}]')),
        (("uploads",), "GET /api/v1/attachment/sessions", (200, "application/json", b'{"sessions": [{}]}')),
        (("mb", "--type", "model"), "POST /api/v1/objects", (200, "application/json", b'"just a string"')),
        (("cp", f"sage://{bucket}/k.bin", str(tmp_path / "k.bin")), "HEAD /api/v1/objects/",
         (404, "application/json", b"")),
        (("storage", "bucket", "list"), "GET /api/v1/objects", (502, "text/html", escape.encode())),
        (("storage", "files", "list", bucket), "GET /api/v1/objects/", (200, "application/json", json.dumps(
            {"Contents": [{"Key": escape, "Size": 1, "LastModified": escape}], "CommonPrefixes": [{"Prefix": escape}],
             "IsTruncated": True, "NextContinuationToken": escape}).encode())),
    ]
    try:
        for args, route, answer in cases:
            hostile.answers = {route: answer}
            result = run(env, "--retries", "0", *args, timeout=120)
            well_formed = args[:2] == ("storage", "files")  # a sound listing of hostile names: printed, cleaned
            assert result.returncode == (0 if well_formed else 1), (args, answer, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == (0 if well_formed else 1), \
                (args, result.stderr)
            if well_formed:
                assert "click" in result.stdout and "# NextContinuationToken=click" in result.stdout, result.stdout
            for text in (result.stdout, result.stderr):
                assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text), (args, repr(text))
    finally:
        hostile.close()
