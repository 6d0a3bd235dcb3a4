"""S3 access keys against real servers in jwt mode: the API and `sagestore keys` (create, list,
revoke, credential-process with the AWS CLI), a key never outliving its token, groups as of the
key's use, and a revocation reaching another instance within the ACL cache's bound."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
import requests
from botocore.exceptions import ClientError

from support.server import REPO
from s3_helpers import S3Server, error_code
from sagestore.auth.tokens import mint_token

SECRET = "s3-keys-test-secret-" + "x" * 32


@pytest.fixture(scope="module")
def jwt_settings(base_settings):
    return base_settings.replace(auth_mode="jwt", jwt_secret=SECRET)


@pytest.fixture(scope="module")
def servers(jwt_settings):
    with S3Server(jwt_settings) as first, S3Server(jwt_settings) as second:
        yield first, second


def token(settings, user: str, groups: tuple[str, ...] = (), ttl: float = 3600) -> str:
    return mint_token(settings, user, list(groups), ttl)


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def new_key(server, value: str, **body) -> dict:
    response = requests.post(f"{server.url}/api/v1/s3/keys", json=body or None, headers=bearer(value), timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def cli(server, value: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sagestore", *args, "--url", server.url, "--token", value],
                          capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


def test_cli_create_list_revoke(servers, jwt_settings):
    server, _ = servers
    value = token(jwt_settings, "kate")
    created = cli(server, value, "keys", "create", "--expires", "2d", "--json", "--description", "laptop")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["access_key_id"].startswith("SAGE") and len(key["secret_access_key"]) == 40
    client = server.client(key)
    assert client.list_buckets()["Owner"]["ID"] == "kate"
    listed = cli(server, value, "keys", "list", "--json")
    assert listed.returncode == 0
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [row["access_key_id"] for row in rows] == [key["access_key_id"]]
    assert rows[0]["state"] == "active" and rows[0]["description"] == "laptop"
    assert "secret_access_key" not in rows[0] and key["secret_access_key"] not in listed.stdout
    text = cli(server, value, "keys", "create")
    assert text.returncode == 0 and "secret_access_key:" in text.stdout
    revoked = cli(server, value, "keys", "revoke", key["access_key_id"])
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(ClientError) as raised:
        client.list_buckets()
    assert error_code(raised.value) == "InvalidAccessKeyId"
    other = cli(server, token(jwt_settings, "mallory"), "keys", "revoke", key["access_key_id"])
    assert other.returncode == 1  # not hers: 404
    assert key["secret_access_key"] not in server.process.output


def test_anonymous_cannot_make_keys(servers):
    server, _ = servers
    assert requests.post(f"{server.url}/api/v1/s3/keys", timeout=30).status_code == 401
    assert requests.get(f"{server.url}/api/v1/s3/keys", timeout=30).status_code == 401


def test_a_description_is_optional_and_at_most_256_characters(servers, jwt_settings):
    """An empty description is no description (it was a 500: the length check ran on None)."""
    server, _ = servers
    value = token(jwt_settings, "dora")
    assert new_key(server, value, description="")["description"] == ""
    assert new_key(server, value, description="d" * 256)["description"] == "d" * 256
    for bad in ("d" * 257, 5, ["laptop"]):
        answer = requests.post(f"{server.url}/api/v1/s3/keys", json={"description": bad}, headers=bearer(value),
                               timeout=30)
        assert answer.status_code == 400 and "description" in answer.json()["error"], (bad, answer.text)


def test_a_key_never_outlives_its_token(servers, jwt_settings):
    server, _ = servers
    value = token(jwt_settings, "kate", ttl=120)
    key = new_key(server, value, expires_in=7 * 86400)
    expires = datetime.fromisoformat(key["expires_at"])
    assert (expires - datetime.now(timezone.utc)).total_seconds() <= 121
    longest = new_key(server, token(jwt_settings, "kate", ttl=365 * 86400), expires_in=365 * 86400)
    assert (datetime.fromisoformat(longest["expires_at"]) - datetime.now(timezone.utc)).days <= 90
    short = new_key(server, value, expires_in=60)
    assert (datetime.fromisoformat(short["expires_at"]) - datetime.now(timezone.utc)).total_seconds() <= 61
    assert requests.post(f"{server.url}/api/v1/s3/keys", json={"expires_in": 5}, headers=bearer(value),
                         timeout=30).status_code == 400


def test_groups_as_of_the_keys_use(servers, jwt_settings):
    """A key acts with the groups of its user's latest token, not those it was made with."""
    server, _ = servers
    owner_token = token(jwt_settings, "olga")
    bucket = requests.post(f"{server.url}/api/v1/objects", params={"type": "model"}, headers=bearer(owner_token),
                           timeout=30).json()["id"]
    requests.put(f"{server.url}/api/v1/objects/{bucket}/f.txt", data=b"team file", headers=bearer(owner_token),
                 timeout=30).raise_for_status()
    requests.put(f"{server.url}/api/v1/objects/{bucket}?permissions", headers=bearer(owner_token), timeout=30,
                 json={"granteeType": "GROUP", "grantee": "team-k", "permission": "READ"}).raise_for_status()
    key = new_key(server, token(jwt_settings, "gus"))
    client = server.client(key)
    with pytest.raises(ClientError) as raised:
        client.get_object(Bucket=bucket, Key="f.txt")
    assert error_code(raised.value) == "NoSuchBucket"
    # gus joins team-k: his next token says so, and his key follows
    requests.get(f"{server.url}/api/v1/objects", headers=bearer(token(jwt_settings, "gus", ("team-k",))),
                 timeout=30).raise_for_status()
    assert eventually(lambda: client.get_object(Bucket=bucket, Key="f.txt")["Body"].read()) == b"team file"
    requests.get(f"{server.url}/api/v1/objects", headers=bearer(token(jwt_settings, "gus")),
                 timeout=30).raise_for_status()
    assert eventually(lambda: refused(lambda: client.get_object(Bucket=bucket, Key="f.txt")))


