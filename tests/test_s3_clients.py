"""Real S3 clients against the S3 door of a real `sagestore serve`: the AWS CLI (cp up and down
with multipart, sync, ls, rm --recursive, presign, --no-sign-request on a public bucket), rclone,
s5cmd, and pandas/pyarrow reading and writing Parquet through s3fs."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from support.server import REPO
from s3_helpers import S3Server

MiB = 2**20
VENV_BIN = Path(REPO) / ".venv" / "bin"


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(f"{name} is not installed (scripts/test installs it)")
    return found


@pytest.fixture(scope="module")
def server(base_settings):
    with S3Server(base_settings) as running:
        yield running


@pytest.fixture(scope="module")
def key(server):
    return server.key("alice")


@pytest.fixture(scope="module")
def aws_env(key, tmp_path_factory):
    home = tmp_path_factory.mktemp("aws-home")
    config = home / "config"
    # small parts so that a 12 MiB file goes up in three and comes down in three ranges
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    multipart_threshold = 5MB\n"
                      "    multipart_chunksize = 5MB\n    addressing_style = path\n")
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(home), "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"), "AWS_ACCESS_KEY_ID": key["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": key["secret_access_key"]}


def run(command: list[str], env: dict, *, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


def aws(server, env, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([tool("aws"), "--endpoint-url", server.s3_url, *args], env, check=check)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_aws_cli_cp_sync_ls_rm(server, aws_env, tmp_path):
    aws(server, aws_env, "s3", "mb", "s3://cli-bucket")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MiB + 5))
    aws(server, aws_env, "s3", "cp", str(big), "s3://cli-bucket/data/big.bin")
    head = aws(server, aws_env, "s3api", "head-object", "--bucket", "cli-bucket", "--key", "data/big.bin")
    assert '-3\\"' in head.stdout  # three parts: md5-of-md5s-3
    back = tmp_path / "back.bin"
    aws(server, aws_env, "s3", "cp", "s3://cli-bucket/data/big.bin", str(back))
    assert digest(back) == digest(big)
    tree = tmp_path / "tree"
    for name in ("a.txt", "sub/b.txt", "sub/deeper/c.txt"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(f"content of {name}")
        # written a minute ago: sync compares the file's mtime with LastModified, whole seconds as in AWS,
        # so a file written in the second it is uploaded would count as changed on the next sync
        os.utime(tree / name, (time.time() - 60, time.time() - 60))
    first = aws(server, aws_env, "s3", "sync", str(tree), "s3://cli-bucket/tree")
    assert first.stdout.count("upload:") == 3
    again = aws(server, aws_env, "s3", "sync", str(tree), "s3://cli-bucket/tree")
    assert "upload:" not in again.stdout  # nothing changed, nothing sent
    (tree / "a.txt").write_text("changed, and longer than before")
    assert aws(server, aws_env, "s3", "sync", str(tree), "s3://cli-bucket/tree").stdout.count("upload:") == 1
    down = tmp_path / "down"
    aws(server, aws_env, "s3", "sync", "s3://cli-bucket/tree", str(down))
    assert (down / "sub" / "deeper" / "c.txt").read_text() == "content of sub/deeper/c.txt"
    listing = aws(server, aws_env, "s3", "ls", "s3://cli-bucket/tree/").stdout
    assert "PRE sub/" in listing and "a.txt" in listing
    recursive = aws(server, aws_env, "s3", "ls", "--recursive", "s3://cli-bucket/").stdout
    assert len(recursive.splitlines()) == 4
    assert "cli-bucket" in aws(server, aws_env, "s3", "ls").stdout
    removed = aws(server, aws_env, "s3", "rm", "--recursive", "s3://cli-bucket/tree/")
    assert removed.stdout.count("delete:") == 3
    assert aws(server, aws_env, "s3", "ls", "--recursive", "s3://cli-bucket/").stdout.count("\n") == 1
    aws(server, aws_env, "s3", "rm", "s3://cli-bucket/data/big.bin")
    aws(server, aws_env, "s3", "rb", "s3://cli-bucket")


def test_aws_cli_presign_and_no_sign_request(server, aws_env, tmp_path):
    public = server.sage_bucket("alice", public=True)
    private = server.sage_bucket("alice")
    source = tmp_path / "open.txt"
    source.write_text("open data")
    aws(server, aws_env, "s3", "cp", str(source), f"s3://{public}/open.txt")
    aws(server, aws_env, "s3", "cp", str(source), f"s3://{private}/closed.txt")
    url = aws(server, aws_env, "s3", "presign", f"s3://{private}/closed.txt", "--expires-in", "300").stdout.strip()
    assert requests.get(url, timeout=30).text == "open data"
    anonymous = {name: value for name, value in aws_env.items() if not name.startswith("AWS_")}
    anonymous["AWS_CONFIG_FILE"] = aws_env["AWS_CONFIG_FILE"]
    fetched = tmp_path / "fetched.txt"
    aws(server, anonymous, "--no-sign-request", "s3", "cp", f"s3://{public}/open.txt", str(fetched))
    assert fetched.read_text() == "open data"
    assert "open.txt" in aws(server, anonymous, "--no-sign-request", "s3", "ls", f"s3://{public}/").stdout
    refused = aws(server, anonymous, "--no-sign-request", "s3", "cp", f"s3://{private}/closed.txt", str(fetched),
                  check=False)
    assert refused.returncode != 0 and "403" in refused.stderr
    refused = aws(server, anonymous, "--no-sign-request", "s3", "cp", str(source), f"s3://{public}/new.txt",
                  check=False)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr


def test_rclone(server, key, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RCLONE_CONFIG": str(tmp_path / "none.conf"),
           "RCLONE_CONFIG_SAGE_TYPE": "s3", "RCLONE_CONFIG_SAGE_PROVIDER": "Other",
           "RCLONE_CONFIG_SAGE_ACCESS_KEY_ID": key["access_key_id"],
           "RCLONE_CONFIG_SAGE_SECRET_ACCESS_KEY": key["secret_access_key"],
           "RCLONE_CONFIG_SAGE_ENDPOINT": server.s3_url, "RCLONE_CONFIG_SAGE_REGION": "us-east-1",
           "RCLONE_CONFIG_SAGE_FORCE_PATH_STYLE": "true"}
    rclone = tool("rclone")
    local = tmp_path / "local"
    for name, size in (("small.txt", 100), ("dir/medium.bin", 3 * MiB), ("dir/large.bin", 7 * MiB)):
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(os.urandom(size))
    run([rclone, "mkdir", "sage:rclone-bucket"], env)
    run([rclone, "copy", str(local), "sage:rclone-bucket/in", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"],
        env)
    listed = run([rclone, "ls", "sage:rclone-bucket"], env).stdout
    assert "in/dir/large.bin" in listed and "in/small.txt" in listed
    assert run([rclone, "check", str(local), "sage:rclone-bucket/in"], env).returncode == 0
    back = tmp_path / "back"
    run([rclone, "copy", "sage:rclone-bucket/in", str(back)], env)
    for name in ("small.txt", "dir/medium.bin", "dir/large.bin"):
        assert digest(back / name) == digest(local / name)
    run([rclone, "purge", "sage:rclone-bucket"], env)


def test_s5cmd(server, key, tmp_path):
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": key["access_key_id"],
           "AWS_SECRET_ACCESS_KEY": key["secret_access_key"], "AWS_REGION": "us-east-1",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    s5cmd = [tool("s5cmd"), "--endpoint-url", server.s3_url]
    bucket = server.sage_bucket("alice")
    source = tmp_path / "s5.bin"
    source.write_bytes(os.urandom(6 * MiB))
    run([*s5cmd, "cp", "--part-size", "5", str(source), f"s3://{bucket}/s5/s5.bin"], env)
    run([*s5cmd, "cp", str(source), f"s3://{bucket}/s5/copy.bin"], env)
    listed = run([*s5cmd, "ls", f"s3://{bucket}/s5/"], env).stdout
    assert "s5.bin" in listed and "copy.bin" in listed
    target = tmp_path / "s5-back.bin"
    run([*s5cmd, "cp", f"s3://{bucket}/s5/s5.bin", str(target)], env)
    assert digest(target) == digest(source)
    run([*s5cmd, "rm", f"s3://{bucket}/s5/*"], env)
    assert run([*s5cmd, "ls", f"s3://{bucket}/s5/"], env, check=False).stdout.strip() == ""


def test_pandas_parquet_through_s3fs(server, key):
    import pandas
    bucket = server.sage_bucket("alice", public=True)
    options = {"key": key["access_key_id"], "secret": key["secret_access_key"],
               "client_kwargs": {"endpoint_url": server.s3_url, "region_name": "us-east-1"},
               "config_kwargs": {"s3": {"addressing_style": "path"}}}
    frame = pandas.DataFrame({"step": range(1000), "loss": [1 / (1 + n) for n in range(1000)]})
    frame.to_parquet(f"s3://{bucket}/runs/metrics.parquet", storage_options=options)
    back = pandas.read_parquet(f"s3://{bucket}/runs/metrics.parquet", storage_options=options)
    assert back.equals(frame)
    anonymous = {"anon": True, "client_kwargs": options["client_kwargs"], "config_kwargs": options["config_kwargs"]}
    assert pandas.read_parquet(f"s3://{bucket}/runs/metrics.parquet", storage_options=anonymous).equals(frame)
    import s3fs
    fs = s3fs.S3FileSystem(**options)
    assert fs.ls(f"{bucket}/runs") == [f"{bucket}/runs/metrics.parquet"]
    import pyarrow.parquet as pq
    with fs.open(f"{bucket}/runs/metrics.parquet", "rb") as handle:
        assert pq.read_table(handle).num_rows == 1000
