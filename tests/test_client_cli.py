"""The `sagestore` client commands against a real server process: every command, --json,
exit codes and one-line errors, no token in any output, progress only on a terminal, and the
sage-cli-compatible `storage ...` tree line for line."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import select
import subprocess
import struct
import sys
import termios
import time

from support.client import MiB

from sagestore.client import Client



def lines(result: subprocess.CompletedProcess) -> list[str]:
    return result.stdout.splitlines()


def records(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in lines(result)]


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def no_token(served, *results: subprocess.CompletedProcess) -> None:
    token = served.token("alice")
    for result in results:
        assert token not in result.stdout and token not in result.stderr
        assert token.split(".")[2] not in result.stdout + result.stderr  # not even the signature


def test_mb_ls_cp_rm_rb_and_json(served, tmp_path):
    made = ok(served.cli("mb", "--type", "model", "--name", "cli-test", "--json"))
    bucket = records(made)[0]
    assert bucket["name"] == "cli-test" and bucket["type"] == "model"
    bucket_id = bucket["id"]
    text = ok(served.cli("ls"))
    assert any(line.startswith(bucket_id) and "cli-test" in line for line in lines(text))
    data = os.urandom(8 * MiB + 3)  # above the 16 MiB threshold? no: one streamed PUT
    (tmp_path / "one.bin").write_bytes(data)
    upload = ok(served.cli("cp", str(tmp_path / "one.bin"), f"sage://{bucket_id}/models/", "--json"))
    [record] = records(upload)
    assert record["key"] == "models/one.bin" and record["sha256"] == hashlib.sha256(data).hexdigest()
    assert upload.stderr == ""  # no progress bars without a terminal
    plain = ok(served.cli("cp", str(tmp_path / "one.bin"), f"sage://{bucket_id}/models/two.bin"))
    assert lines(plain) == [f"upload: {tmp_path / 'one.bin'} to sage://{bucket_id}/models/two.bin"]
    listing = records(ok(served.cli("ls", f"sage://{bucket_id}/models", "--json")))
    assert sorted(item["key"] for item in listing) == ["models/one.bin", "models/two.bin"]
    assert all(item["size"] == len(data) for item in listing)
    assert [item["prefix"] for item in records(ok(served.cli("ls", f"sage://{bucket_id}", "--json")))] == \
        ["models/"]
    down = ok(served.cli("cp", f"sage://{bucket_id}/models/two.bin", str(tmp_path / "back") + "/", "--json"))
    assert records(down)[0]["verified"] is True
    assert (tmp_path / "back" / "two.bin").read_bytes() == data
    quiet = ok(served.cli("cp", f"sage://{bucket_id}/models/two.bin", str(tmp_path / "q.bin"), "--quiet"))
    assert quiet.stdout == "" and quiet.stderr == ""
    removed = ok(served.cli("rm", f"sage://{bucket_id}/models/two.bin"))
    assert lines(removed) == [f"delete: sage://{bucket_id}/models/two.bin"]
    ok(served.cli("rm", "-r", f"sage://{bucket_id}/models/"))
    assert records(ok(served.cli("ls", "-r", f"sage://{bucket_id}", "--json"))) == []
    gone = ok(served.cli("rb", f"sage://{bucket_id}"))
    assert lines(gone) == [f"remove_bucket: sage://{bucket_id}"]
    no_token(served, made, text, upload, plain, down, removed, gone)


def test_exit_codes_and_one_line_errors(served, tmp_path):
    usage = served.cli("cp", "a", "b")
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1 and "sagestore: error:" in usage.stderr
    assert served.cli("mb").returncode == 2  # --type missing: argparse
    assert served.cli("ls", "--url", "", env={"PATH": os.environ["PATH"]}).returncode == 2
    missing = served.cli("cp", "sage://00000000-0000-0000-0000-000000000000/x.bin", str(tmp_path / "x"))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "Traceback" not in missing.stderr and "(HTTP 404)" in missing.stderr
    anonymous = served.cli("mb", "--type", "model", user=None)
    assert anonymous.returncode == 1 and "HTTP 401" in anonymous.stderr
    refused = served.cli("ls", env=served.cli_env(SAGESTORE_URL="http://127.0.0.1:1"))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    debug = served.cli("--debug", "ls")
    assert debug.returncode == 0
    no_token(served, usage, missing, refused, debug)


def test_sage_cli_env_names_and_global_options(served):
    env = {key: value for key, value in served.cli_env().items() if not key.startswith("SAGESTORE_")}
    env.update(SAGE_STORE_URL=served.url, SAGE_USER_TOKEN=served.token("alice"))
    result = ok(served.cli("storage", "bucket", "create", "--datatype", "model", "--name", "sage-env", env=env))
    bucket = json.loads(result.stdout)
    # sage-cli's global options before the command word
    shown = ok(served.cli("--token", served.token("alice"), "--sage_store_url", served.url, "storage", "bucket",
                          "show", bucket["id"], env={"PATH": os.environ["PATH"], **{
                              k: v for k, v in env.items() if k == "PYTHONPATH"}}))
    assert json.loads(shown.stdout)["name"] == "sage-env"


def test_cp_recursive_with_include_exclude_and_sync(served, tmp_path):
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("training-data")["id"]
    tree = tmp_path / "data"
    for relative, content in {"a.csv": b"a", "b.txt": b"b", "sub/c.csv": b"c", "sub/deep/d.csv": b"d",
                              "sub/skip.csv": b"s", "big.csv": os.urandom(20 * MiB)}.items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_bytes(content)
    result = ok(served.cli("cp", "-r", str(tree), f"sage://{bucket_id}/set", "--include", "*.csv",
                           "--exclude", "skip*", "--json"))
    assert sorted(r["key"] for r in records(result)) == ["set/a.csv", "set/big.csv", "set/sub/c.csv",
                                                          "set/sub/deep/d.csv"]
    with Client(served.url, served.token("alice")) as alice:
        assert alice.stat(bucket_id, "set/big.csv").sha256 == hashlib.sha256((tree / "big.csv").read_bytes()).hexdigest()
    back = ok(served.cli("cp", "-r", f"sage://{bucket_id}/set/", str(tmp_path / "back"), "--exclude", "big*",
                         "--json"))
    assert len(records(back)) == 3 and (tmp_path / "back" / "sub" / "deep" / "d.csv").read_bytes() == b"d"
    # sync: only what is missing or changed (same size, other content counts as changed)
    (tree / "a.csv").write_bytes(b"A")
    synced = records(ok(served.cli("sync", str(tree), f"sage://{bucket_id}/set", "--json")))
    uploaded = sorted(r["key"] for r in synced if r["action"] == "upload")
    skipped = sorted(r["key"] for r in synced if r["action"] == "skip")
    assert uploaded == ["set/a.csv", "set/b.txt", "set/sub/skip.csv"]
    assert skipped == ["set/big.csv", "set/sub/c.csv", "set/sub/deep/d.csv"]
    again = records(ok(served.cli("sync", str(tree), f"sage://{bucket_id}/set", "--json")))
    assert {r["action"] for r in again} == {"skip"} and len(again) == 6


def test_perm_and_uploads_commands(served):
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
    ok(served.cli("perm", "grant", f"sage://{bucket_id}", "user", "bob", "write"))
    shown = lines(ok(served.cli("perm", "show", bucket_id)))
    assert "USER bob WRITE" in shown and "USER alice FULL_CONTROL" in shown
    revoked = ok(served.cli("perm", "revoke", bucket_id, "USER", "bob"))
    assert lines(revoked) == ["revoked: USER:bob"]
    ok(served.cli("perm", "public", bucket_id))
    assert "GROUP AllUsers READ" in lines(ok(served.cli("perm", "show", bucket_id)))
    ok(served.cli("perm", "private", bucket_id))
    assert "GROUP AllUsers READ" not in lines(ok(served.cli("perm", "show", bucket_id)))
    assert served.cli("perm", "grant", bucket_id, "USER").returncode == 2
    # an unfinished upload, listed and aborted
    import requests
    session = requests.post(served.url + "/api/v1/attachment/initiate", timeout=30,
                            headers={"Authorization": f"Bearer {served.token('alice')}"},
                            json={"bucket_id": bucket_id, "key": "half.bin", "fileName": "half.bin",
                                  "fileSize": 20 * MiB}).json()
    listed = records(ok(served.cli("uploads", f"sage://{bucket_id}", "--json")))
    assert [u["sessionId"] for u in listed] == [session["sessionId"]] and listed[0]["key"] == "half.bin"
    text = lines(ok(served.cli("uploads", f"sage://{bucket_id}/half.bin")))
    assert len(text) == 1 and text[0].startswith(session["sessionId"])
    aborted = ok(served.cli("uploads", "--abort", session["sessionId"]))
    assert lines(aborted) == [f"aborted: {session['sessionId']}"]
    assert records(ok(served.cli("uploads", f"sage://{bucket_id}", "--json"))) == []


def test_sage_cli_tree_output_line_for_line(served, tmp_path):
    created = ok(served.cli("storage", "bucket", "create", "--datatype", "model", "--name", "sage"))
    bucket = json.loads(created.stdout)
    assert created.stdout == json.dumps(bucket, indent=2) + "\n"
    bucket_id = bucket["id"]
    with Client(served.url, served.token("alice")) as alice:
        assert json.loads(ok(served.cli("storage", "bucket", "show", bucket_id)).stdout) == alice.get_bucket(bucket_id)
        listed = ok(served.cli("storage", "bucket", "list"))
        assert listed.stdout == json.dumps(alice.list_buckets(), indent=2) + "\n"
    added = ok(served.cli("storage", "permissions", "add", bucket_id, "USER", "bob", "READ"))
    assert added.stdout == json.dumps({"granteeType": "USER", "grantee": "bob", "permission": "READ"}, indent=2) + "\n"
    shown = json.loads(ok(served.cli("storage", "permissions", "show", bucket_id)).stdout)
    assert {"granteeType": "USER", "grantee": "bob", "permission": "READ"} in shown
    ok(served.cli("storage", "permissions", "public", bucket_id))
    deleted = ok(served.cli("storage", "permissions", "delete", bucket_id, "USER", "bob", "--permission", "READ"))
    assert deleted.stdout == json.dumps({"deleted": ["USER:bob:READ"]}, indent=2) + "\n"
    # files: a file and a directory (key/<dir name>/<relative path>, as sage-storage-py did)
    (tmp_path / "f1.txt").write_text("one")
    (tmp_path / "temp" / "inner").mkdir(parents=True)
    (tmp_path / "temp" / "t.txt").write_text("two")
    (tmp_path / "temp" / "inner" / "u.txt").write_text("three")
    up = ok(served.cli("storage", "files", "upload", bucket_id, str(tmp_path / "f1.txt"), str(tmp_path / "temp"),
                       "--key", "/dir-test/"))
    assert up.stdout == '{\n  "files_uploaded": 3\n}\n'
    table = ok(served.cli("storage", "files", "list", bucket_id, "--prefix", "dir-test"))
    with Client(served.url, served.token("alice")) as alice:
        page = alice._run(alice._async.list_page(bucket_id, "dir-test/"))
    expected = [p["Prefix"] for p in page["CommonPrefixes"]] + [
        f"dir-test/{i['Key']} {i['Size']} {i['LastModified']}" for i in page["Contents"]]
    assert lines(table) == expected and expected[0] == "temp/" and expected[1].startswith("dir-test/f1.txt 3 ")
    recursive = lines(ok(served.cli("storage", "files", "list", bucket_id, "--recursive")))
    assert [line.split(" ")[0] for line in recursive] == ["dir-test/f1.txt", "dir-test/temp/inner/u.txt",
                                                          "dir-test/temp/t.txt"]
    limited = lines(ok(served.cli("storage", "files", "list", bucket_id, "--recursive", "--limit", "2")))
    assert len(limited) == 4 and limited[2] == "# results have been truncated"
    assert limited[3].startswith("# NextContinuationToken=")
    token = limited[3].split("=", 1)[1]
    rest = lines(ok(served.cli("storage", "files", "list", bucket_id, "--recursive", "--limit", "2",
                               "--ctoken", token)))
    assert [line.split(" ")[0] for line in rest] == ["dir-test/temp/t.txt"]
    everything = ok(served.cli("storage", "files", "list", bucket_id, "--recursive", "--limit", "2", "--all",
                               "--format", "json"))
    pages = everything.stdout.split("---\n")
    assert pages[-1] == "" and [len(json.loads(p)["Contents"]) for p in pages[:-1]] == [2, 1]
    down = ok(served.cli("storage", "files", "download", bucket_id, "dir-test/temp/t.txt", "--target",
                         str(tmp_path / "got") + "/"))
    assert down.stdout == "" and (tmp_path / "got" / "t.txt").read_text() == "two"
    again = served.cli("storage", "files", "download", bucket_id, "dir-test/temp/t.txt", "--target",
                       str(tmp_path / "got" / "t.txt"))
    assert again.returncode == 1 and "exists" in json.loads(again.stdout)["error"]
    removed = ok(served.cli("storage", "files", "delete", bucket_id, "dir-test/f1.txt"))
    assert removed.stdout == json.dumps({"deleted": ["dir-test/f1.txt"]}, indent=2) + "\n"
    missing = served.cli("storage", "bucket", "show", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1 and "error" in json.loads(missing.stdout)
    ok(served.cli("storage", "bucket", "delete", bucket_id))


def run_in_pty(served, args: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run the CLI with stdin/stdout/stderr on a pseudo-terminal; returns (status, everything shown)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))  # rows, columns
    process = subprocess.Popen([sys.executable, "-m", "sagestore", *args], env=served.cli_env(),
                               stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True)
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                piece = os.read(controller, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not piece:
                break
            shown += piece
        elif process.poll() is not None:
            break
    os.close(controller)
    return process.wait(timeout), shown.decode(errors="replace")


def test_progress_only_on_a_terminal(served, tmp_path):
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
    (tmp_path / "p.bin").write_bytes(os.urandom(24 * MiB))
    status, shown = run_in_pty(served, ["cp", str(tmp_path / "p.bin"), f"sage://{bucket_id}/p.bin"])
    assert status == 0, shown
    assert "100%" in shown and "p.bin" in shown and "B/s" in shown  # bytes, speed and ETA from tqdm
    piped = ok(served.cli("cp", str(tmp_path / "p.bin"), f"sage://{bucket_id}/p2.bin"))
    assert "%" not in piped.stdout + piped.stderr and "B/s" not in piped.stdout + piped.stderr
    status, shown = run_in_pty(served, ["cp", "--quiet", str(tmp_path / "p.bin"), f"sage://{bucket_id}/p3.bin"])
    assert status == 0 and shown.strip() == ""