def refused(call) -> bool:
    try:
        call()
    except ClientError:
        return True
    raise AssertionError("still allowed")


def eventually(check, seconds: float = 10):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return check()
        except (ClientError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_revocation_reaches_the_other_instance(servers, jwt_settings):
    first, second = servers
    value = token(jwt_settings, "ivan")
    key = new_key(first, value)
    on_second = second.client(key)
    assert on_second.list_buckets()["Owner"]["ID"] == "ivan"  # now cached there
    requests.delete(f"{first.url}/api/v1/s3/keys/{key['access_key_id']}", headers=bearer(value),
                    timeout=30).raise_for_status()
    started = time.monotonic()
    eventually(lambda: refused(on_second.list_buckets), seconds=jwt_settings.acl_cache_ttl + 2)
    assert time.monotonic() - started <= jwt_settings.acl_cache_ttl + 2


def test_credential_process_with_the_aws_cli(servers, jwt_settings, tmp_path):
    server, _ = servers
    value = token(jwt_settings, "vera")
    config = tmp_path / "config"
    command = f"{sys.executable} -m sagestore keys credential-process --expires 15m --url {server.url} --token {value}"
    config.write_text(f"[default]\nregion = us-east-1\ncredential_process = {command}\n")
    aws = str(REPO / ".venv" / "bin" / "aws") if (REPO / ".venv" / "bin" / "aws").exists() else "aws"
    env = {"PATH": f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
           "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    made = subprocess.run([aws, "s3", "mb", "s3://vera-bucket", "--endpoint-url", server.s3_url], env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    listed = subprocess.run([aws, "s3", "ls", "--endpoint-url", server.s3_url], env=env, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0 and "vera-bucket" in listed.stdout, listed.stderr
    keys = requests.get(f"{server.url}/api/v1/s3/keys", headers=bearer(value), timeout=30).json()["keys"]
    assert keys and all(key["description"] == "credential_process" for key in keys)
